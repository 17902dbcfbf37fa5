"""The Python client: `async with Client(url, user_id="bot") as c: ...`."""

from hubbub.client.api import Client, Event, HubbubRequestError

__all__ = ["Client", "Event", "HubbubRequestError"]
