"""hubbub: a real-time server for video chat applications."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
