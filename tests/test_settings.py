"""SPEC section 9: Settings.from_env reads every TRACKER_* variable and names a bad one."""

from __future__ import annotations

from typing import Any

import pytest

from tracker import Settings, SettingsError


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.redis_url is None
    assert settings.redis_cluster is False
    assert settings.namespace == "tracker"
    assert (settings.ttl, settings.pending_ttl, settings.done_ttl) == (1800, 7 * 24 * 3600, 86400)
    assert settings.reserve_for == 1800
    assert settings.propagate_failures is False
    assert settings.cancel_grace == 2.0
    assert (settings.handoff_timeout, settings.outage_grace) == (60, 300)
    assert (settings.api_token, settings.read_token) == (None, None)
    assert (settings.allowed_hosts, settings.insecure) == ((), False)
    assert settings.http_read_timeout == 10.0


def test_from_env_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_TTL", "abc")
    monkeypatch.setenv("TRACKER_NAMESPACE", "from-os")
    assert Settings.from_env({}) == Settings()


def test_from_env_without_a_mapping_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKER_NAMESPACE", "from-os")
    assert Settings.from_env().namespace == "from-os"


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "value"),
    [
        ("TRACKER_REDIS_URL", "redis://cache:6380/2", "redis_url", "redis://cache:6380/2"),
        (
            "TRACKER_REDIS_URL",
            "rediss://user:pw@cache:6380",
            "redis_url",
            "rediss://user:pw@cache:6380",
        ),
        ("TRACKER_REDIS_URL", "unix:///run/valkey.sock", "redis_url", "unix:///run/valkey.sock"),
        ("TRACKER_REDIS_URL", "", "redis_url", None),
        ("TRACKER_REDIS_CLUSTER", "0", "redis_cluster", False),
        ("TRACKER_NAMESPACE", "acme:prod@eu-1", "namespace", "acme:prod@eu-1"),
        ("TRACKER_TTL", "60", "ttl", 60),
        ("TRACKER_TTL", " 60 ", "ttl", 60),
        ("TRACKER_PENDING_TTL", "3600", "pending_ttl", 3600),
        ("TRACKER_DONE_TTL", "7200", "done_ttl", 7200),
        ("TRACKER_RESERVE_FOR", "90", "reserve_for", 90),
        ("TRACKER_PROPAGATE_FAILURES", "true", "propagate_failures", True),
        ("TRACKER_PROPAGATE_FAILURES", "1", "propagate_failures", True),
        ("TRACKER_PROPAGATE_FAILURES", "YES", "propagate_failures", True),
        ("TRACKER_PROPAGATE_FAILURES", "on", "propagate_failures", True),
        ("TRACKER_PROPAGATE_FAILURES", "false", "propagate_failures", False),
        ("TRACKER_PROPAGATE_FAILURES", "0", "propagate_failures", False),
        ("TRACKER_CANCEL_GRACE", "0.5", "cancel_grace", 0.5),
        ("TRACKER_CANCEL_GRACE", "0", "cancel_grace", 0.0),
        ("TRACKER_CANCEL_GRACE", ".5", "cancel_grace", 0.5),
        ("TRACKER_CANCEL_GRACE", "5.", "cancel_grace", 5.0),
        ("TRACKER_HANDOFF_TIMEOUT", "2", "handoff_timeout", 2),
        ("TRACKER_OUTAGE_GRACE", "30", "outage_grace", 30),
        ("TRACKER_API_TOKEN", "s3cret", "api_token", "s3cret"),
        ("TRACKER_API_TOKEN", "", "api_token", None),
        ("TRACKER_READ_TOKEN", "r3ad", "read_token", "r3ad"),
        ("TRACKER_ALLOWED_HOSTS", "", "allowed_hosts", ()),
        (
            "TRACKER_ALLOWED_HOSTS",
            " Tracker.Example.com, 10.0.0.5,[fd00::1],fd00::2,, ",
            "allowed_hosts",
            ("tracker.example.com", "10.0.0.5", "fd00::1", "fd00::2"),
        ),
        ("TRACKER_INSECURE", "1", "insecure", True),
        ("TRACKER_INSECURE", "", "insecure", False),
        ("TRACKER_HTTP_READ_TIMEOUT", "2.5", "http_read_timeout", 2.5),
    ],
)
def test_every_variable_is_read(variable: str, raw: str, attribute: str, value: Any) -> None:
    assert getattr(Settings.from_env({variable: raw}), attribute) == value


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("false", False)])
def test_the_caf_propagate_failures_variable_is_read(raw: str, value: bool) -> None:
    env = {"CAF_JOB_TRACKING_PROPAGATE_FAILURES": raw}
    assert Settings.from_env(env).propagate_failures is value


@pytest.mark.parametrize(("tracker", "caf"), [("false", "true"), ("true", "false")])
def test_tracker_propagate_failures_takes_precedence_over_caf(tracker: str, caf: str) -> None:
    env = {"TRACKER_PROPAGATE_FAILURES": tracker, "CAF_JOB_TRACKING_PROPAGATE_FAILURES": caf}
    assert Settings.from_env(env).propagate_failures is (tracker == "true")


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.ttl = 5  # type: ignore[misc]


BAD = [
    ("TRACKER_REDIS_URL", "http://cache:6379"),
    ("TRACKER_REDIS_URL", "cache:6379"),
    ("TRACKER_REDIS_URL", "valkey://cache:6379"),
    ("TRACKER_NAMESPACE", ""),
    ("TRACKER_NAMESPACE", "a b"),
    ("TRACKER_NAMESPACE", "{acme}"),
    ("TRACKER_NAMESPACE", "a" * 129),
    *(
        (variable, raw)
        for variable in (
            "TRACKER_TTL",
            "TRACKER_PENDING_TTL",
            "TRACKER_DONE_TTL",
            "TRACKER_RESERVE_FOR",
            "TRACKER_HANDOFF_TIMEOUT",
            "TRACKER_OUTAGE_GRACE",
        )
        for raw in ("abc", "1.5", "0", "-5", "1e3", "1_000", "\u0661\u0662", "+5")
    ),
    ("TRACKER_TTL", str(10 * 365 * 24 * 3600 + 1)),
    ("TRACKER_RESERVE_FOR", "31536001"),  # a job's own reserve_for stops at a year too
    ("TRACKER_PROPAGATE_FAILURES", "maybe"),
    ("TRACKER_PROPAGATE_FAILURES", "2"),
    ("CAF_JOB_TRACKING_PROPAGATE_FAILURES", "sometimes"),
    ("TRACKER_REDIS_CLUSTER", "perhaps"),
    ("TRACKER_CANCEL_GRACE", "soon"),
    ("TRACKER_CANCEL_GRACE", "-1"),
    ("TRACKER_CANCEL_GRACE", "nan"),
    ("TRACKER_CANCEL_GRACE", "1_0"),
    ("TRACKER_CANCEL_GRACE", "inf"),
    ("TRACKER_TTL", "1" * 5000),  # past Python's 4,300 digits for int(str)
    ("TRACKER_ALLOWED_HOSTS", "tracker.example.com:8000"),  # any port: none is given
    ("TRACKER_ALLOWED_HOSTS", "http://tracker.example.com"),
    ("TRACKER_ALLOWED_HOSTS", "*"),
    ("TRACKER_ALLOWED_HOSTS", "a b"),
    ("TRACKER_ALLOWED_HOSTS", "-bad.example"),
    ("TRACKER_INSECURE", "please"),
    ("TRACKER_HTTP_READ_TIMEOUT", "0"),
    ("TRACKER_HTTP_READ_TIMEOUT", "soon"),
    ("TRACKER_HTTP_READ_TIMEOUT", "3601"),
]


def test_the_tokens_stay_out_of_the_settings_repr() -> None:
    settings = Settings.from_env(
        {"TRACKER_API_TOKEN": "s3cret-w", "TRACKER_READ_TOKEN": "s3cret-r"}
    )
    assert settings.api_token == "s3cret-w"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(("variable", "raw"), BAD, ids=[f"{v}={r!r}" for v, r in BAD])
def test_a_bad_value_raises_settings_error_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: raw})
    assert refused.value.variable == variable
    assert variable in str(refused.value)


def test_a_redis_url_with_a_malformed_port_is_refused() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"TRACKER_REDIS_URL": "redis://127.0.0.1:abc"})
    assert refused.value.variable == "TRACKER_REDIS_URL"


@pytest.mark.parametrize("raw", ["1", "true"])
def test_cluster_mode_takes_a_url_naming_a_node(raw: str) -> None:
    settings = Settings.from_env(
        {"TRACKER_REDIS_CLUSTER": raw, "TRACKER_REDIS_URL": "redis://c:6379"}
    )
    assert settings.redis_cluster


def test_cluster_mode_with_a_database_in_the_url_is_refused() -> None:
    for url in ["redis://c:6379/9", "redis://c:6379?db=2"]:
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({"TRACKER_REDIS_CLUSTER": "1", "TRACKER_REDIS_URL": url})
        assert refused.value.variable == "TRACKER_REDIS_URL"


@pytest.mark.parametrize("url", [None, "unix:///tmp/valkey.sock"])
def test_cluster_mode_without_a_tcp_url_is_refused(url: str | None) -> None:
    env = {"TRACKER_REDIS_CLUSTER": "1", **({"TRACKER_REDIS_URL": url} if url else {})}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert refused.value.variable == "TRACKER_REDIS_CLUSTER"
    assert "TRACKER_REDIS_URL" in refused.value.detail
