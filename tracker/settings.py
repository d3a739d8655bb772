"""Settings: one frozen dataclass, read from ``TRACKER_*`` variables by entry points only."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import redis

from .errors import InvalidInput, SettingsError
from .model import MAX_DIGITS, MAX_RESERVE_FOR, check_name

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_WHOLE = re.compile(r"[0-9]+")  # ASCII digits only: int() also takes "1_000" and "١٢"
_DECIMAL = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")
TEN_YEARS = 10 * 365 * 24 * 3600
DEFAULT_TTL = 1800
DEFAULT_PENDING_TTL = 7 * 24 * 3600
DEFAULT_DONE_TTL = 24 * 3600
DEFAULT_RESERVE_FOR = 1800
DEFAULT_CANCEL_GRACE = 2.0
DEFAULT_HANDOFF_TIMEOUT = 60
DEFAULT_OUTAGE_GRACE = 300
DEFAULT_HTTP_READ_TIMEOUT = 10.0
#: A host name, an IPv4 address or an IPv6 one (bracketed or not); never a port.
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a tracker process needs to know. Durations are in seconds."""

    redis_url: str | None = None
    redis_cluster: bool = False
    namespace: str = "tracker"
    ttl: int = DEFAULT_TTL
    pending_ttl: int = DEFAULT_PENDING_TTL
    done_ttl: int = DEFAULT_DONE_TTL
    reserve_for: int = DEFAULT_RESERVE_FOR
    propagate_failures: bool = False
    cancel_grace: float = DEFAULT_CANCEL_GRACE
    #: A job handed to its RQ queue and not started within this is checked (lua/promote.lua).
    handoff_timeout: int = DEFAULT_HANDOFF_TIMEOUT
    #: How long ``tracker worker`` rides out an unreachable Redis before it gives up.
    outage_grace: int = DEFAULT_OUTAGE_GRACE
    api_token: str | None = field(default=None, repr=False)  # secrets stay out of logs
    read_token: str | None = field(default=None, repr=False)
    #: Host names the HTTP API answers for, besides its own address and loopback.
    allowed_hosts: tuple[str, ...] = ()
    #: Serve clients beyond loopback although writes need no token.
    insecure: bool = False
    #: Seconds a request's headers, and then its body, may take to arrive.
    http_read_timeout: float = DEFAULT_HTTP_READ_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``TRACKER_*`` variable; a bad value raises :class:`SettingsError`."""
        env = os.environ if env is None else env
        url = env.get("TRACKER_REDIS_URL") or None
        if url is not None:
            _check_url(url)
        cluster = _flag(env, "TRACKER_REDIS_CLUSTER", False)
        if cluster and (url is None or url.startswith("unix://")):
            raise SettingsError(
                "TRACKER_REDIS_CLUSTER",
                "cluster mode needs TRACKER_REDIS_URL naming a node of the cluster "
                "(redis:// or rediss://); the embedded server is not a cluster",
            )
        if cluster and url is not None and _database(url) not in ("", "0"):
            raise SettingsError(
                "TRACKER_REDIS_URL", "a Redis Cluster has database 0 only: drop the /<db>"
            )
        namespace = env.get("TRACKER_NAMESPACE", "tracker")
        try:
            check_name("namespace", namespace)
        except InvalidInput as exc:
            raise SettingsError("TRACKER_NAMESPACE", exc.detail) from None
        propagate = _flag(env, "CAF_JOB_TRACKING_PROPAGATE_FAILURES", False)
        propagate = _flag(env, "TRACKER_PROPAGATE_FAILURES", propagate)
        return cls(
            redis_url=url,
            redis_cluster=cluster,
            namespace=namespace,
            ttl=_seconds(env, "TRACKER_TTL", DEFAULT_TTL),
            pending_ttl=_seconds(env, "TRACKER_PENDING_TTL", DEFAULT_PENDING_TTL),
            done_ttl=_seconds(env, "TRACKER_DONE_TTL", DEFAULT_DONE_TTL),
            reserve_for=_seconds(env, "TRACKER_RESERVE_FOR", DEFAULT_RESERVE_FOR, MAX_RESERVE_FOR),
            propagate_failures=propagate,
            cancel_grace=_decimal(env, "TRACKER_CANCEL_GRACE", DEFAULT_CANCEL_GRACE, 0, 3600),
            handoff_timeout=_seconds(env, "TRACKER_HANDOFF_TIMEOUT", DEFAULT_HANDOFF_TIMEOUT),
            outage_grace=_seconds(env, "TRACKER_OUTAGE_GRACE", DEFAULT_OUTAGE_GRACE),
            api_token=env.get("TRACKER_API_TOKEN") or None,
            read_token=env.get("TRACKER_READ_TOKEN") or None,
            allowed_hosts=_hosts(env, "TRACKER_ALLOWED_HOSTS"),
            insecure=_flag(env, "TRACKER_INSECURE", False),
            http_read_timeout=_decimal(
                env, "TRACKER_HTTP_READ_TIMEOUT", DEFAULT_HTTP_READ_TIMEOUT, 0.1, 3600
            ),
        )


def _check_url(url: str) -> None:
    if not url.startswith(_URL_SCHEMES):
        raise SettingsError(
            "TRACKER_REDIS_URL", f"must start with one of {', '.join(_URL_SCHEMES)}"
        )
    try:
        redis.ConnectionPool.from_url(url)  # parses every part; connects to nothing
    except (ValueError, TypeError) as exc:
        raise SettingsError("TRACKER_REDIS_URL", str(exc)) from None


def _database(url: str) -> str:
    """The database a URL names (``/9`` or ``?db=9``), "" when none."""
    parts = urlsplit(url)
    return parse_qs(parts.query).get("db", [parts.path.strip("/")])[0]


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(name, f"expected true or false, got {raw!r}")


def _seconds(env: Mapping[str, str], name: str, default: int, high: int = TEN_YEARS) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not _WHOLE.fullmatch(raw.strip()) or len(raw.strip()) > MAX_DIGITS:
        raise SettingsError(name, f"expected a whole number of seconds, got {raw[:40]!r}")
    value = int(raw.strip())
    if not 1 <= value <= high:
        raise SettingsError(name, f"must be between 1 and {high} seconds, got {value}")
    return value


def _decimal(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not _DECIMAL.fullmatch(raw.strip()):
        raise SettingsError(name, f"expected a number of seconds, got {raw[:40]!r}")
    value = float(raw.strip())
    if not low <= value <= high:
        raise SettingsError(name, f"must be between {low:g} and {high:g} seconds, got {value:g}")
    return value


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated host names or addresses, lower-cased, IPv6 without brackets."""
    hosts = []
    for raw in env.get(name, "").split(","):
        host = raw.strip().lower()
        if not host:
            continue
        try:
            hosts.append(str(ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))))
            continue
        except ValueError:
            pass
        if len(host) > 253 or not _HOST_NAME.fullmatch(host):
            raise SettingsError(
                name, f"expected host names or addresses (any port: give none), got {raw[:40]!r}"
            )
        hosts.append(host)
    return tuple(hosts)
