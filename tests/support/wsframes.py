"""Client WebSocket frames built by hand (RFC 6455 §5.2), for tests that speak raw bytes."""

import os
import struct


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True,
                 rsv: int = 0, length: int | None = None) -> bytes:
    """One client frame, as given: any opcode, reserved bits, mask or none, and a declared
    length that may differ from the payload's."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += struct.pack("!BH", bit | 126, n)
    else:
        head += struct.pack("!BQ", bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
