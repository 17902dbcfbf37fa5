"""ICE servers for `welcome.iceServers`, with TURN REST credentials (coturn `use-auth-secret`)."""

import base64
import hashlib
import hmac

from hubbub.protocol.frames import IceServer


def turn_credentials(secret: str, user: str, now_ms: int, ttl_s: int) -> tuple[str, str]:
    """TURN REST API credentials: username `expiry:user`,
    password base64(HMAC-SHA1(secret, username))."""
    username = f"{now_ms // 1000 + ttl_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    stun: list[str], turn: list[str], secret: str | None, user: str, now_ms: int, ttl_s: int
) -> list[IceServer]:
    servers: list[IceServer] = []
    if stun:
        servers.append(IceServer(urls=list(stun)))
    if turn:
        if secret:
            username, credential = turn_credentials(secret, user, now_ms, ttl_s)
            servers.append(IceServer(urls=list(turn), username=username, credential=credential))
        else:
            servers.append(IceServer(urls=list(turn)))
    return servers
