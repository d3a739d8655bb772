"""Redis Cluster mode (``TRACKER_REDIS_CLUSTER=1``): the clients tracker uses on a
cluster, and the few things that differ there.

Every key of a namespace carries the hash tag ``{namespace}`` (see keys.py), so each
script's keys share one slot and the scripts run unchanged. What differs is on the
client side: redis-py asks the server for an FCALL's keys (COMMAND GETKEYS, two round
trips more per call) where it could read them, and it refuses a command that names
no key (TIME) in a pipeline. RQ needs one server, so nothing is handed to RQ here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

#: Commands that name no key: a cluster client refuses them in a pipeline, so a
#: tracker on a cluster sends them alone.
KEYLESS = frozenset({"time"})
FCALLS = frozenset({"FCALL", "FCALL_RO"})


def is_cluster(client: object) -> bool:
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


def keyless(client: object) -> frozenset[str]:
    """The commands to send outside a pipeline on ``client``."""
    return KEYLESS if is_cluster(client) else frozenset()


def fcall_slot(command: str, args: Sequence[Any]) -> int | None:
    """The slot of ``FCALL name numkeys key...`` (``args`` after the command), read
    off its first key; None for another command. A tracker call's keys share one
    slot, and the server refuses any that do not."""
    if command.upper() not in FCALLS or len(args) < 3 or int(args[1]) == 0:
        return None
    key = args[2]
    return key_slot(key if isinstance(key, bytes) else str(key).encode())


class ClusterClient(redis.cluster.RedisCluster):
    """redis-py's cluster client, with an FCALL routed by :func:`fcall_slot`."""

    def determine_slot(self, *args: Any) -> int | None:
        slot = fcall_slot(str(args[0]), args[1:])
        return slot if slot is not None else super().determine_slot(*args)


class AsyncClusterClient(redis.asyncio.cluster.RedisCluster):
    """The asyncio twin of :class:`ClusterClient` (its pipelines route through it too)."""

    async def _determine_slot(self, command: str, *args: Any) -> int:
        slot = fcall_slot(command, args)
        return slot if slot is not None else await super()._determine_slot(command, *args)


def close_nodes(client: object) -> None:
    """A sync cluster client's close leaves open the pools of the nodes it built from
    a URL (redis-py 8): close those."""
    if isinstance(client, redis.cluster.RedisCluster):
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
