"""Log lines: readable by default, one JSON object per line with `--log-format json`."""

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print request paths, and `/ws?token=...` carries a token.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Throttle:
    """At most one log line per kind of failure every `every_s` seconds. When a backend is
    down every frame fails the same way, and a line per frame (with its traceback) would
    bury the one that says why, and cost the process as much as the frames themselves.
    The line after a quiet spell says how many like it were left out."""

    def __init__(self, every_s: float = 10.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._now = now
        self._next: dict[str, float] = {}  # keys: failure kinds, a handful in all
        self._skipped: Counter[str] = Counter()

    def admit(self, kind: str) -> str | None:
        """None: leave this one out. Else log it, with this suffix ("" or how many like it
        were left out since the last line)."""
        now = self._now()
        if now < self._next.get(kind, 0.0):
            self._skipped[kind] += 1
            return None
        self._next[kind] = now + self.every_s
        skipped = self._skipped.pop(kind, 0)
        return f" ({skipped} more like it not logged)" if skipped else ""

    def admit_exception(self) -> str | None:
        """`admit` for the exception being handled (call in an `except`): one kind per
        exception type, so a backend that is down does not hide a bug of another kind."""
        return self.admit(f"internal:{type(sys.exc_info()[1]).__qualname__}")


# One per process: the log is one stream, whichever module writes to it.
failures = Throttle()
