"""Coded errors. Rules raise these; the dispatcher turns them into wire frames in one place."""

from hubbub.protocol.codes import CloseCode, ErrorCode


class HubbubError(Exception):
    """Base of every error hubbub raises on purpose."""


class ProtocolError(HubbubError):
    """A refused frame: becomes `{"type":"error","payload":{"code","message"}}`."""

    def __init__(
        self, code: ErrorCode, message: str, *, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class CloseConnection(HubbubError):
    """The connection must be closed with this WebSocket close code."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class StoreUnavailable(HubbubError):
    """The store could not make a write durable (disk full, read-only, unreachable).
    Nothing was acked; the client gets `internal` with this message and may retry."""


class ConfigError(HubbubError):
    """The settings cannot work together (reported at start, exit code 2)."""
