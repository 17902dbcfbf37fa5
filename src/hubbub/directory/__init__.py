"""Cluster-wide presence and room membership behind one contract (`Directory`)."""

from hubbub.directory.base import Departure, Directory, PresenceInfo

__all__ = ["Departure", "Directory", "PresenceInfo"]
