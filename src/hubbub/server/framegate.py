"""RFC 6455 checks on client frame headers, before the WebSocket parser sees the bytes.

The parser behind the gate (picows) delivers frames, but on a protocol error it writes its
own close frame at once, ahead of the answers hubbub has queued for the frames before the
bad one, and it looks one frame ahead, so the frame just before a bad one is never handled.
The gate walks the headers first and lets through only the bytes of good frames: the parser
sees a clean stream, and the connection fails at the bad frame in order, after the frames
before it were handled and answered. A client close frame stops the stream the same way,
so that what came before it is answered before the server's close.

No extension is negotiated, so every reserved bit must be clear (§5.2). Client frames must
be masked (§5.1). Control frames are at most 125 bytes and never fragmented (§5.5). A
message is at most `max_frame` bytes over all its fragments, refused on its header (1009).
"""

from dataclasses import dataclass

from hubbub.protocol.codes import CloseCode

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))


@dataclass(frozen=True, slots=True)
class Fail:
    """Fail the connection (§7.1.7) with this code: the frame at the cut is bad."""
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerClose:
    """The client's close frame, valid: the close handshake starts (or completes)."""
    code: int | None  # None: a close frame without a code (§7.1.5: 1005)
    reason: str


Stop = Fail | PeerClose


def close_code_valid(code: int) -> bool:
    """§7.4: codes a peer may send. 1005, 1006 and 1015 are never sent in a frame."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _unmask(key: bytes, payload: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")


def read_close(key: bytes, masked_payload: bytes) -> Stop:
    payload = _unmask(key, masked_payload)
    if not payload:
        return PeerClose(None, "")
    if len(payload) == 1:
        return Fail(CloseCode.PROTOCOL_ERROR, "close frame with a one-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not close_code_valid(code):
        return Fail(CloseCode.PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        return Fail(CloseCode.INVALID_DATA, "close reason is not UTF-8")
    return PeerClose(code, reason)


class FrameGate:
    """Feed it each read; it says how many of those bytes the parser may have, and why it
    stopped there, if it did. After a stop it passes nothing more."""

    __slots__ = ("_held", "_in_message", "_max_frame", "_message_size", "_skip", "stopped")

    def __init__(self, max_frame: int) -> None:
        self._max_frame = max_frame
        self._held = b""  # the start of a header (or a whole close frame) not passed on yet
        self._skip = 0  # bytes of the current frame's payload still to come
        self._in_message = False  # a fragmented data message has started and not ended
        self._message_size = 0
        self.stopped = False

    def feed(self, data: bytes | memoryview) -> tuple[int, Stop | None]:
        """How many bytes of `data` (counted from its start) may pass, and the stop."""
        if self.stopped:
            return 0, None
        end = len(data)
        skip = self._skip
        if skip >= end:  # the middle of a long payload
            self._skip = skip - end
            return end, None
        held = self._held
        if held:
            # Bytes held back last time were a header's start (skip is 0 then): those were
            # passed on unless they began a close frame. Walk them with the new ones.
            buf: bytes | memoryview = held + bytes(data)
            base = len(held)
        else:
            buf = data
            base = 0
        self._held = b""
        pos, total = skip, len(buf)
        max_frame = self._max_frame
        while total - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 == 0x81 and b1 & 0x80 and not self._in_message:
                # Most frames: a whole masked text message (FIN, no reserved bits) in a
                # short form. Anything else takes the full walk below.
                n = b1 & 0x7F
                if n < 126:
                    if n <= max_frame:
                        pos += 6 + n
                        continue
                elif n == 126 and total - pos >= 4:
                    n = buf[pos + 2] << 8 | buf[pos + 3]
                    if 126 <= n <= max_frame:
                        pos += 8 + n
                        continue
            opcode = b0 & 0x0F
            stop = self._check_first_bytes(b0, b1, opcode)
            if stop is not None:
                return self._stop(pos - base, stop)
            n = b1 & 0x7F
            ext = 2 if n == 126 else 8 if n == 127 else 0
            # A frame is judged as soon as its length is known: the bytes of a partial
            # header pass on (below), and the parser must never hold enough of a bad one
            # to judge it itself.
            if total - pos < 2 + ext:
                break
            if ext:
                n = int.from_bytes(buf[pos + 2:pos + 2 + ext], "big")
                if (ext == 2 and n < 126) or (ext == 8 and (n < 65536 or n >> 63)):
                    return self._stop(pos - base, Fail(
                        CloseCode.PROTOCOL_ERROR, "payload length not in its shortest form"))
            if opcode < OP_CLOSE:
                stop = self._check_message(opcode, n)
                if stop is not None:
                    return self._stop(pos - base, stop)
            if total - pos < 6 + ext:
                break
            if opcode == OP_CLOSE:
                if total - pos < 6 + n:
                    break
                key = bytes(buf[pos + 2:pos + 6])
                return self._stop(pos - base, read_close(key, bytes(buf[pos + 6:pos + 6 + n])))
            if opcode < OP_CLOSE:
                self._begin(b0, n)
            pos += 6 + ext + n
        if pos >= total:
            self._skip = pos - total
            return end, None
        # An incomplete header (or close frame) at the end: hold it. Its bytes pass on now,
        # the parser waits for the rest, unless it is a close frame, kept from the parser.
        self._skip = 0
        self._held = bytes(buf[pos:])
        if buf[pos] & 0x0F == OP_CLOSE:
            return max(pos - base, 0), None
        return end, None

    def _check_first_bytes(self, b0: int, b1: int, opcode: int) -> Fail | None:
        if b0 & 0x70:
            return Fail(CloseCode.PROTOCOL_ERROR, "reserved bits set (no extension agreed)")
        if opcode not in _OPCODES:
            return Fail(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if not b1 & 0x80:
            return Fail(CloseCode.PROTOCOL_ERROR, "unmasked client frame")
        if opcode >= OP_CLOSE:
            if not b0 & 0x80:
                return Fail(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
            if b1 & 0x7F > 125:
                return Fail(CloseCode.PROTOCOL_ERROR, "control frame over 125 bytes")
        return None

    def _check_message(self, opcode: int, n: int) -> Fail | None:
        """A data frame of `n` bytes, judged without changing anything: a header held back
        at the end of a read is judged again with the next one."""
        if opcode == OP_CONT:
            if not self._in_message:
                return Fail(CloseCode.PROTOCOL_ERROR, "continuation without a message")
            size = self._message_size + n
        else:
            if self._in_message:
                return Fail(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            size = n
        if size > self._max_frame:
            return Fail(CloseCode.TOO_LARGE, f"message over {self._max_frame} bytes")
        return None

    def _begin(self, b0: int, n: int) -> None:
        """A data frame that passed `_check_message` goes through whole."""
        fin = bool(b0 & 0x80)
        size = self._message_size + n if self._in_message else n
        self._in_message = not fin
        self._message_size = 0 if fin else size

    def _stop(self, passed: int, stop: Stop) -> tuple[int, Stop]:
        self.stopped = True
        self._held = b""
        return max(passed, 0), stop
