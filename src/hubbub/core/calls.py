"""Call sessions (PROTOCOL §Calls): an explicit state machine per call.

    ringing --answer (callee)----------------> active
    ringing --reject (callee)----------------> ended(rejected)
    ringing --call_end (either)--------------> ended(hangup)
    ringing --no answer in ring_timeout------> ended(timeout)
    active  --call_end (either)--------------> ended(hangup)
    ringing/active --a party's last connection drops--> ended(disconnected)

Each side of a call is owned by one connection: the caller's is the one that sent the
offer, the callee's the first that answered. While ringing, the caller's frames go to
every connection of the callee; once answered, frames pass only between the two
owners. Only the two parties may send anything about a call.

Two clocks come in with each transition: `now_ms` (wall) for the call record's instants,
which leave the process, and `mono_ms` (monotonic) for the ring timeout, the retention
of ended calls and the ring and talk durations, which a step of the system clock must
not move.
"""

import heapq
from dataclasses import dataclass, field
from enum import StrEnum

from hubbub.core.effects import Effects, LogCall, ToConns, ToUser
from hubbub.errors import ProtocolError
from hubbub.ids import ConnId, RoomId, UserId
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import (
    CallEndEvent,
    CallRecord,
    Out,
    SessionDescription,
    WebRTCEvent,
)

# An ended call is remembered this long, so late frames about it get a clear `conflict`.
ENDED_RETENTION_MS = 60_000


class CallState(StrEnum):
    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(slots=True)
class Call:
    call_id: str
    caller: UserId
    callee: UserId
    room: RoomId | None
    caller_conn: ConnId | None
    started_at_ms: int
    started_mono: int
    callee_conn: ConnId | None = None
    state: CallState = CallState.RINGING
    # The record's instants are wall clock; each has its monotonic twin for durations.
    answered_at_ms: int | None = None
    answered_mono: int | None = None
    ended_at_ms: int | None = None
    ended_mono: int | None = None
    end_reason: str | None = None
    ended_by: UserId | None = None

    def is_party(self, user: UserId) -> bool:
        return user == self.caller or user == self.callee

    def peer_of(self, user: UserId) -> UserId:
        return self.callee if user == self.caller else self.caller

    def owner_of(self, user: UserId) -> ConnId | None:
        return self.caller_conn if user == self.caller else self.callee_conn

    def record(self) -> CallRecord:
        assert self.ended_at_ms is not None and self.end_reason is not None
        return CallRecord(
            call_id=self.call_id, caller=self.caller, callee=self.callee, room_id=self.room,
            started_at=self.started_at_ms, answered_at=self.answered_at_ms,
            ended_at=self.ended_at_ms, end_reason=self.end_reason, ended_by=self.ended_by)


@dataclass
class CallStats:
    started: int = 0
    answered: int = 0
    rejected: int = 0
    timed_out: int = 0
    busy: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    ring_ms_total: int = 0
    talk_ms_total: int = 0


class Calls:
    def __init__(self, ring_timeout_ms: int) -> None:
        self.ring_timeout_ms = ring_timeout_ms
        self.calls: dict[str, Call] = {}
        self._live: dict[UserId, str] = {}  # user -> their ringing or active call
        self._deadlines: list[tuple[int, str]] = []  # (monotonic instant, call id)
        self.stats = CallStats()
        # Calls that ended since the last `drain_log()`: the call log persists them.
        self._ended: list[Call] = []

    # ---- queries -------------------------------------------------------------------
    def live_call_of(self, user: UserId) -> Call | None:
        call_id = self._live.get(user)
        return self.calls.get(call_id) if call_id else None

    def live_parties(self) -> list[UserId]:
        """Every user in a ringing or active call here."""
        return list(self._live)

    def live_calls(self) -> list[Call]:
        """Every ringing or active call here."""
        return [c for c in self.calls.values() if c.state is not CallState.ENDED]

    def recently_ended(self, mono_ms: int) -> dict[str, int]:
        """The calls that ended here and are still remembered (`ENDED_RETENTION_MS`), each
        with the ms it is remembered for yet: a late frame naming one gets `conflict`."""
        return {c.call_id: ENDED_RETENTION_MS - (mono_ms - c.ended_mono)
                for c in self.calls.values()
                if c.ended_mono is not None and mono_ms - c.ended_mono < ENDED_RETENTION_MS}

    def live_count(self) -> int:
        return sum(1 for c in self.calls.values() if c.state is not CallState.ENDED)

    def drain_log(self) -> Effects:
        """`LogCall` effects for the calls that ended since the last drain."""
        if not self._ended:  # the common case: asked after every call frame
            return []
        ended, self._ended = self._ended, []
        return [LogCall(call.record()) for call in ended]

    def _get(self, call_id: str, user: UserId) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no call {call_id!r}")
        if not call.is_party(user):
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the two parties may act on a call")
        if call.state is CallState.ENDED:
            raise ProtocolError(ErrorCode.CONFLICT,
                                f"call is ended ({call.end_reason}), cannot continue it")
        return call

    # ---- delivery helpers ----------------------------------------------------------------
    def _to_side(self, call: Call, user: UserId, type_: str, payload: Out) -> Effects:
        """To the connection owning `user`'s side; to all their connections while unowned."""
        owner = call.owner_of(user)
        if owner is None:
            return [ToUser(user, type_, payload)]
        return [ToConns((owner,), type_, payload)]

    @staticmethod
    def _relay(call: Call, kind: str, sender: UserId, sdp: SessionDescription | None,
               candidate: dict[str, object] | None) -> WebRTCEvent:
        return WebRTCEvent(kind=kind,  # type: ignore[arg-type]
                           from_=sender, to=call.peer_of(sender), call_id=call.call_id,
                           room_id=call.room, sdp=sdp, candidate=candidate)

    def _bind(self, call: Call, user: UserId, conn: ConnId) -> None:
        """Check that `conn` may speak for `user` in this call; claim an unowned side."""
        owner = call.owner_of(user)
        if owner is None:
            if user == call.caller:
                call.caller_conn = conn
            elif call.state is CallState.ACTIVE:
                call.callee_conn = conn
        elif owner != conn:
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                "this call is owned by another connection of yours")

    # ---- transitions ------------------------------------------------------------------------
    def offer(self, *, call_id: str, caller: UserId, conn: ConnId, callee: UserId,
              room: RoomId | None, sdp: SessionDescription | None,
              candidate: dict[str, object] | None, now_ms: int, mono_ms: int,
              callee_busy: bool = False) -> Effects:
        """A new callId starts a ringing call; a known one is a re-offer (before an
        answer) or a renegotiation / ICE restart (in an active call). `callee_busy`: the
        callee is in a call this node does not hold (another node's)."""
        existing = self.calls.get(call_id)
        if existing is not None:
            call = self._get(call_id, caller)
            if callee != call.peer_of(caller):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "`to` is not the other party")
            if call.state is CallState.RINGING and caller != call.caller:
                raise ProtocolError(ErrorCode.CONFLICT,
                                    "call is ringing: answer it, do not offer on it")
            self._bind(call, caller, conn)
            return self._to_side(call, call.peer_of(caller), "webrtc",
                                 self._relay(call, "offer", caller, sdp, candidate))
        if callee == caller:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "you cannot call yourself")
        mine = self.live_call_of(caller)
        if mine is not None:
            if mine.caller == callee and mine.state is CallState.RINGING:
                # Glare: both called each other; the first offer wins (docs/topics/calls.md).
                raise ProtocolError(ErrorCode.CONFLICT,
                                    f"{callee} is calling you (callId {mine.call_id}): answer it")
            raise ProtocolError(ErrorCode.CONFLICT,
                                f"you are already in call {mine.call_id}; end it first")
        call = Call(call_id=call_id, caller=caller, callee=callee, room=room, caller_conn=conn,
                    started_at_ms=now_ms, started_mono=mono_ms)
        self.stats.started += 1
        if callee_busy or self.live_call_of(callee) is not None:
            # PROTOCOL §Calls: a callee already in a call -> the caller hears `busy`.
            self.stats.busy += 1
            self._finish(call, "busy", callee, now_ms, mono_ms)
            self.calls[call_id] = call
            return [ToConns((conn,), "call_reject",
                            CallEndEvent(call_id=call_id, by=callee, reason="busy"))]
        self.calls[call_id] = call
        self._live[caller] = call_id
        self._live[callee] = call_id
        heapq.heappush(self._deadlines, (mono_ms + self.ring_timeout_ms, call_id))
        return [ToUser(callee, "webrtc", self._relay(call, "offer", caller, sdp, candidate))]

    def answer(self, *, call_id: str, user: UserId, conn: ConnId,
               sdp: SessionDescription | None, now_ms: int, mono_ms: int) -> Effects:
        call = self._get(call_id, user)
        relay = self._relay(call, "answer", user, sdp, None)
        if call.state is CallState.ACTIVE:  # renegotiation answer
            self._bind(call, user, conn)
            return self._to_side(call, call.peer_of(user), "webrtc", relay)
        if user != call.callee:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only the callee answers a ringing call")
        call.state = CallState.ACTIVE
        call.callee_conn = conn
        call.answered_at_ms = now_ms
        call.answered_mono = mono_ms
        self.stats.answered += 1
        self.stats.ring_ms_total += mono_ms - call.started_mono
        effects = self._to_side(call, call.caller, "webrtc", relay)
        # The callee's other devices stop ringing (PROTOCOL §Calls: first answer wins).
        effects.append(ToUser(user, "call_end", CallEndEvent(
            call_id=call_id, by=user, reason="answered_elsewhere"), exclude_conn=conn))
        return effects

    def ice(self, *, call_id: str, user: UserId, conn: ConnId,
            candidate: dict[str, object] | None) -> Effects:
        call = self._get(call_id, user)
        # A callee that trickles before its answer arrives claims nothing (`_bind`).
        self._bind(call, user, conn)
        return self._to_side(call, call.peer_of(user), "webrtc",
                             self._relay(call, "ice_candidate", user, None, candidate))

    def settled_ice(self, call_id: str, user: UserId, conn: ConnId, to: object,
                    candidate: dict[str, object] | None) -> tuple[ConnId, WebRTCEvent] | None:
        """`ice` for the frames that leave nothing to decide, most of a call's: the call
        is active, `conn` owns `user`'s side, `to` names the other party and their side is
        owned. Gives the one connection `ice` would send to and the event it would send,
        and changes nothing. None: any other case, which `ice` decides (and may refuse)."""
        peer_conn = self.settled_peer(call_id, user, conn, to)
        if peer_conn is None:
            return None
        call = self.calls[call_id]
        return peer_conn, WebRTCEvent(kind="ice_candidate", from_=user, to=call.peer_of(user),
                                      call_id=call_id, room_id=call.room,
                                      candidate=candidate)

    def settled_peer(self, call_id: str, user: UserId, conn: ConnId,
                     to: object) -> ConnId | None:
        """`settled_ice`'s test alone: the connection that owns the other side, when the
        call is active, `conn` owns `user`'s side and `to` names the other party. The
        hub's call lane (server/hub.py) asks it per frame; it builds nothing."""
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.ACTIVE:
            return None
        if user == call.caller:
            own, peer, peer_conn = call.caller_conn, call.callee, call.callee_conn
        elif user == call.callee:
            own, peer, peer_conn = call.callee_conn, call.caller, call.caller_conn
        else:
            return None
        if own != conn or to != peer:
            return None
        return peer_conn

    def reject(self, *, call_id: str, user: UserId, reason: str | None,
               now_ms: int, mono_ms: int) -> Effects:
        call = self._get(call_id, user)
        if call.state is not CallState.RINGING or user != call.callee:
            raise ProtocolError(ErrorCode.CONFLICT if call.state is CallState.ACTIVE
                                else ErrorCode.FORBIDDEN,
                                f"call is {call.state}: only the callee rejects a ringing call")
        self.stats.rejected += 1
        self._finish(call, "rejected", user, now_ms, mono_ms)
        event = CallEndEvent(call_id=call_id, by=user, reason=reason or "rejected")
        return [*self._to_side(call, call.caller, "call_reject", event),
                ToUser(user, "call_end", event)]

    def hang_up(self, *, call_id: str, user: UserId, reason: str | None,
                now_ms: int, mono_ms: int, conn: ConnId | None = None) -> Effects:
        """`conn` is the connection that hung up; None: the one owning `user`'s side."""
        call = self._get(call_id, user)
        was_ringing = call.state is CallState.RINGING
        self._finish(call, "hangup", user, now_ms, mono_ms)
        event = CallEndEvent(call_id=call_id, by=user, reason=reason or "hangup")
        # An unanswered callee side is unowned, so every ringing device hears it.
        effects = self._to_side(call, call.peer_of(user), "call_end", event)
        if was_ringing and user == call.callee:
            # The callee declined on one device: the others stop ringing, as after a reject.
            effects.append(ToUser(user, "call_end", event))
        elif conn is not None:
            # Hung up from another device of the party: the connection holding the call
            # for them (or, with the side unbound, each of their other connections) must
            # hear it too, or it stays in a call that is over (ADR 0070).
            owner = call.owner_of(user)
            if owner is None:
                effects.append(ToUser(user, "call_end", event, exclude_conn=conn))
            elif owner != conn:
                effects.append(ToConns((owner,), "call_end", event))
        return effects

    def expire(self, now_ms: int, mono_ms: int) -> Effects:
        """Ring timeouts: both sides hear `call_end` with reason `timeout`."""
        effects: Effects = []
        while self._deadlines and self._deadlines[0][0] <= mono_ms:
            _, call_id = heapq.heappop(self._deadlines)
            call = self.calls.get(call_id)
            if call is None:
                continue
            if call.state is CallState.ENDED:
                if call.ended_mono is not None and \
                        mono_ms - call.ended_mono >= ENDED_RETENTION_MS:
                    del self.calls[call_id]
                continue
            if call.state is CallState.RINGING:
                self.stats.timed_out += 1
                self._finish(call, "timeout", call.callee, now_ms, mono_ms)
                event = CallEndEvent(call_id=call_id, by=call.callee, reason="timeout")
                effects += self._to_side(call, call.caller, "call_end", event)
                effects += self._to_side(call, call.callee, "call_end", event)
        return effects

    def connection_closed(self, user: UserId, conn: ConnId, conns_left: int,
                          now_ms: int, mono_ms: int) -> Effects:
        """A connection of `user` closed. The user's last connection ends their call with
        `disconnected`; an owning connection with siblings left unbinds its side, so the
        user's reconnected device can take the call over."""
        call = self.live_call_of(user)
        if call is None:
            return []
        if conns_left > 0:
            if call.caller_conn == conn:
                call.caller_conn = None
            if call.callee_conn == conn:
                call.callee_conn = None
            return []
        self._finish(call, "disconnected", user, now_ms, mono_ms)
        event = CallEndEvent(call_id=call.call_id, by=user, reason="disconnected")
        return self._to_side(call, call.peer_of(user), "call_end", event)

    def reaped(self, call_id: str, now_ms: int, mono_ms: int) -> Effects:
        """The cluster reaped this call while this node, its home, was cut off: its
        parties were told `call_end` (disconnected) and the reaper logged it. It ends here
        too, the same way, and is not logged again."""
        call = self.calls.get(call_id)
        if call is None or call.state is CallState.ENDED:
            return []
        self._finish(call, "disconnected", call.callee, now_ms, mono_ms, log=False)
        event = CallEndEvent(call_id=call_id, by=call.callee, reason="disconnected")
        return [*self._to_side(call, call.caller, "call_end", event),
                *self._to_side(call, call.callee, "call_end", event)]

    def _finish(self, call: Call, reason: str, by: UserId, now_ms: int, mono_ms: int,
                log: bool = True) -> None:
        call.state = CallState.ENDED
        call.end_reason = reason
        call.ended_by = by
        call.ended_at_ms = now_ms
        call.ended_mono = mono_ms
        for party in (call.caller, call.callee):
            if self._live.get(party) == call.call_id:
                del self._live[party]
        if call.answered_mono is not None:
            self.stats.talk_ms_total += mono_ms - call.answered_mono
        self.stats.ended[reason] = self.stats.ended.get(reason, 0) + 1
        heapq.heappush(self._deadlines, (mono_ms + ENDED_RETENTION_MS, call.call_id))
        if log:
            self._ended.append(call)
