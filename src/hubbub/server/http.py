"""HTTP routes on the WebSocket's port: health, metrics, the admin API, static pages."""

import hmac
import logging
import re
from collections.abc import Iterator
from importlib import resources

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from hubbub import logs
from hubbub.core.identity import Identity
from hubbub.core.messages import is_blank
from hubbub.errors import CloseConnection, ProtocolError
from hubbub.features.auth import verify_token
from hubbub.features.chat import read_history
from hubbub.features.system import announce
from hubbub.ids import room_id, user_id
from hubbub.metrics import Histogram
from hubbub.protocol.codes import ErrorCode
from hubbub.server.hub import Hub

log = logging.getLogger("hubbub.http")
WEB = resources.files("hubbub") / "web"
HUB = web.AppKey("hubbub.hub", Hub)


class _Collector:
    """Renders the hub's plain counters as Prometheus metrics at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        node, m = self.hub.node, self.hub.node.metrics
        yield GaugeMetricFamily("hubbub_connections", "Open WebSocket connections",
                                value=len(self.hub.conns))
        yield GaugeMetricFamily("hubbub_users_online", "Users with presence on this node",
                                value=node.presence.online_count())
        yield GaugeMetricFamily("hubbub_rooms", "Rooms with at least one member",
                                value=node.rooms.room_count())
        c = CounterMetricFamily("hubbub_connections_opened", "Connections accepted")
        c.add_metric([], m.connections_opened)
        yield c
        for name, doc, label, data in (
            ("hubbub_frames_in", "Client frames received, by type", "type", m.frames_in),
            ("hubbub_frames_out", "Frames queued to clients, by type", "type", m.frames_out),
            ("hubbub_errors", "Error frames sent, by code", "code", m.errors),
            ("hubbub_connections_closed", "Connections closed, by close code", "code",
             m.closes),
        ):
            fam = CounterMetricFamily(name, doc, labels=[label])
            for key, value in sorted(data.items(), key=lambda kv: str(kv[0])):
                fam.add_metric([str(key)], value)
            yield fam
        for name, doc, value in (
            ("hubbub_slow_readers_dropped", "Connections closed 1013 for falling behind",
             m.slow_readers_dropped),
            ("hubbub_typing_shed", "isTyping: true frames not sent to a reader that was "
             "behind", m.typing_shed),
            ("hubbub_announcements", "Announcements sent", m.announcements),
            ("hubbub_broker_dropped", "Messages to other nodes lost because the broker "
             "(Redis) was away", self.hub.fanout.broker.dropped if self.hub.fanout else 0),
            ("hubbub_broker_resumes", "Times the broker came back after losing Redis",
             m.broker_resumes),
            ("hubbub_position_holes", "Rooms found behind (by a position check, or by "
             "another node's positions after its outage): their last events were lost on "
             "the way from another node", m.position_holes),
            ("hubbub_gap_fills", "Reads of a hole in a room's seqs from the store",
             m.gap_fills),
            ("hubbub_events_filled", "Room events delivered from the store because they "
             "were late or lost on the way from another node", m.events_filled),
            ("hubbub_member_events_mended", "Joins, leaves and status changes told to this "
             "node's connections because the broker had lost the events that told them",
             m.member_events_mended),
            ("hubbub_connections_refused", "Connections closed 1013 by a connection limit",
             m.refused_connections),
            ("hubbub_store_commits", "Transactions the store's writer committed",
             node.store.commits),
            ("hubbub_store_operations", "Store operations that succeeded in those "
             "transactions (writes, and position reads); per commit: the group commit's "
             "batch size", node.store.committed_writes),
            ("hubbub_store_retried_writes", "Writes sent back to the queue after a deadlock "
             "with another node (PostgreSQL)", node.store.retried_writes),
            ("hubbub_store_redone_batches", "Batches run again write by write after a "
             "statement shared by several writes failed (PostgreSQL)",
             node.store.redone_batches),
        ):
            fam = CounterMetricFamily(name, doc)
            fam.add_metric([], value)
            yield fam
        yield from self._calls()
        yield _histogram("hubbub_flush_bytes", "Bytes per coalesced socket write",
                         m.flush_bytes)
        yield _histogram("hubbub_store_commit_seconds", "Time of each of the store's "
                         "transactions, from its first statement to its commit (fsync "
                         "included): what a chat's ack waits beyond the batch before it",
                         node.store.commit_seconds)


    def _calls(self) -> Iterator[Metric]:
        node = self.hub.node
        st = node.calls.stats
        yield GaugeMetricFamily("hubbub_calls_live", "Calls ringing or active",
                                value=node.calls.live_count())
        for name, doc, value in (
            ("hubbub_calls_started", "Calls started (offers with a new callId)", st.started),
            ("hubbub_calls_answered", "Calls answered", st.answered),
            ("hubbub_calls_rejected", "Calls rejected by the callee", st.rejected),
            ("hubbub_calls_timed_out", "Calls that rang out unanswered", st.timed_out),
            ("hubbub_calls_busy", "Calls refused because the callee was busy", st.busy),
            ("hubbub_call_ring_seconds", "Seconds answered calls rang, summed",
             st.ring_ms_total / 1000),
            ("hubbub_call_talk_seconds", "Seconds answered calls lasted, summed",
             st.talk_ms_total / 1000),
        ):
            fam = CounterMetricFamily(name, doc)
            fam.add_metric([], value)
            yield fam
        ended = CounterMetricFamily("hubbub_calls_ended", "Calls ended, by reason",
                                    labels=["reason"])
        for reason, count in sorted(st.ended.items()):
            ended.add_metric([reason], count)
        yield ended


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip((*h.bounds, float("inf")), h.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", cumulative))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h.total)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    registry: CollectorRegistry = request.app[REGISTRY]
    return web.Response(body=generate_latest(registry),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _bearer(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer T`. A JWT is ASCII, and so must an admin token be:
    aiohttp hands a header's undecodable bytes over as lone surrogates."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    return token if token and token.isascii() else None


def is_admin(hub: Hub, token: str | None) -> bool:
    """The admin token, or a JWT whose `admin` claim is true."""
    st = hub.node.settings
    if not token:
        return False
    if st.admin_token and hmac.compare_digest(token.encode(), st.admin_token.encode()):
        return True
    if st.jwt_secret:
        try:
            return verify_token(st.jwt_secret, token).admin
        except CloseConnection:
            return False
    return False


class _Announcement(msgspec.Struct):
    content: str


async def announcements(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if not is_admin(hub, _bearer(request)):
        return _unauthorized()
    body = await request.read()
    try:
        content = msgspec.json.decode(body, type=_Announcement).content
    except (msgspec.MsgspecError, RecursionError, UnicodeError, ValueError):
        return web.json_response({"error": "bad_request", "message": 'send {"content": "..."}'},
                                 status=400)
    if is_blank(content):
        return web.json_response({"error": "bad_request",
                                  "message": "content must not be blank"}, status=400)
    if len(content) > hub.node.settings.max_content:
        return web.json_response({"error": "too_large", "message": "content is longer than "
                                  f"{hub.node.settings.max_content} characters"}, status=413)
    hub.run(announce(hub.node, content))
    return web.json_response({"status": "accepted"}, status=202)


def _query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    # isascii: str.isdigit() also accepts digits int() refuses ('\u00b2') or reads ('\u0665' is 5).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"{name} must be a non-negative integer")
    return int(raw)


def rest_identity(hub: Hub, request: web.Request) -> Identity | None:
    """`Authorization: Bearer JWT`, or in dev identity mode `X-Hubbub-User: ID`."""
    st = hub.node.settings
    if st.jwt_secret:
        token = _bearer(request)
        if not token:
            return None
        try:
            return verify_token(st.jwt_secret, token)
        except CloseConnection:
            return None
    raw = request.headers.get("X-Hubbub-User")
    if not raw:
        return None
    try:
        uid = user_id(raw)
    except ProtocolError:
        return None
    return Identity(uid, uid)


def _unauthorized() -> web.Response:
    return web.json_response({"error": "unauthorized"}, status=401,
                             headers={"WWW-Authenticate": "Bearer"})


_STATUS = {ErrorCode.FORBIDDEN: 403, ErrorCode.NOT_FOUND: 404, ErrorCode.UNAUTHORIZED: 401}


def _store_unavailable(request: web.Request, exc: Exception) -> web.Response:
    """503 in JSON, like the other refusals, when a read fails (the store unreachable):
    not aiohttp's plain-text 500. The client may retry; the detail stays in the log."""
    suffix = logs.failures.admit("store")
    if suffix is not None:
        log.error("%s failed: the store is unavailable: %s%s", request.path, exc, suffix)
    return web.json_response({"error": "internal", "message": "the store is unavailable"},
                             status=503, headers={"Retry-After": "1"})


def _rate_limited(hub: Hub, ident: Identity) -> web.Response | None:
    """429 when the user's HTTP reads are over their budget (`Node.http_reads`): each
    goes to the store, whose one thread also commits every chat."""
    wait = hub.node.http_reads.take(ident.user_id, hub.node.clock.mono_ms())
    if not wait:
        return None
    return web.json_response(
        {"error": "rate_limited", "message": "too many requests", "retryAfterMs": wait},
        status=429, headers={"Retry-After": str(-(-wait // 1000))})


async def room_messages(request: web.Request) -> web.Response:
    """GET /api/rooms/{roomId}/messages: PROTOCOL §history over HTTP."""
    hub = request.app[HUB]
    ident = rest_identity(hub, request)
    if ident is None:
        return _unauthorized()
    if (limited := _rate_limited(hub, ident)) is not None:
        return limited
    try:
        room = room_id(request.match_info["roomId"])
        limit = _query_int(request, "limit")
        messages, has_more = await read_history(
            hub.node, ident, room, _query_int(request, "beforeSeq"),
            _query_int(request, "afterSeq"), 50 if limit is None else limit)
    except ProtocolError as exc:
        return web.json_response({"error": exc.code, "message": exc.message},
                                 status=_STATUS.get(exc.code, 400))
    except Exception as exc:  # the store is down: what `history` answers `internal` on /ws
        return _store_unavailable(request, exc)
    body = msgspec.json.encode({"roomId": room, "messages": messages, "hasMore": has_more})
    return web.Response(body=body, content_type="application/json")


async def calls(request: web.Request) -> web.Response:
    """GET /api/calls?limit=: the caller's own call log, newest first."""
    hub = request.app[HUB]
    ident = rest_identity(hub, request)
    if ident is None:
        return _unauthorized()
    if (limited := _rate_limited(hub, ident)) is not None:
        return limited
    try:
        limit = _query_int(request, "limit")
        if limit is not None and not 1 <= limit <= 100:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "limit must be 1..100")
    except ProtocolError as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=400)
    try:
        records = await hub.node.store.call_history(ident.user_id, limit or 20)
    except Exception as exc:
        return _store_unavailable(request, exc)
    return web.Response(body=msgspec.json.encode({"calls": records}),
                        content_type="application/json")


_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".ts": "text/plain", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon", ".json": "application/json"}


def _static(name: str) -> web.Response:
    """A file from the package's web/ folder: the browser client and the demo page.
    Names are matched against a fixed pattern, so no path can leave the folder."""
    if not _STATIC_NAME.fullmatch(name):
        raise web.HTTPNotFound()
    path = WEB / name
    if not path.is_file():
        raise web.HTTPNotFound()
    suffix = name[name.rfind("."):]
    return web.Response(body=path.read_bytes(),
                        content_type=_TYPES.get(suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})


_STATIC_NAME = re.compile(r"(demo/)?[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+")


async def index(request: web.Request) -> web.Response:
    return _static("demo/index.html" if (WEB / "demo" / "index.html").is_file()
                   else "index.html")


async def client_js(request: web.Request) -> web.Response:
    return _static("hubbub.js")


async def client_types(request: web.Request) -> web.Response:
    return _static("hubbub.d.ts")


async def demo_file(request: web.Request) -> web.Response:
    return _static("demo/" + request.match_info["name"])


REGISTRY = web.AppKey("hubbub.registry", CollectorRegistry)


async def not_an_upgrade(request: web.Request) -> web.Response:
    """`/ws` reached the HTTP side: not a GET (a GET goes to picows, server/port.py)."""
    return web.Response(status=400, text="open /ws with a WebSocket upgrade (GET) on a new "
                        "connection\n")


async def _one_request_per_connection(request: web.Request,
                                      response: web.StreamResponse) -> None:
    """Every HTTP answer ends its connection. server/port.py routes a connection by its
    first request, so a client that reuses a pooled connection for its `/ws` upgrade
    (aiohttp's ClientSession does, after any HTTP request) would reach the HTTP side;
    told `Connection: close`, it opens a new connection for the upgrade instead."""
    response.force_close()
    # This hook runs after aiohttp chose the header and before it is written.
    response.headers["Connection"] = "close"


# The demo page may load only what this server serves: a script injected through some
# flaw could neither run inline nor send what it read elsewhere. WebSockets to this origin
# are 'self' (CSP Level 3); the favicon is a data: URL; video is a MediaStream, no URL.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'self'")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer: no MIME sniffing, no Referer to other sites. HTML: `PAGE_POLICY`."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if response.content_type == "text/html":
        response.headers["Content-Security-Policy"] = PAGE_POLICY


def add_routes(app: web.Application, hub: Hub) -> None:
    app.on_response_prepare.append(_one_request_per_connection)
    app.on_response_prepare.append(_security_headers)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(hub))
    app[REGISTRY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/ws", not_an_upgrade)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/announcements", announcements)
    app.router.add_get("/api/rooms/{roomId}/messages", room_messages)
    app.router.add_get("/api/calls", calls)
    app.router.add_get("/", index)
    app.router.add_get("/hubbub.js", client_js)
    app.router.add_get("/hubbub.d.ts", client_types)
    app.router.add_get("/demo/{name}", demo_file)
