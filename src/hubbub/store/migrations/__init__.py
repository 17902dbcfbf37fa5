"""Schema migrations: numbered SQL files per backend, applied in order, once each."""

from importlib import resources

from hubbub.errors import ConfigError


def scripts(backend: str) -> list[tuple[int, str]]:
    """(version, sql) for every `NNNN_name.sql` of a backend, ascending."""
    folder = resources.files("hubbub.store.migrations") / backend
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {backend} migrations share a version number: {sorted(versions)}")
    return sorted(found)


def refuse_newer(backend: str, current: int, latest: int) -> None:
    """A schema a newer hubbub upgraded is not this version's to write: its tables may
    hold rows this code would misread or write in a shape the newer code does not expect
    (docs/decisions/0050-a-newer-schema-is-refused.md)."""
    if current > latest:
        raise ConfigError(
            f"the {backend} store's schema is version {current}, newer than this hubbub "
            f"knows ({latest}): a newer hubbub upgraded it; run that version or a later one")
