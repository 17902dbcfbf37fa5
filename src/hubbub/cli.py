"""The one CLI: `hubbub serve | migrate | token`."""

import argparse
import asyncio
import sys
import time
from collections.abc import Coroutine
from typing import Any

from hubbub import __version__, config, logs
from hubbub.errors import ConfigError


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # uvloop is optional at runtime (not on Windows)
        return asyncio.run(main)
    return uvloop.run(main)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = config.load(args)
    logs.setup(settings.log_format, settings.log_level)
    if settings.workers > 1:
        from hubbub.server.workers import run_workers

        return run_workers(settings, sys.argv[1:])
    from hubbub.server.app import serve

    return _run(serve(settings))


def cmd_token(args: argparse.Namespace) -> int:
    from hubbub.features.auth import mint_token

    settings = config.load(args)
    if not settings.jwt_secret:
        print("hubbub token: needs --jwt-secret or HUBBUB_JWT_SECRET", file=sys.stderr)
        return 2
    print(mint_token(settings.jwt_secret, args.user, name=args.name, rooms=args.rooms,
                     admin=args.admin, ttl_s=args.ttl, now_s=int(time.time())))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = config.load(args)
    url = settings.store
    from hubbub.store import POSTGRES_SCHEMES, postgres_module, sqlite_path

    path = sqlite_path(url)
    if url.startswith(POSTGRES_SCHEMES):
        version = _run(postgres_module().run_migrations(url))
    elif path is not None and path != ":memory:":
        from hubbub.store.sqlite import run_migrations

        version = _run(run_migrations(path))
    else:
        print(f"hubbub migrate: needs a file SQLite or a PostgreSQL store, not {url!r}",
              file=sys.stderr)
        return 2
    print(f"schema version {version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubbub", description="Real-time server for video chat.")
    parser.add_argument("--version", action="version", version=f"hubbub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a node")
    config.add_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    migrate = sub.add_parser("migrate", help="bring the store's schema to this version")
    config.add_arguments(migrate)
    migrate.set_defaults(func=cmd_migrate)
    token = sub.add_parser("token", help="mint a JWT for the configured secret (for trying out)")
    config.add_arguments(token)
    token.add_argument("--user", required=True, help="the token's `sub` (user id)")
    token.add_argument("--name", help="display name")
    token.add_argument("--rooms", nargs="+", metavar="GLOB", help="rooms the user may join")
    token.add_argument("--admin", action="store_true", help="grant the admin claim")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (0 = none)")
    token.set_defaults(func=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return 2
