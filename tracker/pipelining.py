"""Automatic pipelining for the asyncio client: the commands that concurrent tasks
issue during one turn of the event loop leave as one pipeline.

A server under load (the HTTP API with many requests in flight) would otherwise
pay one write, one read and one loop turn per command; here a batch costs one of
each (batches of at most MAX_BATCH). Each command stays its own: a pipeline
without MULTI runs them one after the other, exactly as if they had been sent
apart, and a command's error reaches only the task that sent it. Order holds within
a batch; separate batches may take separate connections, as separate calls would.
ioredis calls this ``enableAutoPipelining``.

Never send a blocking command (XREAD BLOCK) through it: it would hold up the batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio

from .cluster import keyless

MAX_BATCH = 256


class AutoPipeline:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._alone = keyless(client)
        self._queued: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def send(self, name: str, *args: Any) -> asyncio.Future[Any]:
        """Queue ``client.<name>(*args)``; the future holds its reply or its error."""
        if name in self._alone:
            alone: asyncio.Future[Any] = asyncio.ensure_future(getattr(self.client, name)(*args))
            return alone
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            # after every task ready now has had its turn, and queued what it sends
            loop.call_soon(self._flush)
        self._queued.append((name, args, future))
        if len(self._queued) >= MAX_BATCH:  # the first sender need not wait for the last
            self._flush()
        return future

    def fcall(self, *args: Any) -> asyncio.Future[Any]:
        return self.send("fcall", *args)

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)  # held, so it is not collected while it runs
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                name, args, _ = batch[0]
                replies: list[Any] = [await getattr(self.client, name)(*args)]
            else:
                async with self.client.pipeline(transaction=False) as pipe:
                    for name, args, _ in batch:
                        getattr(pipe, name)(*args)
                    replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every sender learns it
            for _, _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its sender was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
