"""Settings: every knob, its default, its flag and its environment name, read once.

Each field is a `hubbub serve` flag (`--max-frame`) and an environment variable
(`HUBBUB_MAX_FRAME`); a flag given on the command line wins over the environment.
PROTOCOL.md §Running the server fixes the names of the first group.
"""

import argparse
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hubbub.errors import ConfigError

# Numeric settings for which 0 means nothing useful (every other one takes 0 as "off" or
# "no limit"); no numeric setting may be negative.
_ABOVE_ZERO = frozenset(("ring_timeout", "typing_timeout", "auth_timeout", "handshake_timeout",
                         "max_queue", "max_rooms", "max_content", "backlog", "turn_ttl"))


def _opt(default: Any, help: str, *, repeat: bool = False, choices: Sequence[str] = ()) -> Any:
    meta = {"help": help, "repeat": repeat, "choices": tuple(choices)}
    if repeat:
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # PROTOCOL.md §Running the server
    host: str = _opt("127.0.0.1", "address to bind")
    port: int = _opt(8080, "port to bind; 0 picks a free one")
    store: str = _opt("sqlite:///hubbub.db", "storage URL: sqlite:///REL, sqlite:////ABS, "
                      "sqlite://:memory:, postgresql://...")
    redis: str | None = _opt(None, "redis://HOST:PORT/DB to share fan-out and presence")
    jwt_secret: str | None = _opt(None, "HS256 secret; unset = dev identity mode (local only)")
    admin_token: str | None = _opt(None, "bearer token for the admin HTTP API")
    allowed_origin: list[str] = _opt(
        [], "allowed browser Origin (repeatable); unset = any on loopback, same-origin else",
        repeat=True)
    ring_timeout: float = _opt(30.0, "seconds a call may ring unanswered")
    typing_timeout: float = _opt(3.0, "seconds before an unrefreshed typing indicator ends")
    presence_grace: float = _opt(5.0, "seconds before a disconnected user is shown offline")
    heartbeat: float = _opt(20.0, "seconds between WebSocket pings (0 = off)")
    max_frame: int = _opt(65536, "largest client frame in bytes (close 1009 above)")
    workers: int = _opt(1, "processes sharing the port (needs --redis)")
    reuse_port: bool = _opt(False, "share the port with other processes (set by --workers); "
                            "the flag alone means true")
    # hubbub's own
    max_queue: int = _opt(1 << 20, "bytes a reader may fall behind before close 1013")
    rate_limit: float = _opt(100.0, "frames per second per connection (burst 2x); 0 = no limits")
    chat_rate: float = _opt(20.0, "chat frames per second per connection (burst 2x); 0 = off")
    max_rooms: int = _opt(100, "rooms one connection may be in")
    max_connections: int = _opt(0, "open connections this node accepts (0 = no limit)")
    max_connections_per_ip: int = _opt(0, "open connections per client IP (0 = no limit)")
    max_connections_per_user: int = _opt(20, "open connections per user (0 = no limit)")
    max_content: int = _opt(4000, "longest chat message, in characters")
    auth_timeout: float = _opt(10.0, "seconds a new connection has to authenticate")
    handshake_timeout: float = _opt(10.0, "seconds a client has to send a complete HTTP request "
                                    "head (slowloris guard)")
    recovery_limit: int = _opt(1000, "most missed events join_room `since` returns (and "
                                 "a node's gap fill reads at a time)")
    sqlite_synchronous: str = _opt("FULL", "SQLite synchronous mode (FULL: fsync each commit)",
                                   choices=("FULL", "NORMAL", "EXTRA", "OFF"))
    backlog: int = _opt(4096, "listen backlog (bursts of reconnects)")
    stun: list[str] = _opt([], "STUN URL for welcome.iceServers (repeatable)", repeat=True)
    turn: list[str] = _opt([], "TURN URL for welcome.iceServers (repeatable)", repeat=True)
    turn_secret: str | None = _opt(None, "TURN REST shared secret (coturn use-auth-secret)")
    turn_ttl: int = _opt(3600, "lifetime of TURN credentials, seconds")
    log_format: str = _opt("text", "log line format", choices=("text", "json"))
    log_level: str = _opt("info", "log level (debug adds each connection's open, auth and "
                          "goodbye)", choices=("debug", "info", "warning", "error"))

    @property
    def dev_identity(self) -> bool:
        return not self.jwt_secret

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.workers > 1 and not self.redis:
            raise ConfigError("--workers needs --redis (and a shared store) to share state")
        if not 0 <= self.port <= 65535:
            raise ConfigError("--port must be 0..65535")
        if self.max_frame < 256:
            raise ConfigError("--max-frame must be at least 256 bytes")
        if self.redis and not self.redis.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("--redis must be a redis://HOST:PORT/DB URL")
        if self.redis and not self.redis.startswith("unix://"):
            db = urlsplit(self.redis).path.strip("/")
            if db and not (db.isascii() and db.isdigit()):
                raise ConfigError(f"--redis: the database in redis://HOST:PORT/DB is a "
                                  f"number, not {db!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) not in (int, float):
                continue
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{flag(f.name)} must be a number, 0 or more (not {value})")
            if value == 0 and f.name in _ABOVE_ZERO:
                raise ConfigError(f"{flag(f.name)} must be more than 0")
        if self.redis and self.store in ("sqlite://:memory:", "sqlite:///:memory:"):
            raise ConfigError("--redis shares state between nodes: use a store they share "
                              "(a SQLite file on one machine, or postgresql://)")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return "HUBBUB_" + name.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field; defaults are applied later so the environment can win."""
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        shown = "" if f.default in (None, "", False) or meta["repeat"] else (
            f" (default {f.default})")
        kwargs: dict[str, Any] = {"dest": f.name, "default": None,
                                  "help": f"{meta['help']}{shown} [env {env_name(f.name)}]"}
        if meta["repeat"]:
            kwargs["action"] = "append"
        elif meta["choices"]:
            kwargs["choices"] = meta["choices"]
        elif isinstance(f.default, bool):  # `--reuse-port` alone, or `--reuse-port false`
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        parser.add_argument(flag(f.name), **kwargs)


def _convert(f: "dataclasses.Field[Any]", raw: Any) -> Any:
    if f.metadata["repeat"]:
        if isinstance(raw, str):
            return [part.strip() for part in raw.split(",") if part.strip()]
        return list(raw)
    choices = f.metadata["choices"]
    if choices and raw != "" and raw not in choices:
        raise ConfigError(f"{flag(f.name)} must be one of {', '.join(choices)}")
    if raw == "":
        return f.default  # empty = unset: keep the default, whatever the type
    kind = f.type if isinstance(f.type, type) else None
    if f.default is None or kind is str:
        return raw
    try:
        if isinstance(f.default, bool):
            return str(raw).lower() in ("1", "true", "yes", "on")
        if isinstance(f.default, int):
            return int(raw)
        if isinstance(f.default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{flag(f.name)}: {raw!r} is not a number") from None
    return raw


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None,
         **overrides: Any) -> Settings:
    """Build Settings: keyword overrides > command-line flags > HUBBUB_* env > defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw: Any = None
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        if args is not None:
            raw = getattr(args, f.name, None)
        if raw is None and env_name(f.name) in env:
            raw = env[env_name(f.name)]
        if raw is not None:
            if f.name == "jwt_secret" and not str(raw).strip():
                # Empty is "unset" for every other setting; here unset means dev identity
                # mode, where anyone is whoever they say. `--jwt-secret "$SECRET"` with
                # SECRET unset must not open the server to that (docs/topics/security.md).
                raise ConfigError("--jwt-secret is set but empty: give the secret, or leave "
                                  "it out entirely for dev identity mode")
            values[f.name] = _convert(f, raw)
    settings = Settings(**values)
    settings.validate()
    return settings
