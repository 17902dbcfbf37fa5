// Type declarations for hubbub.js, the browser client of hubbub (wire protocol version 1).
// Served at /hubbub.d.ts. Reference: docs/reference/js-client.md.

export type RoomId = string;
export type UserId = string;
export type Status = 'online' | 'away' | 'busy';
export type AnyStatus = Status | 'offline';

/** Every frame on the wire, and every event a handler gets. */
export interface Envelope<T extends string = string, P = unknown> {
  type: T;
  id?: string;
  payload: P;
}

// ---- server payloads -------------------------------------------------------------

export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export interface Limits {
  /** The largest frame, in UTF-8 bytes; the client sends nothing larger. */
  maxFrameBytes: number;
  maxRoomsPerConnection: number;
  maxContentChars: number;
  framesPerSecond: number;
  /** The server's chat token bucket (0 = unlimited); the client paces chats to it. */
  chatsPerSecond: number;
  chatBurst: number;
  typingTimeoutMs: number;
}

export interface Welcome {
  sessionId: string;
  userId: UserId;
  username: string;
  serverTime: number;
  heartbeatMs: number;
  protocol: 1;
  limits: Limits;
  iceServers: IceServer[];
  admin?: true;
}

export interface Member {
  userId: UserId;
  username: string;
  status: AnyStatus;
}

/** A persisted room event as replayed in `JoinAck.missed`. */
export type RoomEvent =
  | Envelope<'chat', ChatEvent>
  | Envelope<'message_edit', MessageEditEvent>
  | Envelope<'message_delete', MessageDeleteEvent>
  | Envelope<'reaction', ReactionEvent>;

export interface JoinAck {
  roomId: RoomId;
  members: Member[];
  /** The room's latest seq (0 for a room without persisted events). */
  lastSeq: number;
  /** Only on a join with `since`: the events after it, in seq order. */
  missed?: Array<RoomEvent>;
  /** Only on a join with `since`: false when more was missed than replayed. */
  recovered?: boolean;
}

export interface RoomAck {
  roomId: RoomId;
}

export interface ChatAck {
  messageId: string;
  seq: number;
  createdAt: number;
  /** true when this answered a retry of an already stored clientMsgId */
  duplicate?: boolean;
}

export interface EditAck {
  messageId: string;
  seq: number;
  editedAt: number;
}

export interface DeleteAck {
  messageId: string;
  seq: number;
  deletedAt: number;
}

export interface ReactionAck {
  messageId: string;
  emoji: string;
  op: 'add' | 'remove';
  /** Absent when the reaction was already in that state (nothing changed). */
  seq?: number;
}

export interface PresenceAck {
  status: AnyStatus;
}

export interface CallAck {
  callId: string;
  state: 'ringing' | 'active' | 'ended';
}

/** One message of a history page, in its current state. */
export interface HistoryMessage {
  messageId: string;
  seq: number;
  roomId: RoomId;
  userId: UserId;
  username?: string;
  createdAt: number;
  /** null for a deleted message (a tombstone) */
  content: string | null;
  deleted: boolean;
  editedAt?: number;
  deletedAt?: number;
  /** emoji -> the users who reacted with it */
  reactions?: Record<string, UserId[]>;
  replyTo?: string;
  clientMsgId?: string;
}

export interface HistoryPage {
  roomId: RoomId;
  messages: HistoryMessage[];
  hasMore: boolean;
}

export interface ChatEvent {
  roomId: RoomId;
  messageId: string;
  seq: number;
  userId: UserId;
  username: string;
  /** null in a replayed chat (`replayed: true`) of a message deleted since */
  content: string | null;
  createdAt: number;
  clientMsgId?: string;
  replyTo?: string;
}

export interface MessageEditEvent {
  roomId: RoomId;
  messageId: string;
  seq: number;
  userId: UserId;
  /** null in a replayed edit (`replayed: true`) of a message deleted since */
  content: string | null;
  editedAt: number;
}

export interface MessageDeleteEvent {
  roomId: RoomId;
  messageId: string;
  seq: number;
  userId: UserId;
  deletedAt: number;
}

export interface ReactionEvent {
  roomId: RoomId;
  messageId: string;
  seq: number;
  userId: UserId;
  emoji: string;
  op: 'add' | 'remove';
  createdAt: number;
}

export interface TypingEvent {
  roomId: RoomId;
  userId: UserId;
  username: string;
  isTyping: boolean;
}

export interface PresenceEvent {
  userId: UserId;
  username: string;
  status: AnyStatus;
  lastSeen: number;
}

export interface JoinRoomEvent {
  roomId: RoomId;
  userId: UserId;
  username: string;
  status?: AnyStatus;
}

export interface LeaveRoomEvent {
  roomId: RoomId;
  userId: UserId;
  username?: string;
}

export interface SessionDescription {
  type: 'offer' | 'answer' | 'pranswer' | 'rollback';
  sdp: string;
}

export interface WebRTCEvent {
  kind: 'offer' | 'answer' | 'ice_candidate';
  from: UserId;
  to: UserId;
  callId: string;
  roomId?: RoomId;
  sdp?: SessionDescription;
  candidate?: RTCIceCandidateInit;
}

export interface CallEndEvent {
  callId: string;
  by: UserId;
  /** hangup, rejected, timeout, busy, disconnected, answered_elsewhere, or the app's own */
  reason: string;
}

export interface AnnouncementEvent {
  content: string;
  createdAt: number;
}

export type ErrorCode =
  | 'bad_request' | 'unknown_type' | 'unauthorized' | 'forbidden' | 'not_found'
  | 'not_in_room' | 'rate_limited' | 'too_large' | 'conflict' | 'internal';

export interface ErrorPayload {
  code: ErrorCode;
  message: string;
  retryAfterMs?: number;
}

/**
 * An `error` frame; `request` is the client frame it answers, when it answered one.
 * `local: true`: the client's own refusal to send `request` (`too_large`), no frame.
 */
export interface ErrorEnvelope extends Envelope<'error', ErrorPayload> {
  request?: { type: string; payload: unknown };
  local?: true;
}

/** A persisted room event delivered from a re-join's `missed` carries `replayed: true`. */
export type Replayable<E> = E & { replayed?: true };

// ---- client events ---------------------------------------------------------------

export interface CloseInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface EventMap {
  chat: Replayable<Envelope<'chat', ChatEvent>>;
  message_edit: Replayable<Envelope<'message_edit', MessageEditEvent>>;
  message_delete: Replayable<Envelope<'message_delete', MessageDeleteEvent>>;
  reaction: Replayable<Envelope<'reaction', ReactionEvent>>;
  typing: Envelope<'typing', TypingEvent>;
  presence: Envelope<'presence', PresenceEvent>;
  join_room: Envelope<'join_room', JoinRoomEvent>;
  leave_room: Envelope<'leave_room', LeaveRoomEvent>;
  webrtc: Envelope<'webrtc', WebRTCEvent>;
  /** `local: true`: the client's own, for a call of a connection that dropped */
  call_end: Envelope<'call_end', CallEndEvent> & { local?: true };
  call_reject: Envelope<'call_reject', CallEndEvent>;
  announcement: Envelope<'announcement', AnnouncementEvent>;
  error: ErrorEnvelope;
  /** after every `welcome` (the first connect and each reconnect), once re-joins are sent */
  open: Envelope<'open', Welcome>;
  close: Envelope<'close', CloseInfo>;
  /** a reconnect is scheduled: `attempt` counts from 1, `delayMs` is the backoff */
  reconnecting: Envelope<'reconnecting', { attempt: number; delayMs: number }>;
  /** reconnected, rooms re-joined, outbox re-sent */
  reconnect: Envelope<'reconnect', { attempt: number }>;
  /** a room re-joined after a reconnect; page history() when `recovered === false` */
  rejoin: Envelope<'rejoin', JoinAck>;
}

export type EventType = keyof EventMap;

// ---- the client ------------------------------------------------------------------

export interface HubbubClientOptions {
  /** A JWT, or a function returning one (called before every connect). */
  token?: string | (() => string | Promise<string>);
  /** Dev identity mode (server without --jwt-secret). */
  userId?: UserId;
  username?: string;
  /** Reconnect by itself after a drop (default true). */
  reconnect?: boolean;
  /** Full-jitter backoff: delay = random(0, min(cap, base * 2^attempt)); 500 and 20000. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Ping interval; default welcome.heartbeatMs, else 20000. No pong within one more → reconnect. */
  heartbeatMs?: number;
  /** Give up on an attempt that has no `welcome` after this long (default 10000). */
  connectTimeoutMs?: number;
  /** A WebSocket implementation, for environments without a global one. */
  WebSocket?: typeof WebSocket;
}

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export declare class HubbubError extends Error {
  /**
   * A protocol error code, or the client's own: disconnected, cancelled, unauthorized,
   * connect_failed, and too_large for a frame it did not send (above limits.maxFrameBytes).
   */
  code: ErrorCode | 'disconnected' | 'cancelled' | 'connect_failed';
  payload?: ErrorPayload | { code: number; reason: string };
  retryAfterMs?: number;
  constructor(code: string, message?: string, payload?: object);
}

export declare function backoffDelay(
  attempt: number, baseMs?: number, capMs?: number, random?: () => number): number;

export declare class HubbubClient {
  constructor(url?: string, options?: HubbubClientOptions);
  readonly url: string;
  /** The last `welcome` payload (null before the first). */
  welcome: Welcome | null;
  state: ConnectionState;
  /** Rooms joined (or being joined), with the last seq seen in each. */
  readonly rooms: Map<RoomId, { lastSeq: number | null }>;
  /** Chats not acknowledged yet, in sending order. */
  readonly outbox: Array<{ roomId: RoomId; content: string; clientMsgId: string; replyTo?: string }>;

  /** Resolves after `welcome`; a failed first attempt rejects (no retry). */
  connect(): Promise<Welcome>;
  /** Close for good; no reconnect. Everything still pending rejects with `cancelled`. */
  disconnect(): void;

  on<K extends EventType>(type: K, handler: (message: EventMap[K]) => void): () => void;
  on(type: string, handler: (message: Envelope) => void): () => void;
  off<K extends EventType>(type: K, handler: (message: EventMap[K]) => void): void;
  off(type: string, handler: (message: Envelope) => void): void;

  setPresence(userId: UserId | undefined, username: string | undefined, status: Status): Promise<PresenceAck>;
  /** A room already joined is joined with `since` (or by the join already on its way). */
  joinRoom(roomId: RoomId | number): Promise<JoinAck>;
  leaveRoom(roomId: RoomId | number): Promise<RoomAck>;

  sendChatMessage(roomId: RoomId | number, userId: UserId | undefined, content: string,
    options?: { clientMsgId?: string; replyTo?: string }): Promise<ChatAck>;
  editMessage(roomId: RoomId | number, messageId: string, content: string): Promise<EditAck>;
  deleteMessage(roomId: RoomId | number, messageId: string): Promise<DeleteAck>;
  react(roomId: RoomId | number, messageId: string, emoji: string, op?: 'add' | 'remove'): Promise<ReactionAck>;
  history(roomId: RoomId | number,
    page?: { beforeSeq?: number; afterSeq?: number; limit?: number }): Promise<HistoryPage>;

  sendTypingIndicator(roomId: RoomId | number, userId: UserId | undefined, username: string | undefined,
    isTyping: boolean): Promise<{}>;
  /** Call on every keystroke: `true` at most every ~2 s, `false` after 3 s idle. */
  typing(roomId: RoomId | number): void;
  /** Call on send or blur: `false` now if `true` was sent. */
  stopTyping(roomId: RoomId | number): void;

  /** Returns the callId (a new UUID when none is given). */
  sendWebRTCOffer(fromUserId: UserId | undefined, toUserId: UserId, offer: RTCSessionDescriptionInit,
    callId?: string, options?: { roomId?: RoomId }): string;
  sendWebRTCAnswer(fromUserId: UserId | undefined, toUserId: UserId, answer: RTCSessionDescriptionInit,
    callId: string): Promise<CallAck>;
  sendIceCandidate(fromUserId: UserId | undefined, toUserId: UserId,
    candidate: RTCIceCandidate | RTCIceCandidateInit | null, callId: string): Promise<CallAck | null>;
  rejectCall(callId: string, reason?: string): Promise<CallAck>;
  endCall(callId: string, reason?: string): Promise<CallAck>;
}

export default HubbubClient;
