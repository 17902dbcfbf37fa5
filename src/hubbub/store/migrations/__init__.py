"""Schema migrations: numbered SQL files per backend, applied in order, once each."""

from importlib import resources


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
