"""The Bun reference's job done in Python on hubbub's stack: the floor for Python.

A line-for-line port of `../shared/bench/reference/bun_server.js` (in memory, no
persistence, no rate limits, no validation beyond the reference's own) on the libraries
hubbub runs on: uvloop, picows and msgspec. It is a measuring instrument, not a server to
use. Run it under the kit beside hubbub and the reference; what it scores is about the best
any server written in Python on this stack can score on one core, so the distance between it
and the reference is what Python costs, and the distance between hubbub and it is what
hubbub's own work costs (validation, call rules, persistence, metrics).

    python3 ../shared/bench/run.py --jwt-secret s3cret --scenarios s3 \\
        --server ".venv/bin/python bench/python_floor.py --port {port} --jwt-secret {jwt_secret}" \\
        --name python-floor

Room broadcasts are written once per member per loop turn (frames queued in the turn share
a write), which is what the reference's uWebSockets does with its corked sockets. It is
built for S1 and S3: per-connection state in dicts and sets, picows's default buffers and
asyncio's default listen backlog make its S2 and S4 figures say little.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import re
import time
import uuid
from typing import Any

import msgspec
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

MAX_FRAME = 65536
ROOM_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_decode = msgspec.json.decode
_encode = msgspec.json.encode


def _header(n: int) -> bytes:
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big")
    return bytes((0x81, 127)) + n.to_bytes(8, "big")


def frame(type_: str, payload: dict[str, Any], id_: str | None = None) -> bytes:
    body = _encode({"type": type_, "payload": payload} if id_ is None
                   else {"type": type_, "id": id_, "payload": payload})
    return _header(len(body)) + body


class Server:
    def __init__(self, jwt_secret: str | None, raw_relay: bool = False) -> None:
        self.raw_relay = raw_relay
        self.secret = jwt_secret.encode() if jwt_secret else None
        self.users: dict[str, set[Client]] = {}
        self.rooms: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, tuple[str, str]] = {}
        self.sessions = 0
        self.dirty: list[Client] = []
        self.loop = asyncio.get_event_loop()

    def verify_jwt(self, token: object) -> tuple[str, str] | None:
        assert self.secret is not None
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3:
            return None
        want = hmac.new(self.secret, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
        try:
            got = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
            claims = _decode(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except Exception:
            return None
        if not hmac.compare_digest(got, want) or not isinstance(claims, dict):
            return None
        sub, exp = claims.get("sub"), claims.get("exp")
        if not isinstance(sub, str) or (exp is not None and exp * 1000 < time.time() * 1000):
            return None
        name = claims.get("name")
        return sub, name if isinstance(name, str) else sub

    def send(self, client: "Client", data: bytes) -> None:
        """Queue for the end of the loop turn (the reference's cork)."""
        if not client.out:
            if not self.dirty:
                self.loop.call_soon(self.flush)
            self.dirty.append(client)
        client.out.append(data)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for c in dirty:
            out, c.out = c.out, []
            if c.ws is not None:
                c.ws.underlying_transport.write(out[0] if len(out) == 1 else b"".join(out))


class Client(WSListener):  # type: ignore[misc]
    def __init__(self, server: Server) -> None:
        self.server = server
        self.ws: WSTransport | None = None
        self.user_id: str | None = None
        self.username: str | None = None
        self.rooms: set[str] = set()
        self.out: list[bytes] = []
        self.peer: Client | None = None  # --raw-relay: the other side of an answered call

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        s, uid = self.server, self.user_id
        self.ws = None
        if uid is None:
            return
        peers = s.users.get(uid)
        if peers is not None:
            peers.discard(self)
            if not peers:
                del s.users[uid]
        for r in self.rooms:
            room = s.rooms.get(r)
            if room is not None:
                room["members"].pop(uid, None)
                room["subs"].discard(self)
        for call_id, (caller, callee) in list(s.calls.items()):
            if uid in (caller, callee):
                del s.calls[call_id]

    def on_ws_frame(self, transport: WSTransport, f: WSFrame) -> None:
        if f.msg_type is WSMsgType.PING:
            transport.send_pong(f.get_payload_as_bytes())
            return
        if f.msg_type is WSMsgType.CLOSE:
            transport.send_close(f.get_close_code(), f.get_close_message())
            transport.disconnect()
            return
        if f.msg_type is not WSMsgType.TEXT:
            self.error(None, "bad_request", "text frames only")
            return
        data = f.get_payload_as_bytes()
        peer = self.peer
        if peer is not None and b'"ice_candidate"' in data:
            # --raw-relay: the bytes go on as they came, unparsed (no `from`): not the
            # protocol, a measure of the transport alone (uvloop, picows, one callback).
            self.server.send(peer, _header(len(data)) + data)
            return
        try:
            msg = _decode(data)
        except msgspec.DecodeError:
            self.error(None, "bad_request", "not JSON")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.error(None, "bad_request", "not an envelope")
            return
        self.handle(msg)

    def error(self, id_: str | None, code: str, message: str) -> None:
        self.server.send(self, frame("error", {"code": code, "message": message}, id_))

    def handle(self, f: dict[str, Any]) -> None:
        s = self.server
        id_ = f.get("id") if isinstance(f.get("id"), str) else None
        p = f.get("payload")
        if not isinstance(p, dict):
            p = {}
        kind = f["type"]
        if kind == "ping":
            s.send(self, frame("pong", {}, id_))
            return
        if kind == "auth":
            if self.user_id is not None:
                return self.error(id_, "bad_request", "already authenticated")
            who: tuple[str, str] | None
            if s.secret is not None:
                who = s.verify_jwt(p.get("token"))
            else:
                uid = p.get("userId")
                name = p.get("username")
                who = (uid, name if isinstance(name, str) else uid) \
                    if isinstance(uid, str) and uid else None
            if who is None:
                if s.secret is not None and self.ws is not None:
                    self.ws.send_close(4001, b"authentication failed")
                    self.ws.disconnect()
                    return
                return self.error(id_, "bad_request", "auth needs userId")
            self.user_id, self.username = who
            s.users.setdefault(self.user_id, set()).add(self)
            s.sessions += 1
            s.send(self, frame("welcome", {
                "sessionId": f"s{s.sessions}", "userId": self.user_id, "username": self.username,
                "serverTime": int(time.time() * 1000), "heartbeatMs": 20000, "protocol": 1,
                "limits": {"maxFrame": MAX_FRAME}, "iceServers": []}))
            return
        if self.user_id is None:
            return self.error(id_, "unauthorized", "authenticate first")
        if ("userId" in p and p["userId"] != self.user_id) or \
                ("from" in p and p["from"] != self.user_id):
            return self.error(id_, "forbidden", "userId is not yours")
        if kind == "join_room":
            room_id = room_id_of(p)
            if room_id is None:
                return self.error(id_, "bad_request", "bad roomId")
            room = s.rooms.get(room_id)
            if room is None:
                room = s.rooms[room_id] = {"seq": 0, "members": {}, "subs": set()}
            if room_id not in self.rooms:
                self.rooms.add(room_id)
                room["members"][self.user_id] = self.username
                note = frame("join_room", {"roomId": room_id, "userId": self.user_id,
                                           "username": self.username})
                for c in room["subs"]:
                    s.send(c, note)
                room["subs"].add(self)
            members = [{"userId": u, "username": n, "status": "online"}
                       for u, n in room["members"].items()]
            if id_ is not None:
                s.send(self, frame("ack", {"roomId": room_id, "members": members,
                                           "lastSeq": room["seq"]}, id_))
            return
        if kind == "chat":
            room_id = room_id_of(p)
            if room_id is None or not isinstance(p.get("content"), str):
                return self.error(id_, "bad_request", "chat needs roomId and content")
            if room_id not in self.rooms:
                return self.error(id_, "not_in_room", "join the room first")
            room = s.rooms[room_id]
            room["seq"] += 1
            ev = {"roomId": room_id, "messageId": str(uuid.uuid4()), "seq": room["seq"],
                  "userId": self.user_id, "username": self.username, "content": p["content"],
                  "createdAt": int(time.time() * 1000)}
            if isinstance(p.get("clientMsgId"), str):
                ev["clientMsgId"] = p["clientMsgId"]
            out = frame("chat", ev)
            for c in room["subs"]:
                s.send(c, out)
            if id_ is not None:
                s.send(self, frame("ack", {"messageId": ev["messageId"], "seq": ev["seq"],
                                           "createdAt": ev["createdAt"]}, id_))
            return
        if kind == "webrtc":
            wkind, to, call_id = p.get("kind"), p.get("to"), p.get("callId")
            if wkind not in ("offer", "answer", "ice_candidate") or not isinstance(to, str) \
                    or not isinstance(call_id, str):
                return self.error(id_, "bad_request", "webrtc needs kind, to, callId")
            call = s.calls.get(call_id)
            if call is None:
                if wkind != "offer":
                    return self.error(id_, "not_found", "no such call")
                peers = s.users.get(to)
                if not peers:
                    return self.error(id_, "not_found", "callee offline")
                if not any(peer.rooms & self.rooms for peer in peers):
                    return self.error(id_, "forbidden", "callee shares no room with you")
                s.calls[call_id] = (self.user_id, to)
            elif call != (self.user_id, to) and call != (to, self.user_id):
                return self.error(id_, "forbidden", "not a party of this call")
            relayed: dict[str, Any] = {"kind": wkind, "from": self.user_id, "to": to,
                                       "callId": call_id}
            if "sdp" in p:
                relayed["sdp"] = p["sdp"]
            if "candidate" in p:
                relayed["candidate"] = p["candidate"]
            msg = frame("webrtc", relayed)
            for peer in s.users.get(to, ()):
                s.send(peer, msg)
                if s.raw_relay and wkind == "answer":
                    self.peer, peer.peer = peer, self
            if id_ is not None:
                s.send(self, frame("ack", {}, id_))
            return
        self.error(id_, "unknown_type", "unknown type " + kind[:32])


def room_id_of(p: dict[str, Any]) -> str | None:
    r = p.get("roomId")
    if isinstance(r, int) and not isinstance(r, bool):
        return str(r)
    return r if isinstance(r, str) and ROOM_RE.match(r) else None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--jwt-secret")
    ap.add_argument("--raw-relay", action="store_true",
                    help="relay the ICE candidates of an answered call as raw bytes, unparsed "
                         "(not the protocol: a measure of the transport alone)")
    args = ap.parse_args()
    server = Server(args.jwt_secret, args.raw_relay)

    def listener(request: WSUpgradeRequest) -> Client | None:
        return Client(server) if request.path.split(b"?")[0] == b"/ws" else None

    srv = await ws_create_server(listener, args.host, args.port, max_frame_size=MAX_FRAME,
                                 enable_auto_pong=False)
    port = srv.sockets[0].getsockname()[1]
    print(f"listening on http://{args.host}:{port}", flush=True)
    await srv.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
