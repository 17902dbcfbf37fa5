"""Cross-node fan-out behind one contract (`Broker`), chosen by `--redis`."""

from hubbub.broker.base import Broker, MessageHandler

__all__ = ["Broker", "MessageHandler"]
