"""The calls a connection is a party to, so that losing the connection ends them visibly.

The server ends a call when a party's last connection closes and tells only the other
party: the side that dropped would never hear of it. So the client keeps its own list,
from the offers and answers it sends and receives, and forgets a call when a `call_end` or
`call_reject` ends it. What is still listed when the connection drops is ended by the
client itself (see Connection._drop_calls).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

CALL_FRAMES = frozenset({"webrtc", "call_end", "call_reject"})
# Answers that say the call is over (or never was) on the server.
GONE = frozenset({"conflict", "not_found"})


@dataclass
class Call:
    peer: str
    state: Literal["ringing", "active"]
    # This connection speaks for its side: it sent the offer, or answered it. An offer
    # that only rings here is not owned: the user's other devices may still answer it.
    owned: bool


class CallFrame(msgspec.Struct, rename="camel"):
    """The fields of `webrtc`, `call_end` and `call_reject` that say which call it is."""

    call_id: str | None = None
    kind: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None


@dataclass
class CallTracker:
    live: dict[str, Call] = field(default_factory=dict)  # callId -> the call

    def heard(self, type_: str, frame: CallFrame) -> None:
        """A call frame from the server."""
        if frame.call_id is None:
            return
        if type_ == "webrtc":
            self._signal(frame.call_id, frame.kind, frame.from_ or "", sent=False)
        else:  # call_end, call_reject: over (answered_elsewhere too: another device has it)
            self.live.pop(frame.call_id, None)

    def sending(self, type_: str, payload: Mapping[str, Any]) -> None:
        """Before a call frame goes out: hanging up or declining ends the call for this
        client whatever the answer (an ended call only gets `conflict`)."""
        if type_ in ("call_end", "call_reject"):
            self.live.pop(str(payload.get("callId")), None)

    def acked(self, type_: str, payload: Mapping[str, Any]) -> None:
        """The server accepted an offer or an answer of ours: we are a party."""
        call_id = payload.get("callId")
        if type_ == "webrtc" and call_id is not None:
            self._signal(str(call_id), payload.get("kind"), str(payload.get("to", "")),
                         sent=True)

    def refused(self, type_: str, payload: Mapping[str, Any], code: str) -> None:
        if type_ == "webrtc" and code in GONE:
            self.live.pop(str(payload.get("callId")), None)

    def drop_all(self) -> list[tuple[str, bool]]:
        """Every live call, forgotten, and whether this connection owned its side: the
        connection they depended on is gone."""
        ended = [(call_id, call.owned) for call_id, call in self.live.items()]
        self.live.clear()
        return ended

    def _signal(self, call_id: str, kind: str | None, peer: str, sent: bool) -> None:
        # Candidates start nothing: a late one must not bring an ended call back.
        if kind == "offer":
            # A renegotiation leaves the call as it was.
            self.live.setdefault(call_id, Call(peer, "ringing", owned=sent))
        elif kind == "answer":  # ours, or the peer's to our offer: we own our side
            self.live[call_id] = Call(peer, "active", owned=True)
