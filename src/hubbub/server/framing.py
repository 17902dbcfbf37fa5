"""Server-side WebSocket frames (RFC 6455 §5.2), built once and shared by every recipient.

Server frames are never masked, so one broadcast is the same bytes for every connection.
"""

import struct


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def text_payload(frame: bytes) -> bytes:
    """The payload of a frame `text_frame` built."""
    n = frame[1]
    return frame[2 if n < 126 else 4 if n == 126 else 10:]


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    return bytes((0x80 | opcode, len(payload[:125]))) + payload[:125]


PING = control_frame(0x9)

# How a `typing` event's frame ends when it says `true` (msgspec encodes fields in order, and
# isTyping is TypingEvent's last): such a frame may be shed, a `false` never is.
TYPING_TRUE = b'"isTyping":true}}'
TYPING_FALSE = b'"isTyping":false}}'


def close_frame(code: int, reason: str) -> bytes:
    """A close frame; the reason is cut to fit 125 bytes at a character boundary, since a
    close reason must be valid UTF-8 (RFC 6455 §5.5.1)."""
    cut = reason.encode()[:123].decode(errors="ignore").encode()
    return control_frame(0x8, int(code).to_bytes(2, "big") + cut)


def pong(payload: bytes) -> bytes:
    return control_frame(0xA, payload)
