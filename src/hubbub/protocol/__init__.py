"""The wire contract (PROTOCOL.md): frames, validation, codes. No I/O here."""
