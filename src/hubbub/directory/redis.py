"""The Directory on Redis, shared by every node of a cluster (`--redis`).

Holdings are Redis sets of node ids, changed by Lua scripts so that "first holder" and
"last holder" are decided atomically. Each node also lists what it holds under its own
key, so whichever live node reaps a dead one can release exactly that, once (a lock per
dead node). Keys, under the `hubbub:dir:` prefix:

    numbers            hash   node -> its number (the high bits of its connection ids)
    nodes              zset   node -> last heartbeat (its wall clock, ms; only its
                              changing counts: `NodeWatch`)
    held:NODE          set    what NODE holds: "u^USER" and "m^ROOM^USER" (^ = \x1f)
    un:USER / uc:USER  set    nodes holding USER / with a connection of USER
    u:USER             hash   username, status, lastSeen
    mn:ROOM^USER       set    nodes holding USER in ROOM
    rm:ROOM / ur:USER  set    users in ROOM / rooms of USER
    call:CALL          hash   caller, callee, home, home_node, state, started_at, room,
                              answered_at (once active)
    ucall:USER         string the live call of USER
    calls:NODE         set    the calls whose home is NODE
    reaped-call:CALL   string a call reaped with its home (expires)
    ended-call:CALL    string a call that ended lately: its id is not claimed (expires)
"""

import secrets
from dataclasses import replace
from typing import Any, TypeVar

from hubbub.directory.base import (
    DEFAULT_NODE_TTL_MS,
    ENDED_CALL_RETENTION_MS,
    OFFLINE_RETENTION_MS,
    REAPED_CALL_RETENTION_MS,
    CallInfo,
    Claim,
    Departure,
    Directory,
    NodeWatch,
    PresenceInfo,
    Restore,
    ToldAgain,
)
from hubbub.errors import ConfigError
from hubbub.ids import RoomId, UserId

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigError("--redis needs the redis extra: pip install 'hubbub[redis]'") from exc

# Neither a user id nor a room id can hold a control character (hubbub.ids).
SEP = "\x1f"
T = TypeVar("T")
# Writes per pipeline when a node tells a forgetful Redis again what it holds.
TELL_AGAIN_BATCH = 500


def _batches(items: list[T]) -> list[list[T]]:
    return [items[i:i + TELL_AGAIN_BATCH] for i in range(0, len(items), TELL_AGAIN_BATCH)]

_ADD_MEMBER = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0
"""

_REMOVE_MEMBER = """
local removed = redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[4])
if (removed == 1 or ARGV[5] == '1') and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('SREM', KEYS[3], ARGV[3])
  return 1
end
return 0
"""

_USER_UP = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
local first = added == 1 and redis.call('SCARD', KEYS[1]) == 1
if first or redis.call('HGET', KEYS[3], 'status') == false then
  redis.call('HSET', KEYS[3], 'username', ARGV[2], 'status', 'online', 'lastSeen', ARGV[3])
else
  redis.call('HSET', KEYS[3], 'username', ARGV[2], 'lastSeen', ARGV[3])
end
redis.call('PERSIST', KEYS[3])
if first then return 1 end
return 0
"""

_USER_DOWN = """
redis.call('SREM', KEYS[2], ARGV[1])
local removed = redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[3])
-- Not held here by the directory's record, and not offline already: it forgot the user.
local forgotten = ARGV[5] == '1' and redis.call('HGET', KEYS[3], 'status') ~= 'offline'
if (removed == 1 or forgotten) and redis.call('SCARD', KEYS[1]) == 0 then
  if redis.call('HEXISTS', KEYS[3], 'username') == 0 then
    redis.call('HSET', KEYS[3], 'username', ARGV[6])
  end
  redis.call('HSET', KEYS[3], 'status', 'offline', 'lastSeen', ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  return 1
end
return 0
"""

_SET_STATUS = """
local old = redis.call('HGET', KEYS[1], 'status')
if old == false or old == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'lastSeen', ARGV[2])
return 1
"""


_CLAIM_CALL = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'taken', ARGV[1]} end
if redis.call('EXISTS', KEYS[5], KEYS[6]) > 0 then return {'ended', ''} end
local mine = redis.call('GET', KEYS[2])
if mine then return {'caller_busy', mine} end
local theirs = redis.call('GET', KEYS[3])
if theirs then return {'callee_busy', theirs} end
redis.call('HSET', KEYS[1], 'caller', ARGV[2], 'callee', ARGV[3], 'home', ARGV[4],
           'home_node', ARGV[5], 'state', 'ringing', 'started_at', ARGV[6], 'room', ARGV[7])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return {'ok', ARGV[1]}
"""

# ARGV: callId, prefix, how long to remember that it ended (0: it never took place), and,
# when a reaper releases the call of a dead home, how long to remember it as reaped, the
# home, and the heartbeat the reaper saw it silent with. A home whose heartbeat changed
# since is back: its call stays (-1), or the reaper would end a call its home goes on
# holding, without ever learning of it.
_RELEASE_CALL = """
local reaping = ARGV[4] ~= nil
if reaping then
  local beat = redis.call('ZSCORE', ARGV[2] .. 'nodes', ARGV[5])
  if beat and tonumber(beat) ~= tonumber(ARGV[6]) then return -1 end
end
local caller = redis.call('HGET', KEYS[1], 'caller')
local callee = redis.call('HGET', KEYS[1], 'callee')
local home = redis.call('HGET', KEYS[1], 'home_node')
if not caller or (reaping and home ~= ARGV[5]) then
  if reaping then
    redis.call('SREM', ARGV[2] .. 'calls:' .. ARGV[5], ARGV[1])
  elseif tonumber(ARGV[3]) > 0 then
    -- Ended, but never held here (refused busy at its claim) or forgotten: its id is kept.
    redis.call('SET', ARGV[2] .. 'ended-call:' .. ARGV[1], '1', 'PX', ARGV[3])
  end
  return 0
end
for _, party in ipairs({caller, callee}) do
  local key = ARGV[2] .. 'ucall:' .. party
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
redis.call('SREM', ARGV[2] .. 'calls:' .. home, ARGV[1])
redis.call('DEL', KEYS[1])
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', ARGV[2] .. 'ended-call:' .. ARGV[1], '1', 'PX', ARGV[3])
end
if reaping then
  redis.call('SET', ARGV[2] .. 'reaped-call:' .. ARGV[1], '1', 'PX', ARGV[4])
end
return 1
"""

# A live call holding the id now keeps it.
_REMEMBER_ENDED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
"""

# The fields and keys `_CLAIM_CALL` (and `set_call_state`) write, with the home's state;
# a party's record of another call is kept (and named in the answer).
_RESTORE_CALL = """
if redis.call('EXISTS', KEYS[5]) == 1 then return {'reaped'} end
local known = redis.call('HMGET', KEYS[1], 'caller', 'callee', 'home_node')
if known[1] and (known[1] ~= ARGV[2] or known[2] ~= ARGV[3] or known[3] ~= ARGV[5]) then
  return {'taken'}
end
redis.call('HSET', KEYS[1], 'caller', ARGV[2], 'callee', ARGV[3], 'home', ARGV[4],
           'home_node', ARGV[5], 'state', ARGV[6], 'started_at', ARGV[7], 'room', ARGV[8])
if ARGV[9] == '' then
  redis.call('HDEL', KEYS[1], 'answered_at')
else
  redis.call('HSET', KEYS[1], 'answered_at', ARGV[9])
end
redis.call('SADD', KEYS[4], ARGV[1])
local out = {'restored'}
for i = 2, 3 do
  local current = redis.call('GET', KEYS[i])
  if not current then
    redis.call('SET', KEYS[i], ARGV[1])
  elseif current ~= ARGV[1] then
    table.insert(out, ARGV[i])
  end
end
return out
"""


class RedisDirectory(Directory):
    def __init__(self, url: str, node_id: str | None = None, *, prefix: str = "hubbub:dir:",
                 node_ttl_ms: int = DEFAULT_NODE_TTL_MS,
                 offline_retention_ms: int = OFFLINE_RETENTION_MS) -> None:
        self.url = url
        self.node_id = node_id or secrets.token_hex(4)
        self.p = prefix
        self.node_ttl_ms = node_ttl_ms
        # A key's expiry runs on Redis's clock, not on `now_ms`: the same in production.
        self.offline_retention_ms = offline_retention_ms
        self.watch = NodeWatch(self.node_id)
        self._r: Any = None
        self._scripts: dict[str, Any] = {}

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        # After a Redis restart every pooled connection is stale: retry a command on a new
        # one rather than fail it (holdings are sets: a repeated command changes nothing).
        self._r = aioredis.Redis.from_url(self.url, decode_responses=True,
                                          socket_keepalive=True, health_check_interval=5,
                                          retry_on_error=[RedisConnectionError])
        for name, source in (("add", _ADD_MEMBER), ("remove", _REMOVE_MEMBER),
                             ("up", _USER_UP), ("down", _USER_DOWN), ("status", _SET_STATUS),
                             ("claim", _CLAIM_CALL), ("release", _RELEASE_CALL),
                             ("restore", _RESTORE_CALL), ("ended", _REMEMBER_ENDED)):
            self._scripts[name] = self._r.register_script(source)
        try:
            await self._r.ping()
        except (OSError, aioredis.RedisError) as exc:
            raise ConfigError(f"cannot reach Redis for the directory: {exc}") from None

    async def close(self) -> None:
        if self._r is not None:
            await self._r.aclose()

    async def heartbeat(self, now_ms: int) -> bool:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zadd(self.p + "nodes", {self.node_id: now_ms})
            pipe.hset(self.p + "numbers", self.node_id, self.number)
            added, _ = await pipe.execute()
        return bool(added)

    async def live_numbers(self) -> set[int] | None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.zrange(self.p + "nodes", 0, -1)
            pipe.hgetall(self.p + "numbers")
            nodes, numbers = await pipe.execute()
        if any(node not in numbers for node in nodes):
            return None
        return {int(n) for n in numbers.values()}

    # ---- keys --------------------------------------------------------------------------
    def _user_keys(self, user: str, node: str) -> list[str]:
        p = self.p
        return [f"{p}un:{user}", f"{p}uc:{user}", f"{p}u:{user}", f"{p}held:{node}"]

    def _member_keys(self, room: str, user: str, node: str) -> list[str]:
        p = self.p
        return [f"{p}mn:{room}{SEP}{user}", f"{p}rm:{room}", f"{p}ur:{user}", f"{p}held:{node}"]

    # ---- presence ----------------------------------------------------------------------
    async def user_up(self, user: UserId, username: str, now_ms: int) -> bool:
        return bool(await self._up(user, username, now_ms))

    async def _up(self, user: str, username: str, now_ms: int, pipe: Any = None) -> Any:
        """The `user_up` script for this node, run now or queued on `pipe`."""
        return await self._scripts["up"](
            keys=self._user_keys(user, self.node_id),
            args=[self.node_id, username, now_ms, f"u{SEP}{user}"], client=pipe)

    async def user_idle(self, user: UserId) -> None:
        await self._r.srem(f"{self.p}uc:{user}", self.node_id)

    async def user_down(self, user: UserId, now_ms: int) -> bool:
        return await self._down(user, self.node_id, now_ms, forgotten_counts=True)

    async def _down(self, user: str, node: str, now_ms: int, *,
                    forgotten_counts: bool = False) -> bool:
        return bool(await self._scripts["down"](
            keys=self._user_keys(user, node),
            args=[node, now_ms, f"u{SEP}{user}", self.offline_retention_ms,
                  int(forgotten_counts), user]))

    async def set_status(self, user: UserId, status: str, now_ms: int) -> bool:
        return bool(await self._scripts["status"](keys=[f"{self.p}u:{user}"],
                                                  args=[status, now_ms]))

    async def presence(self, users: list[UserId]) -> dict[UserId, PresenceInfo]:
        if not users:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for user in users:
            pipe.hmget(f"{self.p}u:{user}", "username", "status", "lastSeen")
        out: dict[UserId, PresenceInfo] = {}
        for user, (username, status, last_seen) in zip(users, await pipe.execute(),
                                                        strict=True):
            if status is not None:
                out[user] = PresenceInfo(username or user, status, int(last_seen or 0))
        return out

    async def is_online(self, user: UserId) -> bool:
        return bool(await self._r.scard(f"{self.p}uc:{user}"))

    # ---- membership --------------------------------------------------------------------
    async def add_member(self, room: RoomId, user: UserId) -> bool:
        return bool(await self._add(room, user))

    async def _add(self, room: str, user: str, pipe: Any = None) -> Any:
        """The `add_member` script for this node, run now or queued on `pipe`."""
        return await self._scripts["add"](
            keys=self._member_keys(room, user, self.node_id),
            args=[self.node_id, user, room, f"m{SEP}{room}{SEP}{user}"], client=pipe)

    async def remove_member(self, room: RoomId, user: UserId) -> bool:
        return await self._remove(room, user, self.node_id, forgotten_counts=True)

    async def _remove(self, room: str, user: str, node: str, *,
                      forgotten_counts: bool = False) -> bool:
        return bool(await self._scripts["remove"](
            keys=self._member_keys(room, user, node),
            args=[node, user, room, f"m{SEP}{room}{SEP}{user}", int(forgotten_counts)]))

    async def members(self, room: RoomId) -> list[UserId]:
        return sorted(UserId(u) for u in await self._r.smembers(f"{self.p}rm:{room}"))

    async def tell_again(self, connected: list[tuple[UserId, str]],
                         idle: list[tuple[UserId, str]], members: list[tuple[RoomId, UserId]],
                         now_ms: int, told: ToldAgain | None = None) -> ToldAgain:
        # The same writes as the base class's, in the same order, sent in pipelines: one
        # round trip per TELL_AGAIN_BATCH writes, not several per user (~0.5 ms each, so
        # 5 s for a node of 10,000 users, all of it a window in which they look gone).
        node, p = self.node_id, self.p
        told = ToldAgain() if told is None else told
        for batch in _batches(connected):
            pipe = self._r.pipeline(transaction=False)
            for user, username in batch:
                await self._up(user, username, now_ms, pipe)
            firsts = [user for (user, _), first in zip(batch, await pipe.execute(), strict=True)
                      if first]
            if firsts:
                pipe = self._r.pipeline(transaction=False)
                for user in firsts:
                    pipe.smembers(f"{p}ur:{user}")
                for user, rooms in zip(firsts, await pipe.execute(), strict=True):
                    told.came_online[user] = {RoomId(r) for r in rooms}
        for batch in _batches(idle):
            pipe = self._r.pipeline(transaction=False)
            for user, username in batch:
                await self._up(user, username, now_ms, pipe)
                pipe.srem(f"{p}uc:{user}", node)
            await pipe.execute()
        for part in _batches(members):
            pipe = self._r.pipeline(transaction=False)
            for room, user in part:
                await self._add(room, user, pipe)
            added = [m for m, first in zip(part, await pipe.execute(), strict=True) if first]
            if added:
                pipe = self._r.pipeline(transaction=False)
                for _, user in added:
                    pipe.hget(f"{p}u:{user}", "status")
                for (room, user), status in zip(added, await pipe.execute(), strict=True):
                    told.joined.append((room, user, status))
        return told

    async def rooms_of(self, user: UserId) -> set[RoomId]:
        return {RoomId(r) for r in await self._r.smembers(f"{self.p}ur:{user}")}

    # ---- dead nodes ----------------------------------------------------------------------
    async def _silent(self, mono_ms: int) -> dict[str, int]:
        beats = await self._r.zrange(self.p + "nodes", 0, -1, withscores=True)
        return self.watch.silent({node: int(beat) for node, beat in beats}, mono_ms,
                                 self.node_ttl_ms)

    async def reap(self, now_ms: int, mono_ms: int) -> list[Departure]:
        departures: list[Departure] = []
        for node in await self._silent(mono_ms):
            # One reaper per dead node, even if several live nodes notice at once.
            if not await self._r.set(f"{self.p}reaping:{node}", self.node_id, nx=True,
                                     px=60_000):
                continue
            departures += await self._release(node, now_ms)
            await self._r.zrem(self.p + "nodes", node)
            await self._r.hdel(self.p + "numbers", node)
        return departures

    async def _release(self, node: str, now_ms: int) -> list[Departure]:
        held: set[str] = await self._r.smembers(f"{self.p}held:{node}")
        users = sorted({h.split(SEP)[-1] for h in held})
        infos = await self.presence([UserId(u) for u in users])
        out: dict[str, Departure] = {}
        for user in users:
            info = infos.get(UserId(user))
            out[user] = Departure(UserId(user), info.username if info else user,
                                  rooms_before=sorted(await self.rooms_of(UserId(user))))
        for h in sorted(held):
            parts = h.split(SEP)
            if parts[0] == "m" and await self._remove(parts[1], parts[2], node):
                out[parts[2]].rooms_left.append(RoomId(parts[1]))
        for h in held:
            parts = h.split(SEP)
            if parts[0] == "u" and await self._down(parts[1], node, now_ms):
                d = out[parts[1]]
                d.went_offline = True
                d.last_seen_ms = now_ms
        await self._r.delete(f"{self.p}held:{node}")
        return [d for d in out.values() if d.went_offline or d.rooms_left]

    # ---- calls -----------------------------------------------------------------------------
    async def claim_call(self, call: CallInfo) -> Claim:
        p = self.p
        outcome, other_id = await self._scripts["claim"](
            keys=[f"{p}call:{call.call_id}", f"{p}ucall:{call.caller}",
                  f"{p}ucall:{call.callee}", f"{p}calls:{call.home_node}",
                  f"{p}ended-call:{call.call_id}", f"{p}reaped-call:{call.call_id}"],
            args=[call.call_id, call.caller, call.callee, call.home, call.home_node,
                  call.started_at, call.room or ""])
        if outcome == "ok":
            return Claim("ok", call)
        if outcome == "ended":
            return Claim("ended")
        return Claim(outcome, await self.call_info(other_id))

    async def call_info(self, call_id: str) -> CallInfo | None:
        h = await self._r.hgetall(f"{self.p}call:{call_id}")
        if not h:
            return None
        answered = h.get("answered_at")
        return CallInfo(call_id, UserId(h["caller"]), UserId(h["callee"]), int(h["home"]),
                        h["home_node"], h["state"], started_at=int(h.get("started_at") or 0),
                        room=h.get("room") or None,
                        answered_at=int(answered) if answered else None)

    async def call_of(self, user: UserId) -> CallInfo | None:
        call_id = await self._r.get(f"{self.p}ucall:{user}")
        return await self.call_info(call_id) if call_id else None

    async def set_call_state(self, call_id: str, state: str, at_ms: int) -> None:
        key = f"{self.p}call:{call_id}"
        if await self._r.exists(key):
            fields = {"state": state, **({"answered_at": at_ms} if state == "active" else {})}
            await self._r.hset(key, mapping=fields)

    async def release_call(self, call_id: str, *, ended: bool) -> None:
        await self._scripts["release"](
            keys=[f"{self.p}call:{call_id}"],
            args=[call_id, self.p, ENDED_CALL_RETENTION_MS if ended else 0])

    async def remember_ended(self, ended: dict[str, int], now_ms: int) -> None:
        p, script = self.p, self._scripts["ended"]
        for batch in _batches([(c, left) for c, left in ended.items() if left > 0]):
            pipe = self._r.pipeline(transaction=False)
            for call_id, left_ms in batch:
                await script(keys=[f"{p}call:{call_id}", f"{p}ended-call:{call_id}"],
                             args=[left_ms], client=pipe)
            await pipe.execute()

    async def restore_call(self, call: CallInfo) -> Restore:
        return (await self.restore_calls([call]))[0]

    async def restore_calls(self, calls: list[CallInfo]) -> list[Restore]:
        p, script = self.p, self._scripts["restore"]
        restores: list[Restore] = []
        for batch in _batches(calls):
            pipe = self._r.pipeline(transaction=False)
            for call in batch:
                await script(
                    keys=[f"{p}call:{call.call_id}", f"{p}ucall:{call.caller}",
                          f"{p}ucall:{call.callee}", f"{p}calls:{call.home_node}",
                          f"{p}reaped-call:{call.call_id}"],
                    args=[call.call_id, call.caller, call.callee, call.home, call.home_node,
                          call.state, call.started_at, call.room or "",
                          "" if call.answered_at is None else call.answered_at],
                    client=pipe)
            for outcome, *held in await pipe.execute():
                restores.append(Restore(outcome, tuple(UserId(u) for u in held)))
        return restores

    async def reap_calls(self, now_ms: int, mono_ms: int) -> list[CallInfo]:
        gone: list[CallInfo] = []
        for node, seen in (await self._silent(mono_ms)).items():
            if not await self._r.set(
                    f"{self.p}reaping-calls:{node}", self.node_id, nx=True, px=60_000):
                continue
            for call_id in await self._r.smembers(f"{self.p}calls:{node}"):
                info = await self.call_info(call_id)
                # Released and remembered as reaped at once: a home back from the dead
                # cannot write it back in between (`restore_call`). Each release takes its
                # id out of `calls:NODE`; a call written back meanwhile stays in it.
                released = await self._scripts["release"](
                    keys=[f"{self.p}call:{call_id}"],
                    args=[call_id, self.p, ENDED_CALL_RETENTION_MS,
                          REAPED_CALL_RETENTION_MS, node, seen])
                if released == -1:  # the home is back after all
                    break
                if released == 1 and info is not None:
                    gone.append(replace(info, home_seen=seen))
        return gone
