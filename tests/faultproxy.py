"""A small fault-injecting TCP proxy for the tests (asyncio, in a thread of its own): it adds
latency, resets every connection, or holds all traffic (a blackhole) until healed."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from contextlib import suppress


class FaultProxy:
    def __init__(
        self,
        upstream_host: str | None = None,
        upstream_port: int = 0,
        upstream_unix: str | None = None,
    ) -> None:
        self._upstream = (upstream_host, upstream_port, upstream_unix)
        self.latency = 0.0
        self.cut = 0  # connections reset so far
        self._flowing: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
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
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port, unix = self._upstream
        if unix:
            return await asyncio.open_unix_connection(unix)
        return await asyncio.open_connection(host, port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            with suppress(Exception):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        while data := await reader.read(65536):
            await self._flowing.wait()  # a blackhole holds everything here
            if self.latency:
                await asyncio.sleep(self.latency)
            writer.write(data)
            await writer.drain()
        with suppress(Exception):
            writer.write_eof()

    def _call(self, action: object) -> None:
        asyncio.run_coroutine_threadsafe(action, self._loop).result(10)  # type: ignore[arg-type]

    def reset_all(self) -> None:
        """Every open connection is cut with a TCP RST, as a crashed middlebox would."""

        async def reset() -> None:
            for writer in list(self._writers):
                if writer.transport.is_closing():  # closed by its peer, not yet discarded
                    continue
                sock = writer.get_extra_info("socket")
                if sock is not None and sock.family != socket.AF_UNIX:
                    with suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                writer.transport.abort()
                self.cut += 1
            self._writers.clear()

        self._call(reset())

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
        async def shut() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        self._call(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
