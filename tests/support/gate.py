"""A TCP proxy between a client under test and the server, which can drop the network."""

import asyncio


class Gate:
    """A TCP proxy in front of a server. `cut()` resets its connections (a network drop);
    shut, it cuts them and refuses new ones until `open` is set again (the client behind
    it is away); `drop_replies` black-holes server->client bytes (the client's requests
    arrive, their acks never come back); `stall` holds back the first server->client
    chunk that contains it until `release()` (a slow link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = True
        self.drop_replies = False
        self.stall: bytes | None = None
        self._released = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def __aenter__(self) -> "Gate":
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.shut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def release(self) -> None:
        self._released.set()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    def shut(self) -> None:
        self.open = False
        self.cut()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer, replies=False),
                                 self._pump(up_reader, writer, replies=True))
        finally:
            self._writers -= {writer, up_writer}

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    replies: bool) -> None:
        try:
            while data := await src.read(65536):
                if replies and self.drop_replies:
                    continue
                if replies and self.stall is not None and self.stall in data:
                    self.stall = None
                    await self._released.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()
