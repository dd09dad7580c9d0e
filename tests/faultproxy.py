"""A small fault-injecting TCP proxy for the tests (asyncio, in a thread of its own): it adds
latency, resets every connection, or holds all traffic (a blackhole) until healed."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's side, the upstream side, bytes sent upstream."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    sent: int = 0


class FaultProxy:
    def __init__(
        self,
        upstream_host: str | None = None,
        upstream_port: int = 0,
        upstream_unix: str | None = None,
    ) -> None:
        self._upstream = (upstream_host, upstream_port, upstream_unix)
        self.latency = 0.0
        self.cut = 0  # connections reset so far that had carried traffic upstream
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._links: set[_Link] = set()
        self._closing = False
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing = asyncio.Event()
        self._flowing.set()
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port, unix = self._upstream
        if unix:
            return await asyncio.open_unix_connection(unix)
        return await asyncio.open_connection(host, port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Never raises and is never cancelled: asyncio would log either with a formatted
        # traceback, from this thread or from a later garbage collection.
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        if self._closing:  # accepted while close() was cutting the others
            self._abort(link)
        await asyncio.gather(
            self._pipe(reader, up_writer, link),
            self._pipe(up_reader, writer, None),
            return_exceptions=True,
        )
        self._links.discard(link)
        for w in (writer, up_writer):
            w.close()
            with suppress(Exception):  # also marks a reset's error as seen
                await w.wait_closed()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: _Link | None
    ) -> None:
        assert self._flowing is not None
        while data := await reader.read(65536):
            await self._flowing.wait()  # a blackhole holds everything here
            if self.latency:
                await asyncio.sleep(self.latency)
            writer.write(data)
            await writer.drain()
            if upstream is not None:
                upstream.sent += len(data)
        with suppress(Exception):
            writer.write_eof()

    def _call(self, action: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(action, self._loop).result(timeout)

    def reset_all(self) -> int:
        """Every open connection is cut with a TCP RST, as a crashed middlebox would. Returns
        how many of them had carried traffic upstream (those count in `cut`)."""

        async def reset() -> int:
            carried = sum(self._abort(link) for link in list(self._links))
            self.cut += carried
            return carried

        return self._call(reset())

    def _abort(self, link: _Link) -> bool:
        for writer in (link.client, link.upstream):
            sock = writer.get_extra_info("socket")
            # A connection its peer has just closed may already have lost its socket.
            if sock is not None and sock.family != socket.AF_UNIX:
                with suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._links.discard(link)
        return link.sent > 0

    def blackhole(self) -> None:
        async def hold() -> None:
            assert self._flowing is not None
            self._flowing.clear()

        self._call(hold())

    def heal(self) -> None:
        async def flow() -> None:
            assert self._flowing is not None
            self._flowing.set()

        self.latency = 0.0
        self._call(flow())

    def close(self) -> None:
        """Cuts every connection and lets each connection's task end before the loop closes."""

        async def shut() -> None:
            assert self._server is not None and self._flowing is not None
            self._closing = True
            self._server.close()
            self._flowing.set()  # pipes held by a blackhole end too
            for link in list(self._links):
                self._abort(link)
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=30)

        self._call(shut(), timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        if not self._thread.is_alive():
            self._loop.close()
