"""DESIGN.md §2: dependencies point one way, `protocol` <- `core` <- `features` <- `server`.

Every module under src/hubbub is parsed with `ast` (nothing is imported), and each rule
reports the offending module, line and import, so a failure says what to move.
"""

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "hubbub"

# Rank of each layer: a module may import from its own rank or below, never above.
# `ids` and `errors` are imported by protocol/, so they obey protocol's rules;
# `config` and `metrics` are imported by features/, so they obey features' rules.
RANKS: dict[str, int] = {
    "hubbub.protocol": 0,
    "hubbub.ids": 0,
    "hubbub.errors": 0,
    "hubbub.core": 1,
    "hubbub.features": 2,
    "hubbub.config": 2,
    "hubbub.metrics": 2,
    "hubbub.server": 3,
}

SOCKET_LIBS = frozenset({"socket", "ssl", "selectors", "aiohttp", "websockets", "picows"})
EVENT_LOOPS = frozenset({"asyncio", "uvloop"})
DRIVERS = frozenset({"sqlite3", "asyncpg", "psycopg", "psycopg2", "redis", "hiredis"})

# No I/O in the rules or the wire format (DESIGN.md §2, §5.1).
FORBIDDEN: dict[str, frozenset[str]] = {
    "hubbub.protocol": SOCKET_LIBS | EVENT_LOOPS | DRIVERS,
    "hubbub.ids": SOCKET_LIBS | EVENT_LOOPS | DRIVERS,
    "hubbub.errors": SOCKET_LIBS | EVENT_LOOPS | DRIVERS,
    "hubbub.core": SOCKET_LIBS | EVENT_LOOPS | DRIVERS,
    "hubbub.features": SOCKET_LIBS | EVENT_LOOPS,
}

# The web framework stays at the edge: the endpoint, the HTTP routes and the wiring
# (and the Python client, which uses aiohttp's client; DESIGN.md §3).
AIOHTTP_ALLOWED = frozenset({"hubbub.server.ws", "hubbub.server.http", "hubbub.server.app"})
AIOHTTP_ALLOWED_PACKAGES = ("hubbub.client",)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "hubbub.core.rooms"
    target: str  # what it imports, e.g. "hubbub.server.hub" or "asyncio"
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} (line {self.line})"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(module: str, source: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import statement of a module, anywhere in it (functions and
    `if TYPE_CHECKING:` blocks included), with relative imports resolved."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            for alias in node.names:
                # `from hubbub import server` imports the module hubbub.server.
                yield Import(module, origin if alias.name == "*" else f"{origin}.{alias.name}",
                             node.lineno)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += imports_in(module_name(path), path.read_text(encoding="utf-8"),
                            is_package=path.name == "__init__.py")
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rule_key(name: str, table: Mapping[str, object]) -> str | None:
    return next((key for key in table if _within(name, key)), None)


def upward_imports(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        own, theirs = _rule_key(imp.module, RANKS), _rule_key(imp.target, RANKS)
        if own is not None and theirs is not None and RANKS[theirs] > RANKS[own]:
            out.append(f"{imp}: {own} must not depend on {theirs} "
                       "(protocol <- core <- features <- server)")
    return out


def forbidden_imports(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        key = _rule_key(imp.module, FORBIDDEN)
        top = imp.target.split(".")[0]
        if key is not None and top in FORBIDDEN[key]:
            out.append(f"{imp}: {key} must not import {top}")
    return out


def aiohttp_imports(imports: list[Import]) -> list[str]:
    return [
        f"{imp}: only {', '.join(sorted(AIOHTTP_ALLOWED))} may import aiohttp"
        for imp in imports
        if imp.target.split(".")[0] == "aiohttp"
        and imp.module not in AIOHTTP_ALLOWED
        and not any(_within(imp.module, p) for p in AIOHTTP_ALLOWED_PACKAGES)
    ]


def _report(problems: list[str]) -> str:
    return "layering violations (DESIGN.md §2):\n  " + "\n  ".join(problems)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


# ---- the rules, on the real source ---------------------------------------------------


def test_every_layer_has_modules_to_check() -> None:
    names = {module_name(p) for p in PACKAGE.rglob("*.py")}
    for layer in ("hubbub.protocol", "hubbub.core", "hubbub.features", "hubbub.server"):
        assert any(_within(n, layer) for n in names), f"no module found in {layer}"


def test_protocol_imports_nothing_from_core_features_or_server(imports: list[Import]) -> None:
    problems = [p for p in upward_imports(imports)
                if p.startswith(("hubbub.protocol", "hubbub.ids ", "hubbub.errors "))]
    assert not problems, _report(problems)


def test_core_imports_nothing_from_features_or_server(imports: list[Import]) -> None:
    problems = [p for p in upward_imports(imports) if p.startswith("hubbub.core")]
    assert not problems, _report(problems)


def test_features_import_nothing_from_server(imports: list[Import]) -> None:
    problems = [p for p in upward_imports(imports)
                if p.startswith(("hubbub.features", "hubbub.config ", "hubbub.metrics "))]
    assert not problems, _report(problems)


def test_no_module_imports_against_the_layer_direction(imports: list[Import]) -> None:
    problems = upward_imports(imports)
    assert not problems, _report(problems)


def test_core_and_protocol_import_no_asyncio_socket_or_driver(imports: list[Import]) -> None:
    problems = [p for p in forbidden_imports(imports) if not p.startswith("hubbub.features")]
    assert not problems, _report(problems)


def test_features_import_no_asyncio_and_no_socket_library(imports: list[Import]) -> None:
    problems = [p for p in forbidden_imports(imports) if p.startswith("hubbub.features")]
    assert not problems, _report(problems)


def test_only_ws_http_and_app_import_aiohttp(imports: list[Import]) -> None:
    problems = aiohttp_imports(imports)
    assert not problems, _report(problems)


def test_only_the_clock_reads_time_in_core_and_features(imports: list[Import]) -> None:
    # Rules get time passed in, wall and monotonic (core/clock.py, ADR 0090): a rule that
    # read a clock itself could not be tested by hand, and might read the wrong one.
    problems = [f"{imp}: take time from node.clock (hubbub.core.clock)" for imp in imports
                if imp.target.split(".")[0] in ("time", "datetime")
                and imp.module != "hubbub.core.clock"
                and (_within(imp.module, "hubbub.core") or _within(imp.module, "hubbub.features"))]
    assert not problems, _report(problems)


def test_hub_does_not_import_aiohttp(imports: list[Import]) -> None:
    hub = [i for i in imports if i.module == "hubbub.server.hub"]
    assert hub, "hubbub.server.hub was not scanned"
    assert not [i for i in hub if i.target.split(".")[0] == "aiohttp"]


# ---- the checker itself -----------------------------------------------------------------


def test_checker_reports_the_offending_module_and_import() -> None:
    found = list(imports_in("hubbub.core.rooms", "import os\n\nimport asyncio\n"))
    assert forbidden_imports(found) == [
        "hubbub.core.rooms imports asyncio (line 3): hubbub.core must not import asyncio"
    ]


def test_checker_reports_an_upward_import_by_name() -> None:
    found = list(imports_in("hubbub.features.rooms", "from hubbub.server.hub import Hub\n"))
    assert upward_imports(found) == [
        "hubbub.features.rooms imports hubbub.server.hub.Hub (line 1): hubbub.features must "
        "not depend on hubbub.server (protocol <- core <- features <- server)"
    ]


def test_checker_sees_from_package_import_module() -> None:
    found = list(imports_in("hubbub.core.calls", "from hubbub import features\n"))
    assert [str(i) for i in found] == ["hubbub.core.calls imports hubbub.features (line 1)"]
    assert len(upward_imports(found)) == 1


def test_checker_resolves_relative_imports() -> None:
    source = "from . import envelope\nfrom ..server.hub import Hub\nfrom .. import features\n"
    found = list(imports_in("hubbub.core.rooms", source))
    assert [i.target for i in found] == [
        "hubbub.core.envelope", "hubbub.server.hub.Hub", "hubbub.features"]
    assert len(upward_imports(found)) == 2


def test_checker_resolves_relative_imports_in_a_package_init() -> None:
    found = list(imports_in("hubbub.core", "from .rooms import RoomRegistry\n", is_package=True))
    assert [i.target for i in found] == ["hubbub.core.rooms.RoomRegistry"]


def test_checker_sees_imports_inside_functions() -> None:
    source = "def f() -> None:\n    import socket\n"
    found = list(imports_in("hubbub.protocol.envelope", source))
    assert forbidden_imports(found) == [
        "hubbub.protocol.envelope imports socket (line 2): hubbub.protocol must not import socket"
    ]


def test_checker_flags_aiohttp_in_the_hub_but_not_in_ws() -> None:
    hub = list(imports_in("hubbub.server.hub", "from aiohttp import web\n"))
    ws = list(imports_in("hubbub.server.ws", "from aiohttp import web\n"))
    assert len(aiohttp_imports(hub)) == 1
    assert "hubbub.server.hub imports aiohttp.web (line 1)" in aiohttp_imports(hub)[0]
    assert aiohttp_imports(ws) == []


def test_checker_lets_features_import_core_and_protocol() -> None:
    source = "from hubbub.core.rooms import RoomRegistry\nfrom hubbub.protocol import frames\n"
    found = list(imports_in("hubbub.features.rooms", source))
    assert upward_imports(found) == []
    assert forbidden_imports(found) == []
