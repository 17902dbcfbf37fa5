"""Authentication (PROTOCOL §Authentication): JWT HS256, or dev identity when no secret is set."""

import logging
from typing import Any

import jwt

from hubbub import PROTOCOL_VERSION
from hubbub.core.effects import Close, Effects, Reply
from hubbub.core.ice import ice_servers
from hubbub.core.identity import Identity, display_name, speaks_for
from hubbub.core.session import Session
from hubbub.errors import CloseConnection, ProtocolError
from hubbub.features.node import Node, refuse_connection
from hubbub.features.presence import set_status
from hubbub.ids import UserId, user_id
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.protocol.frames import Auth, Limits, Presence, Welcome

log = logging.getLogger("hubbub.auth")

_MAX_EXP_S = 10**13  # seconds: some 300,000 years from now


def verify_token(secret: str, token: str) -> Identity:
    """Check an HS256 token and turn its claims into an Identity; CloseConnection(4001) if bad."""
    try:
        claims: dict[str, Any] = jwt.decode(
            # `exp` is honoured exactly, with no leeway: a token is refused at auth from the
            # same millisecond at which a live connection using it is closed (4001).
            token, secret, algorithms=["HS256"],
            # `iat` is informational (RFC 7519 §4.1.6): an issuer whose clock runs a
            # little ahead must not get its fresh tokens refused.
            options={"require": ["sub"], "verify_exp": True, "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise CloseConnection(CloseCode.AUTH_FAILED, "token expired") from None
    except jwt.PyJWTError as exc:
        raise CloseConnection(CloseCode.AUTH_FAILED, f"invalid token: {exc}") from None
    except (UnicodeError, ValueError, TypeError, OverflowError):
        # A token with characters a JWT cannot hold, or claims PyJWT trips on.
        raise CloseConnection(CloseCode.AUTH_FAILED, "invalid token: malformed") from None
    sub, name, rooms, admin, exp = (claims.get(k) for k in ("sub", "name", "rooms", "admin", "exp"))
    # PyJWT also takes a numeric string for `exp`; RFC 7519 §2 says a NumericDate is a
    # number, and only a number gets the live connection's deadline (ADR 0014). NaN,
    # infinities and absurd years are refused too (NaN compares false: refused).
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float)
                            or not -_MAX_EXP_S < exp < _MAX_EXP_S):
        raise CloseConnection(CloseCode.AUTH_FAILED, "invalid token: `exp` must be a number")
    try:
        uid = user_id(sub) if isinstance(sub, str | int) and not isinstance(sub, bool) else None
    except ProtocolError:
        uid = None
    if uid is None:
        raise CloseConnection(CloseCode.AUTH_FAILED, "invalid token: bad `sub`")
    if rooms is not None and not (
        isinstance(rooms, list) and all(isinstance(r, str) for r in rooms)
    ):
        raise CloseConnection(CloseCode.AUTH_FAILED, "invalid token: `rooms` must be a list")
    return Identity(
        user_id=uid,
        username=display_name(name, uid),
        admin=admin is True,
        room_globs=tuple(rooms) if rooms is not None else None,
        expires_at_ms=int(exp * 1000) if exp is not None else None,
    )


def mint_token(secret: str, user: str, *, name: str | None = None,
               rooms: list[str] | None = None, admin: bool = False,
               ttl_s: int | None = 3600, now_s: int) -> str:
    claims: dict[str, Any] = {"sub": user, "iat": now_s}
    if name:
        claims["name"] = name
    if rooms:
        claims["rooms"] = rooms
    if admin:
        claims["admin"] = True
    if ttl_s:
        claims["exp"] = now_s + ttl_s
    return jwt.encode(claims, secret, algorithm="HS256")


def welcome(node: Node, s: Session, frame_id: str | None) -> Reply:
    assert s.identity is not None
    st, now = node.settings, node.clock.now_ms()
    return Reply(s.conn, "welcome", Welcome(
        session_id=node.new_session_id(),
        user_id=s.identity.user_id,
        username=s.identity.username,
        server_time=now,
        heartbeat_ms=int(st.heartbeat * 1000),
        protocol=PROTOCOL_VERSION,
        limits=Limits(
            max_frame_bytes=st.max_frame,
            max_rooms_per_connection=node.limits.max_rooms,
            max_content_chars=node.limits.max_content_chars,
            frames_per_second=node.limits.frames_per_second,
            chats_per_second=node.limits.chats_per_second,
            chat_burst=int(node.limits.chat_burst),
            typing_timeout_ms=node.typing.timeout_ms,
        ),
        ice_servers=ice_servers(st.stun, st.turn, st.turn_secret, s.identity.user_id, now,
                                st.turn_ttl),
        admin=s.identity.admin,
    ), frame_id)


async def establish(node: Node, s: Session, ident: Identity, frame_id: str | None) -> Effects:
    """Bind an identity to the connection, mark the user online, send `welcome`."""
    limit = node.settings.max_connections_per_user
    if limit and len(node.user_conns.get(ident.user_id, ())) >= limit:
        return refuse_connection(node, s,
                                 f"{ident.user_id} already has {limit} open connections")
    uid, now = ident.user_id, node.clock.now_ms()
    if not node.user_conns.get(uid):
        # The directory first: if it cannot be told, the connection stays unauthenticated.
        node.opening[uid] += 1
        try:
            await node.fanout.user_opened(uid)
            await node.directory.user_up(uid, ident.username, now)
        except BaseException:
            _done_opening(node, uid)
            raise
        if s.closing or s.conn not in node.sessions:  # closed while we waited
            if _done_opening(node, uid) and node.presence.get(uid) is None:
                await node.directory.user_down(uid, now)
            return []
        _done_opening(node, uid, unsubscribe=False)
    s.identity = ident
    node.presence.connect(uid, ident.username, now)
    node.user_conns.setdefault(uid, set()).add(s.conn)
    if ident.expires_at_ms is not None:
        node.add_expiry(ident.expires_at_ms, s.conn)
    log.debug("authenticated conn=%s user=%s", s.conn, uid)
    return [welcome(node, s, frame_id)]


def _done_opening(node: Node, uid: UserId, unsubscribe: bool = True) -> bool:
    """An authentication of `uid` is done waiting. True when no other one is under way and
    no connection of theirs is open here; then, with `unsubscribe` (it failed, or its
    connection was closed meanwhile), the user's topic subscribed for it is let go, or it
    would stay subscribed for good."""
    node.opening[uid] -= 1
    if node.opening[uid] > 0:
        return False
    del node.opening[uid]
    if node.user_conns.get(uid):
        return False
    if unsubscribe:
        node.fanout.user_closed(uid)
    return True


def _not_yours() -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN,
                         "userId/from must be the identity you authenticate as")


async def authenticate_token(node: Node, s: Session, token: str, frame_id: str | None,
                             claimed: tuple[str | int | None, ...] = ()) -> Effects:
    """`claimed`: the `userId`/`from` of the auth frame, which must be the token's `sub`."""
    secret = node.settings.jwt_secret
    if not secret:
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            "this server runs in dev identity mode: send userId, not a token")
    try:
        ident = verify_token(secret, token)
    except CloseConnection as exc:
        log.info("auth failed conn=%s: %s", s.conn, exc.reason)
        return [Close(s.conn, exc.code, exc.reason)]
    if not speaks_for(ident.user_id, *claimed):
        raise _not_yours()
    return await establish(node, s, ident, frame_id)


async def handle_auth(node: Node, s: Session, frame: Auth | Presence) -> Effects:
    """`auth` (either mode) or, in dev identity mode, a first `presence` frame."""
    if s.authenticated:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "already authenticated")
    p = frame.payload
    if node.settings.jwt_secret:
        token = frame.payload.token if isinstance(frame, Auth) else None
        if not token:
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "send {type: auth, payload: {token}}")
        return await authenticate_token(node, s, token, frame.id, (p.user_id, p.from_))
    if p.user_id is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "dev identity mode: payload needs userId")
    uid = user_id(p.user_id)
    if not speaks_for(uid, p.from_):
        raise _not_yours()
    effects = await establish(node, s, Identity(uid, display_name(p.username, uid)), frame.id)
    if isinstance(frame, Presence) and frame.payload.status != "online" and s.identity:
        effects += await set_status(node, uid, frame.payload.status)
    return effects

