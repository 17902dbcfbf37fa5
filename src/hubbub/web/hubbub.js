/**
 * hubbub.js: the browser client for hubbub (wire protocol version 1).
 *
 * An ES module with no dependencies and no build step. It keeps the API of the original
 * TypeScript WebSocket service (PROTOCOL.md, "Client libraries") and adds what a real
 * network needs: request ids with Promise answers, automatic reconnection with jittered
 * backoff, re-joining rooms with `since` (missed events replayed once, in seq order), an
 * outbox that re-sends unacknowledged chats with their `clientMsgId`, an app-level
 * heartbeat and a typing helper. Reference: docs/reference/js-client.md.
 *
 * @example
 *   import { HubbubClient } from '/hubbub.js';
 *   const hub = new HubbubClient('/ws', { userId: 'ann', username: 'Ann' });
 *   hub.on('chat', (msg) => console.log(msg.payload.username, msg.payload.content));
 *   await hub.connect();
 *   await hub.joinRoom('lobby');
 *   await hub.sendChatMessage('lobby', 'ann', 'hello');
 */

/** Persisted room events: they carry a per-room `seq`, and are de-duplicated by it. */
const ROOM_EVENTS = new Set(['chat', 'message_edit', 'message_delete', 'reaction']);
/** Close codes after which reconnecting cannot help: policy, auth failed/expired, replaced. */
const NO_RECONNECT = new Set([1008, 4001, 4002]);
/** `error` codes answering a re-connect's `auth` that are final; any other is transient. */
const AUTH_REFUSED = new Set(['unauthorized', 'forbidden', 'bad_request']);
/**
 * Close code the client reports when it gives up on a connection itself: silent, no
 * `welcome` in time, or a transient error answering its `auth`.
 */
const CLIENT_TIMEOUT = 4000;
/** The largest frame a server takes before its first `welcome` (the protocol default). */
const DEFAULT_MAX_FRAME_BYTES = 65536;
const TYPING_REFRESH_MS = 2000;
/** After the browser's `offline` event: how long a `ping` may go unanswered. */
const OFFLINE_PROBE_MS = 3000;
const TYPING_IDLE_MS = 3000;

/**
 * The error every Promise of HubbubClient rejects with. `code` is a protocol error code
 * (`forbidden`, `not_in_room`, `rate_limited`, ...) or one of the client's own:
 * `disconnected` (not connected, or the connection dropped before the answer),
 * `too_large` (the frame is larger than the server's `limits.maxFrameBytes`: not sent),
 * `cancelled` (the request was withdrawn: leaveRoom(), or disconnect() for everything pending),
 * `unauthorized` / `connect_failed` (connect() could not get a `welcome`).
 */
export class HubbubError extends Error {
  /** @param {string} code @param {string} [message] @param {object} [payload] the server's */
  constructor(code, message, payload) {
    super(message || code);
    this.name = 'HubbubError';
    this.code = code;
    this.payload = payload;
    if (payload && payload.retryAfterMs != null) this.retryAfterMs = payload.retryAfterMs;
  }
}

/**
 * Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2^attempt)) ms;
 * `attempt` is 0 for the first retry.
 */
export function backoffDelay(attempt, baseMs = 500, capMs = 20000, random = Math.random) {
  return random() * Math.min(capMs, baseMs * 2 ** attempt);
}

/**
 * The server's token bucket for one connection's chats (`welcome.limits.chatsPerSecond`,
 * `chatBurst`; 0 or absent = unlimited), kept by the client so that it never sends a chat
 * the server would refuse. One token is held back: chats bunched together on the way must
 * not find the server's bucket a hair short.
 */
// Pacing and throttles count on a clock that a step of the system clock does not move (as
// the server's do, ADR 0090): Date.now() would refill the bucket or stall a flush for as
// long as the step.
const monoNow = () => performance.now();

class ChatBucket {
  constructor(limits) {
    this.rate = (limits && limits.chatsPerSecond) || 0;
    const burst = (limits && limits.chatBurst) || 1;
    this.burst = burst > 1 ? burst - 1 : 1;
    this.tokens = this.burst;
    this.at = monoNow();
  }

  _refill(now) {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.rate) / 1000);
    this.at = now;
  }

  /** Spend a token: 0 when there was one, else the ms until there is. */
  take(now = monoNow()) {
    if (this.rate <= 0) return 0;
    this._refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.rate));
  }

  /** The server said `rate_limited`: it has no token left, whatever this one counted. */
  empty(now = monoNow()) {
    this._refill(now);
    this.tokens = 0;
  }
}

/** A random UUID; crypto.randomUUID needs a secure context, getRandomValues does not. */
function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Mark a Promise as handled: an app that ignores it (as the original fire-and-forget API
 * allowed) gets no "unhandled rejection"; awaiting it still throws. Server errors also go
 * to 'error' handlers, so nothing disappears silently.
 */
const quiet = (promise) => (promise.catch(() => {}), promise);

/** `ws://` URL from an absolute or page-relative one (`/ws`, `http://...`). */
function toWsUrl(url) {
  const u = new URL(url || '/ws', globalThis.location ? globalThis.location.href : undefined);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

/** `{type, sdp}` of an RTCSessionDescription (or of a plain object like it). */
const description = (d) => ({ type: d.type, sdp: d.sdp });

/** The size of a frame's text on the wire, in UTF-8 bytes. */
function utf8Bytes(text) {
  return new TextEncoder().encode(text).length;
}

/** A copy of `obj` without its undefined/null fields (the server wants them absent). */
const defined = (obj) => Object.fromEntries(Object.entries(obj).filter(([, v]) => v != null));

/**
 * A connection to a hubbub server. One instance per page is usual; it survives network
 * drops and server restarts by itself.
 */
export class HubbubClient {
  /**
   * @param {string} [url] `ws://host:port/ws`, or a page-relative `/ws` (the default)
   * @param {object} [options] `token` (a JWT, or a function returning one, called before
   *   every connect) or dev identity `userId`/`username`; `reconnect` (true),
   *   `backoffBaseMs` (500), `backoffCapMs` (20000), `heartbeatMs` (welcome's, else 20000),
   *   `connectTimeoutMs` (10000), `WebSocket` (an implementation, for tests or Node).
   */
  constructor(url, options = {}) {
    this.url = toWsUrl(url);
    this.options = { reconnect: true, backoffBaseMs: 500, backoffCapMs: 20000, connectTimeoutMs: 10000, ...options };
    /** The last `welcome` payload: userId, username, heartbeatMs, limits, iceServers, ... */
    this.welcome = null;
    /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'idle';
    this._handlers = new Map(); // type -> Set<handler>
    this._ws = null;
    this._authed = false; // `welcome` received on the current socket
    this._ready = false; // ... and rooms re-joined: chats may go out
    this._pending = new Map(); // frame id -> {resolve, reject, request}
    this._rooms = new Map(); // roomId -> {lastSeq: number|null, waiters: [{resolve, reject}]}
    this._outbox = new Map(); // clientMsgId -> {payload, resolve, reject, frameId}
    this._typing = new Map(); // roomId -> {sentAt, timer}
    // callId -> {peer, state, acked, owned}: the calls this client is in; `owned`: this
    // connection speaks for its side (it offered, or answered)
    this._calls = new Map();
    this._callsToEnd = new Set(); // callIds a drop ended here: call_end after the next welcome
    this._connectWaiters = [];
    this._status = null; // last status given to setPresence()
    this._attempt = 0;
    this._retryTimer = this._openTimer = this._heartbeat = null;
    this._chats = new ChatBucket(null); // this connection's, from its welcome
    this._flushTimer = null; // the one timer that sends the outbox on when chats must wait
    this._flushAt = 0;
    this._awaitingPong = false;
    this._pongs = 0; // pongs received, for the probe after an `offline` event
    this._probeTimer = null;
    this._idPrefix = uuid().slice(0, 8);
    this._ids = 0;
    this._onOnline = () => {
      if (this.state === 'reconnecting' && !this._ws) this._dial();
    };
    this._onOffline = () => {
      if (this._authed) this._probe();
    };
  }

  // ---- events ---------------------------------------------------------------------

  /**
   * Listen for a frame type ('chat', 'typing', 'presence', 'webrtc', 'join_room', ...) or a
   * client event ('open', 'close', 'reconnect', 'reconnecting', 'rejoin'). The handler
   * gets the whole envelope `{type, payload}`.
   * @param {string} type
   * @param {(message: {type: string, payload: any}) => void} handler
   * @returns {() => void} a function that removes the handler
   */
  on(type, handler) {
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => this.off(type, handler);
  }

  /** Remove a handler added with on(). */
  off(type, handler) {
    this._handlers.get(type)?.delete(handler);
  }

  _emit(message) {
    for (const handler of [...(this._handlers.get(message.type) || [])]) {
      try {
        handler(message);
      } catch (err) {
        console.error(`hubbub: a '${message.type}' handler threw`, err);
      }
    }
  }

  // ---- connection -----------------------------------------------------------------

  /**
   * Open the connection and authenticate. Resolves with the `welcome` payload. If this
   * first attempt fails it rejects (HubbubError `unauthorized` for a 4001 close, else
   * `connect_failed`) and does not retry; after a `welcome`, drops are retried by itself.
   * @returns {Promise<object>}
   */
  connect() {
    if (this.state === 'open') return Promise.resolve(this.welcome);
    const promise = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === 'idle' || this.state === 'closed') {
      this.state = 'connecting';
      this._attempt = 0;
      if (globalThis.addEventListener) {
        globalThis.addEventListener('online', this._onOnline);
        globalThis.addEventListener('offline', this._onOffline);
      }
      this._dial();
    }
    return promise;
  }

  /**
   * Close for good: no reconnect; unsent chats, pending joins and every request still
   * waiting for its answer reject with `cancelled`.
   */
  disconnect() {
    const was = this.state;
    this.state = 'closed';
    clearTimeout(this._retryTimer);
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener('online', this._onOnline);
      globalThis.removeEventListener('offline', this._onOffline);
    }
    const cancelled = () => new HubbubError('cancelled', 'disconnect() was called');
    for (const entry of this._outbox.values()) entry.reject(cancelled());
    this._outbox.clear();
    for (const room of this._rooms.values()) room.waiters.forEach((w) => w.reject(cancelled()));
    this._rooms.clear();
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(cancelled());
    this._clearTyping();
    if (this._ws) this._drop(1000, 'client disconnect');
    else if (was === 'reconnecting') {
      this._emit({ type: 'close', payload: { code: 1000, reason: 'client disconnect', willReconnect: false } });
    }
    this._settleConnect(null, cancelled());
  }

  _nextId() {
    return `${this._idPrefix}-${++this._ids}`;
  }

  _dial() {
    clearTimeout(this._retryTimer);
    const token = this.options.token;
    Promise.resolve(typeof token === 'function' ? token() : token).then(
      (t) => this._open(t),
      (err) => {
        console.error('hubbub: the token function failed', err);
        this._onClose(null, CLIENT_TIMEOUT, 'no token');
      });
  }

  _open(token) {
    if (this.state === 'closed') return;
    const WS = this.options.WebSocket || globalThis.WebSocket;
    const ws = new WS(this.url);
    this._ws = ws;
    const authId = this._nextId();
    const payload = token ? { token } : defined({ userId: this.options.userId, username: this.options.username });
    this._pending.set(authId, {
      request: { type: 'auth', payload: token ? { token: '…' } : payload },
      resolve: (welcome) => this._onWelcome(ws, welcome),
      reject: (err) => {
        if (err.code === 'disconnected' || err.code === 'cancelled') return;
        // A server in trouble (`internal`, `rate_limited`, ...) may answer a re-connect's
        // auth: retry with the usual backoff. A refusal, or any error on the first
        // connect(), is final, as a 4001 close is.
        if (this.state === 'reconnecting' && !AUTH_REFUSED.has(err.code)) {
          this._drop(CLIENT_TIMEOUT, `authentication failed: ${err.code} ${err.message}`);
        } else {
          this._drop(4001, `authentication refused: ${err.message}`);
        }
      },
    });
    ws.onopen = () => this._send({ type: 'auth', id: authId, payload });
    ws.onmessage = (ev) => this._onMessage(ws, ev.data);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event follows
    this._openTimer = setTimeout(() => {
      if (ws === this._ws && !this._authed) this._drop(CLIENT_TIMEOUT, 'connect timeout');
    }, this.options.connectTimeoutMs);
  }

  /**
   * Write a frame. Throws HubbubError `too_large`, and writes nothing, when the frame is
   * larger than the server takes: it would close the connection with 1009.
   */
  _send(frame) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    const text = JSON.stringify(frame);
    this._checkSize(frame.type, text);
    this._ws.send(text);
    return true;
  }

  /** `welcome.limits.maxFrameBytes`; before the first `welcome`, the protocol default. */
  _maxFrameBytes() {
    const limits = this.welcome && this.welcome.limits;
    return (limits && limits.maxFrameBytes) || DEFAULT_MAX_FRAME_BYTES;
  }

  _checkSize(type, text) {
    const max = this._maxFrameBytes();
    // A UTF-16 code unit is at most 3 UTF-8 bytes: most frames need no encoding.
    if (text.length * 3 <= max) return;
    const bytes = utf8Bytes(text);
    if (bytes > max) {
      throw new HubbubError('too_large', `a ${type} frame of ${bytes} bytes; the server takes at most ${max}`);
    }
  }

  /**
   * Reject a request that was not sent, and tell 'error' handlers too (as the server's
   * errors are), with `local: true`.
   */
  _refuse(request, err, reject) {
    this._emit({ type: 'error', payload: { code: err.code, message: err.message }, request, local: true });
    reject(err);
  }

  /** Stop using the current socket now (its close event may take long to come). */
  _drop(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    ws.onclose = ws.onmessage = ws.onopen = null;
    try { ws.close(code === 1000 || code >= 3000 ? code : 1000, reason.slice(0, 120)); } catch { /* closing */ }
    this._onClose(ws, code, reason);
  }

  _onWelcome(ws, welcome) {
    if (ws !== this._ws) return;
    clearTimeout(this._openTimer);
    const reconnecting = this.state === 'reconnecting';
    const attempt = this._attempt;
    this.welcome = welcome;
    this._authed = true;
    this._chats = new ChatBucket(welcome.limits); // the server's is new and full too
    this._dropOversized();
    this.state = 'open';
    this._attempt = 0;
    this._startHeartbeat();
    const rejoined = this._resync();
    // After the re-join frames went out: a joinRoom() from an 'open' handler joins them.
    this._emit({ type: 'open', payload: welcome });
    this._settleConnect(welcome);
    rejoined.then(() => {
      if (ws !== this._ws) return;
      this._ready = true;
      this._flushOutbox();
      if (reconnecting) this._emit({ type: 'reconnect', payload: { attempt } });
    });
  }

  _settleConnect(welcome, error) {
    for (const w of this._connectWaiters.splice(0)) (error ? w.reject(error) : w.resolve(welcome));
  }

  /**
   * After a `welcome`: restore the presence status and re-join rooms, now (the frames are
   * written when this returns); the Promise settles when every re-join is answered.
   */
  _resync() {
    if (this._status) this.setPresence(undefined, undefined, this._status);
    // The calls a drop ended here: end them for the peer too, in case another connection
    // of this user kept them alive. `conflict` / `not_found` (already ended) are expected.
    for (const callId of this._callsToEnd) {
      this._request('call_end', { callId, reason: 'disconnected' }, { silent: true });
    }
    this._callsToEnd.clear();
    return Promise.allSettled([...this._rooms.keys()].map((roomId) => this._sendJoin(roomId, true)));
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    clearTimeout(this._openTimer);
    clearInterval(this._heartbeat);
    clearTimeout(this._probeTimer);
    const wasOpen = this._authed;
    this._authed = this._ready = false;
    clearTimeout(this._flushTimer);
    this._flushTimer = null;
    this._typing.forEach((t) => clearTimeout(t.timer)); // the server ends typing on close
    this._typing.clear();
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.reject(new HubbubError('disconnected', `connection closed (${code})`));

    const firstAttempt = this.state === 'connecting';
    const terminal = this.state === 'closed' || firstAttempt || NO_RECONNECT.has(code) || !this.options.reconnect;
    if (wasOpen || terminal) {
      this._emit({ type: 'close', payload: { code, reason: reason || '', willReconnect: !terminal } });
    }
    this._endCallsLocally();
    if (terminal) {
      this.state = 'closed';
      const unauthorized = code === 4001;
      this._settleConnect(null, new HubbubError(unauthorized ? 'unauthorized' : 'connect_failed',
        `connection closed (${code}${reason ? ` ${reason}` : ''})`, { code, reason }));
      return;
    }
    this.state = 'reconnecting';
    const delayMs = backoffDelay(this._attempt, this.options.backoffBaseMs, this.options.backoffCapMs);
    this._attempt += 1;
    this._emit({ type: 'reconnecting', payload: { attempt: this._attempt, delayMs } });
    this._retryTimer = setTimeout(() => this._dial(), delayMs);
  }

  _startHeartbeat() {
    clearInterval(this._heartbeat);
    const ms = this.options.heartbeatMs || this.welcome.heartbeatMs || 20000;
    this._awaitingPong = false;
    this._heartbeat = setInterval(() => {
      if (this._awaitingPong) return this._drop(CLIENT_TIMEOUT, 'heartbeat timeout');
      this._awaitingPong = true;
      this._send({ type: 'ping', id: this._nextId() });
    }, ms);
  }

  /**
   * The browser says the network is gone. A socket on a dead network stays 'open' (no close
   * event comes) and the heartbeat would notice in 20–40 s, all the while the app says it
   * is connected: ping now, and drop the connection unless a pong comes within
   * OFFLINE_PROBE_MS. A blip shorter than that keeps the connection (and its calls).
   */
  _probe() {
    clearTimeout(this._probeTimer);
    const ws = this._ws;
    const pongs = this._pongs;
    this._send({ type: 'ping', id: this._nextId() });
    this._probeTimer = setTimeout(() => {
      if (ws === this._ws && this._authed && this._pongs === pongs) this._drop(CLIENT_TIMEOUT, 'offline: no pong');
    }, OFFLINE_PROBE_MS);
  }

  // ---- incoming frames ------------------------------------------------------------

  _onMessage(ws, data) {
    if (ws !== this._ws || typeof data !== 'string') return;
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (!frame || typeof frame.type !== 'string') return;
    const { type, id } = frame;
    if (type === 'pong') {
      this._awaitingPong = false;
      this._pongs += 1;
      return;
    }
    const pending = id != null ? this._pending.get(id) : undefined;
    if (pending && (type === 'ack' || type === 'error' || type === 'welcome')) {
      this._pending.delete(id);
      if (type === 'error') {
        frame.request = pending.request;
        if (!pending.silent) this._emit(frame);
        const p = frame.payload || {};
        pending.reject(new HubbubError(p.code || 'internal', p.message, p));
      } else {
        pending.resolve(frame.payload || {});
      }
      return;
    }
    if (ROOM_EVENTS.has(type)) return this._roomEvent(frame);
    if (type === 'webrtc') this._onSignal(frame.payload || {});
    else if (type === 'call_end' || type === 'call_reject') this._calls.delete((frame.payload || {}).callId);
    this._emit(frame);
  }

  /** Deliver a persisted room event unless its seq was already seen in that room. */
  _roomEvent(frame) {
    const p = frame.payload || {};
    const room = this._rooms.get(String(p.roomId));
    if (room && typeof p.seq === 'number') {
      if (room.lastSeq != null && p.seq <= room.lastSeq) return;
      room.lastSeq = p.seq;
    }
    this._emit(frame);
  }

  /**
   * Send a request frame with a fresh id; the Promise settles with its ack (or error).
   * Rejects at once with `disconnected` when there is no authenticated connection.
   */
  _request(type, payload, { silent = false } = {}) {
    if (!this._authed) {
      return quiet(Promise.reject(new HubbubError('disconnected', `not connected (${this.state})`)));
    }
    const id = this._nextId();
    return quiet(new Promise((resolve, reject) => {
      try {
        this._send({ type, id, payload });
      } catch (err) {
        if (!(err instanceof HubbubError)) throw err;
        return this._refuse({ type, payload }, err, reject);
      }
      this._pending.set(id, { resolve, reject, request: { type, payload }, silent });
    }));
  }

  // ---- rooms ----------------------------------------------------------------------

  /**
   * Join a room; resolves with the ack `{roomId, members, lastSeq}`. Called while
   * disconnected, the join goes out when the connection is back; every reconnect re-joins.
   * A room already joined is joined with `since` (its `missed` delivered, de-duplicated).
   */
  joinRoom(roomId) {
    roomId = String(roomId);
    let room = this._rooms.get(roomId);
    if (!room) this._rooms.set(roomId, (room = { lastSeq: null, waiters: [], joining: null }));
    const promise = new Promise((resolve, reject) => room.waiters.push({ resolve, reject }));
    // A join already on its way on this connection (the re-join after a reconnect, say)
    // answers this call too: a second one could only race it.
    if (this._authed && room.joining !== this._ws) this._sendJoin(roomId, false);
    return quiet(promise);
  }

  /**
   * Join with `since` = the last seq seen in the room, whenever there is one, so that no
   * join can skip missed events. `rejoin`: the client's own re-join after a reconnect.
   */
  _sendJoin(roomId, rejoin) {
    const room = this._rooms.get(roomId);
    const since = room.lastSeq != null ? room.lastSeq : undefined;
    const ws = this._ws;
    room.joining = ws;
    const done = () => { if (room.joining === ws) room.joining = null; };
    return this._request('join_room', defined({ roomId, since })).then(
      (ack) => (done(), this._onJoinAck(roomId, room, ack, since, rejoin)),
      (err) => {
        done();
        if (err.code === 'disconnected' || this._rooms.get(roomId) !== room) return;
        this._rooms.delete(roomId); // refused (forbidden, ...): the room is not ours
        room.waiters.splice(0).forEach((w) => w.reject(err));
      });
  }

  _onJoinAck(roomId, room, ack, since, rejoin) {
    if (this._rooms.get(roomId) !== room) return; // left in the meantime
    if (since !== undefined) {
      for (const event of ack.missed || []) this._roomEvent({ ...event, replayed: true });
    }
    // Not recovered: more was missed than the server replays (page with history()), or
    // the server's seq went back (a new store). Live events continue from its lastSeq.
    if (since !== undefined && ack.recovered === false) room.lastSeq = ack.lastSeq;
    else room.lastSeq = Math.max(room.lastSeq == null ? 0 : room.lastSeq, ack.lastSeq || 0);
    room.waiters.splice(0).forEach((w) => w.resolve(ack));
    if (rejoin && since !== undefined) this._emit({ type: 'rejoin', payload: ack });
  }

  /** Leave a room; resolves with the ack `{roomId}` (at once when disconnected). */
  leaveRoom(roomId) {
    roomId = String(roomId);
    const room = this._rooms.get(roomId);
    this._rooms.delete(roomId);
    this._clearTyping(roomId);
    if (room) room.waiters.forEach((w) => w.reject(new HubbubError('cancelled', 'leaveRoom() was called')));
    if (!this._authed) return Promise.resolve({ roomId });
    return this._request('leave_room', { roomId });
  }

  /** The rooms this client is in (or joining), with the last seq seen in each. */
  get rooms() {
    return new Map([...this._rooms].map(([id, r]) => [id, { lastSeq: r.lastSeq }]));
  }

  // ---- presence and typing --------------------------------------------------------

  /**
   * Set your status ('online' | 'away' | 'busy'); restored after a reconnect.
   * `userId`/`username` are kept for compatibility (the server checks userId).
   */
  setPresence(userId, username, status = 'online') {
    this._status = status;
    if (!this._authed) return Promise.resolve({ status });
    return this._request('presence', defined({ status, userId, username }));
  }

  /** Send a typing indicator yourself (see typing()/stopTyping() for the helper). */
  sendTypingIndicator(roomId, userId, username, isTyping) {
    return this._request('typing', defined({ roomId: String(roomId), isTyping: !!isTyping, userId, username }));
  }

  /**
   * Call on every keystroke in a room's composer: sends `isTyping: true` at most every
   * ~2 s while typing, and `false` after 3 s without a keystroke.
   */
  typing(roomId) {
    roomId = String(roomId);
    let t = this._typing.get(roomId);
    if (!t) this._typing.set(roomId, (t = { sentAt: null, timer: null }));
    const limit = this.welcome && this.welcome.limits ? this.welcome.limits.typingTimeoutMs : 0;
    const refresh = Math.min(TYPING_REFRESH_MS, limit ? (limit * 2) / 3 : TYPING_REFRESH_MS);
    const now = monoNow();
    if ((t.sentAt === null || now - t.sentAt >= refresh) && this._authed) {
      t.sentAt = now;
      this.sendTypingIndicator(roomId, undefined, undefined, true);
    }
    clearTimeout(t.timer);
    t.timer = setTimeout(() => this.stopTyping(roomId), TYPING_IDLE_MS);
  }

  /** Call when the message is sent or the composer loses focus: `isTyping: false` now. */
  stopTyping(roomId) {
    roomId = String(roomId);
    const t = this._typing.get(roomId);
    if (!t) return;
    this._clearTyping(roomId);
    if (t.sentAt !== null && this._authed) this.sendTypingIndicator(roomId, undefined, undefined, false);
  }

  /** Forget typing state without sending anything (the server ends typing itself). */
  _clearTyping(roomId) {
    for (const [id, t] of this._typing) {
      if (roomId !== undefined && id !== roomId) continue;
      clearTimeout(t.timer);
      this._typing.delete(id);
    }
  }

  // ---- chat -----------------------------------------------------------------------

  /**
   * Send a chat message. Resolves with the ack `{messageId, seq, createdAt}` once the
   * server has stored it. Every message gets a `clientMsgId` and stays in the outbox until
   * acked: it is sent when connected and re-sent after a reconnect (the server answers a
   * retry with the original ack and does not broadcast it twice). A chat whose frame is
   * larger than the server takes rejects at once with `too_large` and is not queued.
   * `options`: `{clientMsgId?, replyTo?}`; `userId` is kept for compatibility.
   */
  sendChatMessage(roomId, userId, content, options = {}) {
    roomId = String(roomId);
    const clientMsgId = options.clientMsgId || uuid();
    const payload = defined({ roomId, content, clientMsgId, replyTo: options.replyTo, userId });
    // Its size with the longest frame id it could be sent with: judged now, not at sending.
    const text = JSON.stringify({ type: 'chat', id: `${this._idPrefix}-${Number.MAX_SAFE_INTEGER}`, payload });
    const bytes = utf8Bytes(text);
    const promise = new Promise((resolve, reject) => {
      try {
        this._checkSize('chat', text);
      } catch (err) {
        return this._refuse({ type: 'chat', payload }, err, reject);
      }
      this._clearTyping(roomId); // a chat ends typing on the server
      this._outbox.set(clientMsgId, { payload, bytes, resolve, reject, frameId: null });
    });
    this._flushOutbox();
    return quiet(promise);
  }

  /** Chats in the outbox, not yet acknowledged, in sending order. */
  get outbox() {
    return [...this._outbox.values()].map((e) => ({ ...e.payload }));
  }

  /** After a `welcome`: chats now larger than this server takes fail rather than go out. */
  _dropOversized() {
    const max = this._maxFrameBytes();
    for (const [clientMsgId, entry] of this._outbox) {
      if (entry.bytes <= max) continue;
      this._outbox.delete(clientMsgId);
      const err = new HubbubError('too_large', `a chat frame of ${entry.bytes} bytes; the server takes at most ${max}`);
      this._refuse({ type: 'chat', payload: entry.payload }, err, entry.reject);
    }
  }

  /**
   * Send the chats not in flight, in submission order, each when the connection's chat
   * bucket has a token; the rest wait for one timer, and no chat passes one that waits.
   */
  _flushOutbox() {
    if (!this._ready || this._flushTimer) return;
    for (const [clientMsgId, entry] of this._outbox) {
      if (entry.frameId) continue;
      const wait = this._chats.take();
      if (wait) return this._flushLater(wait);
      const id = this._nextId();
      entry.frameId = id;
      this._pending.set(id, {
        request: { type: 'chat', payload: entry.payload },
        resolve: (ack) => this._outbox.delete(clientMsgId) && entry.resolve(ack),
        reject: (err) => {
          entry.frameId = null;
          if (err.code === 'disconnected') return; // re-sent after the reconnect
          if (err.code === 'rate_limited') { // it keeps its place; nothing goes out until then
            this._chats.empty();
            return this._flushLater(err.retryAfterMs || 1000);
          }
          this._outbox.delete(clientMsgId);
          entry.reject(err);
        },
      });
      this._send({ type: 'chat', id, payload: entry.payload });
    }
  }

  /** Flush the outbox in `ms` (or later, if the timer already waits longer). */
  _flushLater(ms) {
    const at = monoNow() + ms;
    if (this._flushTimer && this._flushAt >= at) return;
    clearTimeout(this._flushTimer);
    this._flushAt = at;
    this._flushTimer = setTimeout(() => {
      this._flushTimer = null;
      this._flushOutbox();
    }, ms);
  }

  /** Edit your message; resolves with `{messageId, seq, editedAt}`. */
  editMessage(roomId, messageId, content) {
    return this._request('message_edit', { roomId: String(roomId), messageId, content });
  }

  /** Delete your message (a tombstone stays); resolves with `{messageId, seq, deletedAt}`. */
  deleteMessage(roomId, messageId) {
    return this._request('message_delete', { roomId: String(roomId), messageId });
  }

  /**
   * Add or remove a reaction; resolves with `{messageId, emoji, op, seq?}` (no `seq`
   * when it changed nothing).
   * @param {'add' | 'remove'} [op]
   */
  react(roomId, messageId, emoji, op = 'add') {
    return this._request('reaction', { roomId: String(roomId), messageId, emoji, op });
  }

  /**
   * A page `{roomId, messages, hasMore}` of a room's messages, current state, ascending seq.
   * @param {string | number} roomId @param {{beforeSeq?: number, afterSeq?: number, limit?: number}} [page]
   */
  history(roomId, { beforeSeq, afterSeq, limit } = {}) {
    return this._request('history', defined({ roomId: String(roomId), beforeSeq, afterSeq, limit }));
  }

  // ---- calls (WebRTC signaling) ---------------------------------------------------

  /**
   * Start (or renegotiate) a call: relays `offer` to `toUserId`. Returns the callId at once
   * (a new random one when none is given). A refusal (`not_found`, `forbidden`) arrives as an
   * 'error' event whose `request.payload.callId` is that callId. `options`: `{roomId?}`.
   */
  sendWebRTCOffer(fromUserId, toUserId, offer, callId, options = {}) {
    callId = callId || uuid();
    const roomId = options.roomId != null ? String(options.roomId) : undefined;
    this._signal('offer', fromUserId, toUserId, callId, { sdp: description(offer), roomId });
    return callId;
  }

  /** Answer a call: relays `answer` to the caller. Resolves with `{callId, state}`. */
  sendWebRTCAnswer(fromUserId, toUserId, answer, callId) {
    return this._signal('answer', fromUserId, toUserId, callId, { sdp: description(answer) });
  }

  /**
   * Trickle one ICE candidate (an RTCIceCandidate or its toJSON()) to the other party.
   * A null candidate (end of gathering) sends nothing.
   */
  sendIceCandidate(fromUserId, toUserId, candidate, callId) {
    if (!candidate) return Promise.resolve(null);
    const c = typeof candidate.toJSON === 'function' ? candidate.toJSON() : candidate;
    return this._signal('ice_candidate', fromUserId, toUserId, callId, { candidate: c });
  }

  _signal(kind, from, to, callId, extra) {
    to = String(to);
    if (kind === 'offer' && this._authed && !this._calls.has(callId)) {
      this._calls.set(callId, { peer: to, state: 'ringing', acked: false, owned: true });
    } else if (kind === 'answer' && this._calls.has(callId)) {
      this._calls.get(callId).owned = true;
    }
    return this._trackCall('webrtc', callId, this._request('webrtc', defined({ kind, from, to, callId, ...extra })));
  }

  /** Decline a ringing call (the caller gets `call_reject`). */
  rejectCall(callId, reason) {
    return this._trackCall('call_reject', callId, this._request('call_reject', defined({ callId, reason })));
  }

  /** Hang up (the other party gets `call_end`). */
  endCall(callId, reason) {
    return this._trackCall('call_end', callId, this._request('call_end', defined({ callId, reason })));
  }

  /** Follow a call's state from the answers to this client's frames about it. */
  _trackCall(type, callId, promise) {
    promise.then((ack) => {
      const call = this._calls.get(callId);
      if (!call) return;
      if (ack.state === 'ended') this._calls.delete(callId);
      else Object.assign(call, { state: ack.state || call.state, acked: true });
    }, (err) => {
      const call = this._calls.get(callId);
      if (!call || err.code === 'disconnected') return;
      // Not a call (any more): an offer refused before the call existed, an unknown
      // callId, or a hang-up of a call that had ended.
      const gone = !call.acked || err.code === 'not_found' || (type === 'call_end' && err.code === 'conflict');
      if (gone) this._calls.delete(callId);
    });
    return promise;
  }

  /** An offer or answer for this client (the server relays only a party's frames). */
  _onSignal(p) {
    if (!p.callId) return;
    const call = this._calls.get(p.callId);
    if (p.kind === 'offer' && !call) this._calls.set(p.callId, { peer: p.from, state: 'ringing', acked: true, owned: false });
    else if (p.kind === 'answer' && call) call.state = 'active';
  }

  /**
   * The connection dropped: the server ends this client's calls (or another connection of
   * the user takes them over). Tell the app now, as the server tells the peer, and end
   * for the peer after the next welcome those whose side this connection owned; a call
   * that only rang here may still be answered on the user's other devices.
   */
  _endCallsLocally() {
    const by = this.welcome ? this.welcome.userId : undefined;
    const ended = [...this._calls.entries()];
    this._calls.clear();
    for (const [callId, call] of ended) {
      if (call.owned) this._callsToEnd.add(callId);
      this._emit({ type: 'call_end', payload: { callId, by, reason: 'disconnected' }, local: true });
    }
  }
}

export default HubbubClient;
