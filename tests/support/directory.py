"""What a MemoryDirectoryState can be put through besides its nodes' calls."""

import dataclasses

from hubbub.directory.memory import MemoryDirectoryState


def forget_all(state: MemoryDirectoryState) -> None:
    """What a Redis restarted without persistence comes back with: nothing."""
    empty = MemoryDirectoryState()
    for f in dataclasses.fields(state):
        setattr(state, f.name, getattr(empty, f.name))
