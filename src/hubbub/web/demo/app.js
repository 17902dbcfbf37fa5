// The hubbub demo: a room with presence, chat (edit, delete, reactions, typing, history
// on scroll) and 1:1 video calls, written against /hubbub.js and nothing else.
import { HubbubClient } from '/hubbub.js';

const $ = (id) => document.getElementById(id);
const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉'];
const PAGE = 30;
/** What ends a call, in words, for whoever started it or took it (`n`: the other person). */
const END_REASONS = {
  hangup: (n) => `${n} hung up`, rejected: (n) => `${n} declined the call`,
  busy: (n) => `${n} is in another call`, timeout: (n) => `No answer from ${n}`,
  disconnected: (n) => `${n} lost the connection`,
  failed: (n) => `The call with ${n} could not connect`,
};
/** ... and for a callee who had not answered: it rang here and stopped. */
const UNANSWERED_REASONS = {
  answered_elsewhere: () => 'Answered on another device',
  rejected: () => 'Declined on another device',
};

const s = {
  hub: null, me: null, room: null,
  members: new Map(), // userId -> {userId, username, status}
  names: new Map(), // userId -> username, for everyone seen
  messages: new Map(), // messageId -> {msg, el}
  oldestSeq: null, hasMore: false, loadingOlder: false,
  typers: new Map(), // userId -> timer
  call: null,
  replyTo: null, // the messageId the next message answers
  deleting: null, // the messageId the delete dialog asks about
  newBelow: 0, // messages that arrived below while the reader was scrolled up
  unread: 0, // messages that arrived while the page was hidden (shown in the tab's title)
  online: false,
  // How long a call may ring here, and take to connect once answered, before this page
  // gives up on it (the server ends a ring after --ring-timeout, 30 s; this is the backstop).
  guards: { ringMs: 45000, connectMs: 30000 },
};

const TITLE = document.title;

/** "(3) #lobby · hubbub": the room, and what came while the page was hidden. */
function renderTitle() {
  const base = s.room ? `#${s.room} · hubbub` : TITLE;
  document.title = s.unread ? `(${s.unread}) ${base}` : base;
}

/** What the composer and the edit box send: no blank lines before, no spaces after. */
const tidy = (text) => text.replace(/^(?:[ \t]*\n)+/, '').trimEnd();

/** Between the client's 'open' and 'close' events (its state still reads 'open' in the latter). */
const connected = () => !!s.hub && s.online;

/** A phone held upright or a tablet: the people fold into a panel that "People (n)" opens
 *  over the chat. The same query as style.css's. */
const COMPACT = matchMedia('(max-width: 900px) and (orientation: portrait), (max-width: 900px) and (min-height: 501px)');
/** A phone on its side: the people beside the chat, but during a call behind "People (n)",
 *  opening in the chat's place. The same query as style.css's. */
const SIDEWAYS = matchMedia('(max-width: 900px) and (max-height: 500px) and (orientation: landscape)');

// ---- small helpers ------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v; // CSSOM: allowed by the page's CSP, a style attribute is not
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function toast(text, kind = 'info') {
  const t = el('div', { class: `toast ${kind}`, 'data-testid': 'toast' }, text);
  $('toasts').append(t);
  setTimeout(() => t.remove(), 5000);
}

function hue(id) {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

const graphemes = typeof Intl !== 'undefined' && Intl.Segmenter ? new Intl.Segmenter() : null;

/** The first character of `text` as a reader sees it: a whole emoji (a family, a flag), a
 * letter with its accents; never half of a surrogate pair (`charAt(0)` of '😀' is one). */
function firstChar(text) {
  if (!text) return '';
  if (graphemes) for (const { segment } of graphemes.segment(text)) return segment;
  return [...text][0];
}

function avatar(userId, name) {
  return el('span', { class: 'avatar', style: `--h:${hue(userId)}`, 'aria-hidden': 'true' },
    firstChar((name || '').trim()).toUpperCase() || '?');
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  video: 'M3 7a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v2.5l4-2.5v10l-4-2.5V17a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z',
  edit: 'M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4',
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13',
  reply: 'M10 8V4L3 11l7 7v-4c5 0 8.5 1.5 11 5-1-5.5-4.5-10-11-11z',
};

/** A small stroked icon (no emoji font needed). */
function icon(name) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'svg-icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

// http(s) addresses in a message, up to a space or a character that cannot end one unquoted.
const URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;

/** `url` without what more likely ends the sentence around it: "(see https://a.b/c)." */
function trimUrl(url) {
  let end = url.length;
  for (;;) {
    const ch = url[end - 1];
    if (/[.,;:!?'*_~]/.test(ch)) end -= 1;
    else if (ch === ')' && (url.slice(0, end).match(/\(/g) || []).length
      < (url.slice(0, end).match(/\)/g) || []).length) end -= 1;
    else if (ch === ']' || ch === '}') end -= 1;
    else return url.slice(0, end);
  }
}

/**
 * `text` as DOM nodes, its http(s) addresses as links opening in a new tab. Text nodes and
 * attributes only (never innerHTML): a message cannot add markup to the page.
 */
function linkify(text) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(URL_RE)) {
    const raw = trimUrl(match[0]);
    let href;
    try {
      const url = new URL(raw);
      if (url.protocol === 'http:' || url.protocol === 'https:') href = url.href;
    } catch { /* not an address after all: left as text */ }
    if (!href) continue;
    if (match.index > at) nodes.push(text.slice(at, match.index));
    nodes.push(el('a', { href, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'message-link' }, raw));
    at = match.index + raw.length;
  }
  if (at < text.length) nodes.push(text.slice(at));
  return nodes;
}

/** A person's name; never their user id (a deleted message carries no name, for one). */
const nameOf = (userId) => (userId === s.me ? s.names.get(s.me) : s.names.get(userId)) || 'Someone';

/** "You, Bob and 2 others": who reacted, by name. */
function people(userIds) {
  const known = userIds.filter((u) => u === s.me || s.names.has(u)).map((u) => (u === s.me ? 'You' : nameOf(u)));
  const others = userIds.length - known.length;
  if (others) known.push(others === 1 ? (known.length ? '1 other' : 'Someone') : `${others} others`);
  return known.length > 1 ? `${known.slice(0, -1).join(', ')} and ${known.at(-1)}` : known.join('');
}

/** Error codes (the protocol's and the client's) in words; the server's text goes to the console. */
const ERROR_TEXT = {
  bad_request: 'the server did not accept that',
  unauthorized: 'the server did not accept who you are',
  forbidden: 'you are not allowed to do that',
  not_in_room: 'you are not in this room any more',
  not_found: 'that message is gone',
  conflict: 'that message was deleted',
  rate_limited: 'too fast: wait a moment and try again',
  too_large: 'the message is too long',
  internal: 'the server had a problem: try again',
  disconnected: 'you are offline: try again when the connection is back',
  cancelled: 'cancelled',
  connect_failed: 'the server cannot be reached',
};

/** "Could not delete the message: that message was deleted" for a HubbubError `err`. */
function humanError(err, doing) {
  const code = (err && err.code) || 'internal';
  console.warn(`hubbub demo: ${doing || 'request'} failed: ${code}: ${err && err.message}`);
  const text = ERROR_TEXT[code] || 'something went wrong';
  return doing ? `${doing}: ${text}` : text.charAt(0).toUpperCase() + text.slice(1);
}

/** Why a call could not start, for a refused offer (`code`) to `name`. */
function callRefusal(code, name) {
  if (code === 'not_found') return `${name} is not online right now`;
  if (code === 'forbidden') return `you and ${name} are no longer in a room together`;
  if (code === 'conflict') return 'one of you is already in a call';
  return ERROR_TEXT[code] || 'something went wrong';
}

/** getUserMedia's errors, in words. */
function mediaError(err) {
  console.warn('hubbub demo: media error', err);
  if (err && err.name === 'NotAllowedError') return 'the camera and microphone are blocked for this page';
  if (err && err.name === 'NotFoundError') return 'no camera or microphone was found';
  if (err && err.name === 'NotReadableError') return 'the camera or microphone is in use by another application';
  return 'the call could not be set up';
}
const time = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
const dayKey = (ms) => new Date(ms).toDateString();

/** "Today", "Yesterday", "Mon 3 Mar", "3 Mar 2025". */
function dayName(ms) {
  const d = new Date(ms);
  const today = new Date();
  if (dayKey(ms) === today.toDateString()) return 'Today';
  if (dayKey(ms) === new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1).toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], d.getFullYear() === today.getFullYear()
    ? { weekday: 'short', day: 'numeric', month: 'short' } : { day: 'numeric', month: 'short', year: 'numeric' });
}

/** "14:05", or "Yesterday 14:05" when not today. */
const when = (ms) => (dayKey(ms) === new Date().toDateString() ? time(ms) : `${dayName(ms)} ${time(ms)}`);

/** A stable userId per name in this tab: "ann-k3f9" (two tabs named Ann are two users). */
function userIdFor(name) {
  const key = `hubbub.demo.id.${name}`;
  let id = sessionStorage.getItem(key);
  if (!id) {
    const slug = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40);
    id = `${slug || 'user'}-${Math.random().toString(36).slice(2, 6)}`;
    sessionStorage.setItem(key, id);
  }
  return id;
}

/** Say `text` to screen readers (politely: after what they are reading). */
function announce(text) {
  $('announcer').textContent = text;
}

function setConn(state, text) {
  const pill = $('conn-status');
  pill.dataset.state = state;
  pill.textContent = text;
}

// ---- joining ------------------------------------------------------------------------

async function join(name, room) {
  $('login-error').textContent = '';
  name = name.trim();
  room = room.trim();
  if (!name) {
    $('login-error').textContent = 'Please enter your name.';
    $('name-input').focus();
    return;
  }
  $('join-button').disabled = true;
  try {
    if (!s.hub) {
      s.hub = new HubbubClient('/ws', { userId: userIdFor(name), username: name });
      wire(s.hub);
      setConn('connecting', 'connecting…');
      const welcome = await s.hub.connect();
      s.me = welcome.userId;
      s.names.set(s.me, welcome.username);
      $('me').textContent = welcome.username;
    }
    await enterRoom(room);
    localStorage.setItem('hubbub.demo.name', name);
    history.replaceState(null, '', `?room=${encodeURIComponent(room)}`);
  } catch (err) {
    $('login-error').textContent = err.code === 'forbidden' ? 'You may not join this room.'
      : err.code === 'bad_request' ? 'That room name is not valid.' : `${humanError(err, 'Could not join')}.`;
    if (s.hub && s.hub.state !== 'open') {
      const hub = s.hub;
      s.hub = null;
      hub.disconnect();
      setConn('idle', 'not connected');
    }
  } finally {
    $('join-button').disabled = false;
  }
}

async function enterRoom(room) {
  const ack = await s.hub.joinRoom(room);
  s.room = ack.roomId;
  $('login').hidden = true;
  $('app').hidden = false;
  $('room-name').textContent = `#${s.room}`;
  $('topbar-room').textContent = `#${s.room}`;
  $('message-input').placeholder = `Message #${s.room}`;
  $('message-label').textContent = `Message #${s.room}`;
  renderTitle();
  setMembers(ack.members);
  await reloadHistory();
  $('message-input').focus();
}

/** Leave the room and close the connection: the next join starts afresh, under its name. */
async function leave() {
  if (s.call) hangUp();
  const hub = s.hub;
  s.hub = null; // its handlers ignore whatever comes now
  if (hub) {
    await hub.leaveRoom(s.room).catch(() => {});
    hub.disconnect();
  }
  s.me = s.room = null;
  s.online = false;
  s.unread = 0;
  renderTitle();
  if ($('confirm-delete').open) $('confirm-delete').close();
  setPeople(false);
  cancelReply();
  s.members.clear();
  s.names.clear();
  s.messages.clear();
  s.typers.forEach((timer) => clearTimeout(timer));
  s.typers.clear();
  $('typing-indicator').textContent = '';
  $('message-list').replaceChildren();
  seenBottom();
  $('members').replaceChildren();
  $('me').textContent = '';
  $('status-select').value = 'online';
  setConn('idle', 'not connected');
  $('app').hidden = true;
  $('login').hidden = false;
  $('topbar-room').textContent = '';
  history.replaceState(null, '', location.pathname);
  $('name-input').focus();
}

// ---- members and presence -----------------------------------------------------------

/**
 * The room's members from a join ack. People seen going offline stay listed (greyed, with
 * when they were last seen) until they come back, as the server has forgotten them.
 */
function setMembers(list) {
  const offline = [...s.members.values()].filter((m) => m.status === 'offline');
  s.members = new Map(list.map((m) => [m.userId, m]));
  for (const m of offline) if (!s.members.has(m.userId)) s.members.set(m.userId, m);
  list.forEach((m) => s.names.set(m.userId, m.username));
  const mine = s.members.get(s.me);
  if (mine) showMyStatus(mine.status);
  renderMembers();
}

/**
 * "My status" shows the status the others see. The server keeps it across a quick leave
 * and rejoin (or a reload): the page must not say Online while the room sees Busy.
 */
function showMyStatus(status) {
  if ([...$('status-select').options].some((o) => o.value === status)) $('status-select').value = status;
}

function renderMembers() {
  const away = (m) => m.status === 'offline';
  const list = [...s.members.values()].sort((a, b) => (b.userId === s.me) - (a.userId === s.me)
    || away(a) - away(b) || a.username.localeCompare(b.username));
  $('members').replaceChildren(...list.map((m) => {
    const mine = m.userId === s.me;
    const dot = el('span', { class: `dot ${m.status}`, 'data-testid': 'presence-dot', title: m.status });
    const call = mine ? null : el('button', {
      class: 'call-button', type: 'button', 'data-testid': 'call-button',
      'aria-label': `Video call ${m.username}`,
      title: !connected() ? 'You are offline: calls wait for the connection to come back'
        : m.status === 'offline' ? `${m.username} is offline` : `Video call ${m.username}`,
      disabled: m.status === 'offline' || !!s.call || !connected(),
      onclick: () => startCall(m.userId),
    }, icon('video'), 'Call');
    return el('li', {
      class: 'member', 'data-testid': 'member', 'data-user-id': m.userId,
      'data-username': m.username, 'data-status': m.status,
    }, el('span', { class: 'avatar-wrap' }, avatar(m.userId, m.username), dot),
    el('span', { class: 'member-name' }, m.username, mine ? el('span', { class: 'you' }, ' (you)') : null),
    el('span', { class: 'member-status', 'data-testid': 'member-status' },
      away(m) && m.lastSeen ? `offline · last seen ${when(m.lastSeen)}` : m.status), call);
  }));
  const here = String(list.filter((m) => !away(m)).length);
  $('member-count').textContent = here;
  $('people-toggle-count').textContent = `(${here})`;
}

const peopleOpen = () => $('app').classList.contains('people-open');
/** Whether the people are behind the People button now (its panel can be open). */
const folded = () => COMPACT.matches || (SIDEWAYS.matches && $('app').classList.contains('in-call'));

/**
 * Opens or closes the people's panel (folded). Opening moves the focus to its first control,
 * My status; closing with `focus` gives it back to the People button.
 */
function setPeople(open, { focus = false } = {}) {
  $('app').classList.toggle('people-open', open);
  $('people-toggle').setAttribute('aria-expanded', String(open));
  if (open) $('status-select').focus();
  else if (focus) $('people-toggle').focus();
}

// ---- messages -----------------------------------------------------------------------

function renderMessage(msg) {
  const mine = msg.userId === s.me;
  const li = el('li', {
    class: `message${mine ? ' mine' : ''}${msg.deleted ? ' deleted' : ''}${msg.pending ? ' pending' : ''}`,
    'data-testid': 'message', 'data-message-id': msg.messageId || '', 'data-seq': msg.seq ?? '',
    'data-user-id': msg.userId, 'data-created-at': msg.createdAt,
  });
  const meta = el('div', { class: 'meta' },
    el('span', { class: 'author' }, msg.username || nameOf(msg.userId)),
    el('time', { datetime: new Date(msg.createdAt).toISOString(), title: new Date(msg.createdAt).toLocaleString() },
      time(msg.createdAt)),
    msg.editedAt && !msg.deleted ? el('span', { class: 'edited', 'data-testid': 'edited' }, '(edited)') : null,
    msg.pending ? el('span', { class: 'sending' }, msg.failed ? `not sent: ${msg.failed}` : 'sending…') : null);
  const content = el('div', { class: 'content', 'data-testid': 'message-content' },
    ...(msg.deleted ? ['message deleted'] : linkify(msg.content || '')));
  const replied = msg.replyTo && !msg.deleted ? quote(msg.replyTo) : null;
  const reactions = el('div', { class: 'reactions' }, ...Object.entries(msg.reactions || {})
    .filter(([, users]) => users.length)
    .map(([emoji, users]) => el('button', {
      class: `chip${users.includes(s.me) ? ' on' : ''}`, type: 'button', 'data-testid': 'reaction',
      'data-emoji': emoji, title: people(users),
      onclick: () => react(msg.messageId, emoji, users.includes(s.me) ? 'remove' : 'add'),
    }, `${emoji} ${users.length}`)));
  const actions = msg.deleted || msg.pending ? null : el('div', { class: 'actions' },
    // A quick reaction toggles, as its chip does: a second 👍 takes yours back.
    ...QUICK_REACTIONS.map((emoji) => {
      const on = (msg.reactions?.[emoji] || []).includes(s.me);
      return el('button', {
        type: 'button', class: `icon${on ? ' on' : ''}`, 'data-testid': 'react-button', 'data-emoji': emoji,
        title: on ? `Take back your ${emoji}` : `React ${emoji}`, 'aria-pressed': on ? 'true' : 'false',
        onclick: () => react(msg.messageId, emoji, on ? 'remove' : 'add'),
      }, emoji);
    }),
    el('button', { type: 'button', class: 'icon', 'data-testid': 'reply-button', title: 'Reply',
      'aria-label': 'Reply', onclick: () => startReply(msg.messageId) }, icon('reply')),
    mine ? el('button', { type: 'button', class: 'icon', 'data-testid': 'edit-button', title: 'Edit',
      onclick: () => startEdit(msg.messageId) }, icon('edit')) : null,
    mine ? el('button', { type: 'button', class: 'icon', 'data-testid': 'delete-button', title: 'Delete',
      onclick: () => askDelete(msg.messageId) }, icon('trash')) : null);
  li.append(avatar(msg.userId, msg.username || s.names.get(msg.userId)),
    el('div', { class: 'bubble' }, meta, replied, content, reactions), actions || '');
  // Out of the tab order until the message has the focus (see rove()).
  li.tabIndex = -1;
  li.querySelectorAll('button, a').forEach((b) => { b.tabIndex = -1; });
  return li;
}

// ---- keyboard: the message list is one tab stop ---------------------------------------
// One message is in the tab order (the last one focused, else the newest); the arrow keys,
// Home and End move between messages; a focused message's tools join the tab order.

function rove() {
  const items = [...$('message-list').querySelectorAll('.message')];
  const current = items.find((li) => li.dataset.messageId && li.dataset.messageId === s.focusId) || items.at(-1);
  for (const li of items) if (li.tabIndex !== (li === current ? 0 : -1)) li.tabIndex = li === current ? 0 : -1;
}

function setTools(li, on) {
  li.querySelectorAll('button, a').forEach((b) => { b.tabIndex = on ? 0 : -1; });
}

$('message-list').addEventListener('focusin', (e) => {
  const li = e.target.closest('.message');
  if (!li) return;
  s.focusId = li.dataset.messageId || null;
  rove();
  setTools(li, true);
});
$('message-list').addEventListener('focusout', (e) => {
  const li = e.target.closest('.message');
  if (li && !li.contains(e.relatedTarget)) setTools(li, false);
});
$('message-list').addEventListener('keydown', (e) => {
  const li = e.target.closest('.message');
  if (!li) return;
  if (e.key === 'Escape' && e.target !== li && !e.target.classList.contains('edit-input')) {
    li.focus();
    return;
  }
  if (e.target !== li) return;
  const items = [...$('message-list').querySelectorAll('.message')];
  const at = items.indexOf(li);
  const to = { ArrowUp: at - 1, ArrowDown: at + 1, Home: 0, End: items.length - 1 }[e.key];
  if (to === undefined) return;
  e.preventDefault();
  if (to < 0 && e.key === 'ArrowUp') loadOlder();
  const next = items[Math.max(0, Math.min(items.length - 1, to))];
  next.focus();
  next.scrollIntoView({ block: 'nearest' });
});

/** Where the focus was in message `li`: to find the same control in its redrawn element. */
function focusKey(li) {
  const active = document.activeElement;
  if (!li || !li.contains(active)) return null;
  if (active === li) return { self: true };
  return { testid: active.dataset.testid, emoji: active.dataset.emoji };
}

function refocus(li, key) {
  if (!key) return;
  let target = li;
  if (!key.self && key.testid) {
    target = [...li.querySelectorAll(`[data-testid="${key.testid}"]`)]
      .find((b) => (b.dataset.emoji || null) === (key.emoji || null)) || li;
  }
  setTools(li, true);
  target.focus({ preventScroll: true });
}

// ---- replies ------------------------------------------------------------------------

const snippet = (text) => (text.length > 120 ? `${text.slice(0, 119)}…` : text);

/**
 * The quote above a reply: the message replied to, if this page has it (a click shows it),
 * or a line saying it is deleted or further back than what is loaded.
 */
function quote(replyTo) {
  const orig = s.messages.get(replyTo);
  const attrs = { class: 'quote', 'data-testid': 'reply-quote', 'data-reply-to': replyTo };
  if (!orig) return el('div', { ...attrs, class: 'quote gone' }, 'Reply to an earlier message');
  if (orig.msg.deleted) return el('div', { ...attrs, class: 'quote gone' }, 'Reply to a deleted message');
  const name = orig.msg.username || nameOf(orig.msg.userId);
  return el('button', {
    ...attrs, type: 'button', title: 'Show the message replied to',
    onclick: () => { orig.el.scrollIntoView({ block: 'center', behavior: 'smooth' }); orig.el.focus({ preventScroll: true }); },
  }, el('span', { class: 'quote-author' }, name), ' ', el('span', { class: 'quote-text' }, snippet(orig.msg.content)));
}

/** Message `messageId` changed, or arrived: the quotes of its replies follow. */
function refreshQuotes(messageId) {
  for (const entry of s.messages.values()) {
    if (entry.msg.replyTo !== messageId) continue;
    const old = entry.el.querySelector('.quote');
    if (!old) continue;
    const fresh = quote(messageId);
    fresh.tabIndex = old.tabIndex;
    old.replaceWith(fresh);
  }
  document.querySelectorAll(`.pending .quote[data-reply-to="${CSS.escape(messageId)}"]`)
    .forEach((old) => old.replaceWith(quote(messageId)));
  if (s.replyTo === messageId) showReplyBar();
}

function startReply(messageId) {
  s.replyTo = messageId;
  showReplyBar();
  $('message-input').focus();
}

function cancelReply() {
  s.replyTo = null;
  $('reply-bar').hidden = true;
}

function showReplyBar() {
  const orig = s.messages.get(s.replyTo);
  if (!orig || orig.msg.deleted) return cancelReply();
  $('reply-bar').hidden = false;
  $('reply-to-name').textContent = orig.msg.username || nameOf(orig.msg.userId);
  $('reply-to-text').textContent = snippet(orig.msg.content);
}

function react(messageId, emoji, op) {
  s.hub.react(s.room, messageId, emoji, op).catch((e) => toast(humanError(e, 'Could not react'), 'error'));
}

/**
 * Insert or refresh a message, keeping the list in seq order. A message being edited keeps
 * its edit box (the same element, so its text, caret and focus stay): only the parts
 * around it are redrawn, unless the message was deleted meanwhile.
 */
function upsert(msg) {
  const list = $('message-list');
  const known = s.messages.get(msg.messageId);
  const learned = msg.username && s.names.get(msg.userId) !== msg.username;
  if (msg.username) s.names.set(msg.userId, msg.username);
  const entry = { msg: known ? { ...known.msg, ...msg } : msg, el: null, editing: known ? known.editing : null };
  if (entry.editing && entry.msg.deleted) {
    entry.editing.cancel();
    entry.editing = null;
    toast('The message you were editing was deleted.');
  }
  if (entry.msg.deleted && s.deleting === msg.messageId && $('confirm-delete').open) {
    $('confirm-delete').close();
  }
  entry.el = renderMessage(entry.msg);
  s.messages.set(msg.messageId, entry);
  if (known && entry.editing) {
    patchAround(known.el, entry.el, entry.editing.input);
    entry.el = known.el;
  } else if (known) {
    const key = focusKey(known.el); // a keyboard user reacting keeps their place
    known.el.replaceWith(entry.el);
    refocus(entry.el, key);
  } else {
    const after = [...list.children].find((li) => li.dataset.seq !== '' && Number(li.dataset.seq) > msg.seq);
    list.insertBefore(entry.el, after || list.querySelector('.pending'));
  }
  if (s.oldestSeq === null || msg.seq < s.oldestSeq) s.oldestSeq = msg.seq;
  regroup();
  rove();
  refreshQuotes(msg.messageId);
  // A name learned now: the messages that carry none (deleted ones) can show it too.
  if (learned) {
    for (const other of [...s.messages.values()]) {
      if (other !== entry && other.msg.userId === msg.userId && !other.msg.username) upsert(other.msg);
    }
  }
}

/** Give `li` (which holds the edit box `keep`) the class and parts of `fresh`, but `keep`. */
function patchAround(li, fresh, keep) {
  li.className = fresh.className;
  const freshBubble = fresh.querySelector('.bubble');
  const bubble = li.querySelector('.bubble');
  // `keep` is never moved: moving a focused element would blur it.
  for (const part of [...bubble.children]) if (part !== keep) part.remove();
  let before = true;
  for (const part of [...freshBubble.children]) {
    if (part.classList.contains('content')) before = false;
    else if (before) bubble.insertBefore(part, keep);
    else bubble.append(part);
  }
  li.querySelector('.actions')?.remove();
  const actions = fresh.querySelector('.actions');
  if (actions) li.append(actions);
}

/**
 * Consecutive messages of one author within 5 minutes, on one day, share one header; each
 * day starts with a separator ("Today", "Yesterday", "Mon 3 Mar"). A reply starts a group
 * of its own: its quote, without a name above it, read as part of the message before.
 */
function regroup() {
  const list = $('message-list');
  list.querySelectorAll('.day').forEach((li) => li.remove());
  let prev = null;
  let day = null;
  for (const li of [...list.children]) {
    const m = s.messages.get(li.dataset.messageId);
    const cur = m ? m.msg : null;
    const at = Number(li.dataset.createdAt);
    const newDay = at && dayKey(at) !== day;
    if (newDay) {
      day = dayKey(at);
      li.before(el('li', { class: 'day', 'data-testid': 'day-separator' }, el('span', {}, dayName(at))));
    }
    const reply = !!(cur && cur.replyTo && !cur.deleted);
    li.classList.toggle('cont', !!(cur && prev && !newDay && !reply && prev.userId === cur.userId &&
      cur.createdAt - prev.createdAt < 300000));
    prev = cur;
  }
}

function update(messageId, change) {
  const known = s.messages.get(messageId);
  if (!known) return; // not loaded: history shows the current state when paged in
  upsert({ ...known.msg, ...change(known.msg) });
}

function nearBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

function scrollToBottom() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
  seenBottom();
}

/** A message arrived below while the reader is scrolled up: the pill says so. */
function newBelow() {
  s.newBelow += 1;
  const pill = $('new-messages');
  pill.textContent = s.newBelow === 1 ? '1 new message ↓' : `${s.newBelow} new messages ↓`;
  pill.hidden = false;
}

/** The reader reached the bottom: nothing new below. */
function seenBottom() {
  s.newBelow = 0;
  $('new-messages').hidden = true;
}

async function reloadHistory() {
  s.messages.clear();
  s.oldestSeq = null;
  $('message-list').replaceChildren();
  const page = await s.hub.history(s.room, { limit: PAGE });
  page.messages.forEach(upsert);
  s.hasMore = page.hasMore;
  renderHistoryStatus();
  scrollToBottom();
  await fillScreen();
}

async function loadOlder() {
  if (s.loadingOlder || !s.hasMore || s.oldestSeq === null) return;
  s.loadingOlder = true;
  renderHistoryStatus();
  const box = $('messages');
  const before = box.scrollHeight;
  try {
    const page = await s.hub.history(s.room, { beforeSeq: s.oldestSeq, limit: PAGE });
    page.messages.forEach(upsert);
    s.hasMore = page.hasMore;
    box.scrollTop += box.scrollHeight - before; // keep what the reader was looking at
  } catch (err) {
    toast(humanError(err, 'Could not load older messages'), 'error');
  } finally {
    s.loadingOlder = false;
    renderHistoryStatus();
  }
}

/** Load older pages until the list can scroll (or the room's beginning is reached). */
async function fillScreen() {
  const box = $('messages');
  while (s.hasMore && box.scrollHeight <= box.clientHeight) await loadOlder();
}

function renderHistoryStatus() {
  const status = $('history-status');
  if (s.loadingOlder) status.textContent = 'Loading older messages…';
  else if (s.hasMore) status.replaceChildren(el('button', { class: 'link', type: 'button',
    'data-testid': 'load-older', onclick: loadOlder }, 'Load older messages'));
  else status.textContent = s.messages.size ? `This is the beginning of #${s.room}.` : `No messages in #${s.room} yet. Say hello!`;
}

function startEdit(messageId) {
  const entry = s.messages.get(messageId);
  if (!entry || entry.editing) return;
  const content = entry.el.querySelector('.content');
  const input = el('textarea', {
    class: 'edit-input', 'data-testid': 'edit-input', maxlength: 4000, rows: 1,
    'aria-label': 'Edit your message (Enter saves, Shift+Enter starts a new line, Escape cancels)',
  });
  input.value = entry.msg.content;
  let done = false;
  // Ends the edit once: Enter saves, Escape cancels (both give the focus back to the message
  // box); leaving the box cancels without moving the focus.
  const finish = (save, refocus) => {
    if (done) return;
    done = true;
    const current = s.messages.get(messageId);
    if (!current) return;
    const text = tidy(input.value);
    if (save && text && text !== current.msg.content) {
      s.hub.editMessage(s.room, messageId, text).catch((e) => toast(humanError(e, 'Could not edit the message'), 'error'));
    }
    current.editing = null;
    upsert(current.msg);
    if (refocus) $('message-input').focus();
  };
  entry.editing = { input, cancel: () => { done = true; } };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); finish(true, true); }
    if (e.key === 'Escape') { e.preventDefault(); finish(false, true); }
  });
  input.addEventListener('blur', () => finish(false, false));
  input.addEventListener('input', () => fitHeight(input));
  content.replaceWith(input);
  fitHeight(input);
  input.focus();
  input.select();
}

/** A text box as tall as its lines (up to its CSS max-height, then it scrolls). */
function fitHeight(box) {
  box.style.height = 'auto';
  box.style.height = `${box.scrollHeight + box.offsetHeight - box.clientHeight}px`;
}

// ---- deleting: asked first, in a small dialog -------------------------------------------

function askDelete(messageId) {
  const entry = s.messages.get(messageId);
  if (!entry || entry.msg.deleted) return;
  s.deleting = messageId;
  $('confirm-delete-quote').textContent = snippet(entry.msg.content || '');
  $('confirm-delete').showModal();
}

function confirmDelete() {
  const messageId = s.deleting;
  $('confirm-delete').close();
  if (!messageId || !s.hub) return;
  s.hub.deleteMessage(s.room, messageId)
    .catch((e) => toast(humanError(e, 'Could not delete the message'), 'error'));
}

function send(text) {
  const clientMsgId = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  const replyTo = s.replyTo || undefined;
  cancelReply();
  const pending = renderMessage({ userId: s.me, content: text, createdAt: Date.now(), pending: true, replyTo });
  pending.dataset.clientMsgId = clientMsgId;
  $('message-list').append(pending);
  regroup();
  rove();
  scrollToBottom();
  s.hub.sendChatMessage(s.room, s.me, text, { clientMsgId, replyTo }).catch((err) => {
    pending.querySelector('.sending').textContent = `not sent: ${humanError(err)}`;
    pending.classList.add('failed');
  });
}

// ---- typing -------------------------------------------------------------------------

function setTyping(userId, on) {
  clearTimeout(s.typers.get(userId));
  s.typers.delete(userId);
  if (on) s.typers.set(userId, setTimeout(() => setTyping(userId, false), 6000));
  // Each name in its own <bdi>: a right-to-left name (or one holding U+202E) must not
  // reorder the words around it.
  const names = [...s.typers.keys()].map((id) => el('bdi', {}, nameOf(id)));
  $('typing-indicator').replaceChildren(...(
    names.length === 0 ? [] : names.length === 1 ? [names[0], ' is typing…']
      : names.length === 2 ? [names[0], ' and ', names[1], ' are typing…'] : ['Several people are typing…']));
}

// ---- calls --------------------------------------------------------------------------

async function media() {
  try {
    return await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch {
    return navigator.mediaDevices.getUserMedia({ audio: true });
  }
}

/** The mute and camera buttons as a call starts: microphone and camera on. */
function resetCallControls() {
  $('mute-button').textContent = 'Mute';
  $('camera-button').textContent = 'Camera off';
}

function showCall(c, label) {
  resetCallControls();
  $('call-panel').hidden = false;
  if (peopleOpen()) {
    // The call starts from the panel (or rings meanwhile): it closes; Hang up has the focus.
    const inside = $('people-panel').contains(document.activeElement);
    setPeople(false);
    if (inside) $('hangup-button').focus();
  }
  $('app').classList.add('in-call');
  $('call-peer').textContent = nameOf(c.peer);
  setCallState(label, label);
  renderMembers();
}

function setCallState(state, label = state) {
  $('call-state').dataset.state = state;
  $('call-state').textContent = label;
}

/** The RTCPeerConnection of call `c`, with local media, trickling ICE through hubbub. */
async function connect(c) {
  const pc = new RTCPeerConnection({ iceServers: s.hub.welcome.iceServers });
  c.pc = pc;
  pc.onicecandidate = ({ candidate }) => {
    if (!candidate) return;
    if (c.signalled) s.hub.sendIceCandidate(s.me, c.peer, candidate, c.id);
    else c.localIce.push(candidate);
  };
  pc.ontrack = (e) => { $('remote-video').srcObject = e.streams[0]; };
  pc.onconnectionstatechange = () => {
    if (s.call !== c) return;
    setCallState(pc.connectionState, `${pc.connectionState} · ICE ${pc.iceConnectionState}`);
    if (pc.connectionState === 'connected' && !c.since) {
      c.since = Date.now();
      c.tick = setInterval(() => {
        const sec = Math.floor((Date.now() - c.since) / 1000);
        $('call-timer').textContent = `${Math.floor(sec / 60)}:${String(sec % 60).padStart(2, '0')}`;
      }, 1000);
    }
    if (pc.connectionState === 'failed') {
      s.hub.endCall(c.id, 'failed');
      endCall(`The call with ${nameOf(c.peer)} lost its connection`, 'error');
    }
  };
  c.stream = await media();
  if (s.call !== c) throw new Error('the call ended');
  $('local-video').srcObject = c.stream;
  c.stream.getTracks().forEach((t) => pc.addTrack(t, c.stream));
  return pc;
}

/** After our offer/answer went out: the candidates gathered meanwhile follow it. */
function signalled(c) {
  c.signalled = true;
  c.localIce.splice(0).forEach((cand) => s.hub.sendIceCandidate(s.me, c.peer, cand, c.id));
}

async function remoteIce(c) {
  for (const cand of c.remoteIce.splice(0)) await c.pc.addIceCandidate(cand).catch(() => {});
}

/**
 * Give up on call `c` after `ms` unless it is over (or connected) by then: hang up on the
 * server with `reason` and say `why`.
 */
function guard(c, ms, reason, why) {
  clearTimeout(c.guard);
  c.guard = setTimeout(() => {
    if (s.call !== c || c.since) return; // over, or it connected (a later drop is ICE's to mend)
    if (reason === 'timeout' && c.role === 'callee') s.hub.rejectCall(c.id, reason);
    else s.hub.endCall(c.id, reason);
    endCall(why, 'error');
  }, ms);
}

/** The call was answered: it must connect within guards.connectMs. */
function guardConnect(c) {
  const name = nameOf(c.peer);
  guard(c, s.guards.connectMs, 'failed', `Could not connect the call with ${name}: no network path `
    + 'was found between you (across networks this needs a TURN server)');
}

async function startCall(peer) {
  if (s.call) return;
  if (!connected()) {
    toast('You are offline: you can call once the connection is back.', 'error');
    return;
  }
  const c = { id: crypto.randomUUID(), peer, localIce: [], remoteIce: [], role: 'caller' };
  s.call = c;
  showCall(c, `calling ${nameOf(peer)}…`);
  guard(c, s.guards.ringMs, 'timeout', `No answer from ${nameOf(peer)}`);
  try {
    const pc = await connect(c);
    await pc.setLocalDescription(await pc.createOffer());
    s.hub.sendWebRTCOffer(s.me, peer, pc.localDescription, c.id, { roomId: s.room });
    signalled(c);
    setCallState('ringing', `ringing ${nameOf(peer)}…`);
  } catch (err) {
    endCall(`Could not start the call: ${mediaError(err)}`, 'error');
  }
}

// ---- ringing ------------------------------------------------------------------------

/**
 * An incoming call rings: a two-note chime every 2 s, made with Web Audio (no file to
 * fetch), until its dialog closes, however it closes (answered, declined, here or on
 * another device, timed out, cancelled). The user clicked Join, so browsers let a page
 * play sound; where one does not, the dialog still shows.
 */
const ringer = { ctx: null, timer: null };

function ring() {
  const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
  if (!Ctx) return;
  try {
    ringer.ctx = ringer.ctx || new Ctx();
    if (ringer.ctx.state === 'suspended') ringer.ctx.resume().catch(() => {});
  } catch {
    return;
  }
  const chime = () => {
    const ctx = ringer.ctx;
    const t = ctx.currentTime;
    for (const [freq, at] of [[880, 0], [660, 0.25]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t + at);
      gain.gain.exponentialRampToValueAtTime(0.2, t + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.22);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t + at);
      osc.stop(t + at + 0.25);
    }
  };
  stopRinging();
  chime();
  ringer.timer = setInterval(chime, 2000);
}

function stopRinging() {
  clearInterval(ringer.timer);
  ringer.timer = null;
}

async function accept() {
  const c = s.call;
  $('incoming-call').close();
  if (!c) return;
  c.accepted = true;
  showCall(c, 'connecting…');
  guardConnect(c);
  try {
    const pc = await connect(c);
    await pc.setRemoteDescription(c.offer);
    await pc.setLocalDescription(await pc.createAnswer());
    s.hub.sendWebRTCAnswer(s.me, c.peer, pc.localDescription, c.id)
      .catch((err) => s.call === c && endCall(humanError(err, 'The call could not be answered'), 'error'));
    signalled(c);
    await remoteIce(c);
  } catch (err) {
    endCall(`Could not answer: ${mediaError(err)}`, 'error');
  }
}

function decline() {
  const c = s.call;
  $('incoming-call').close();
  if (!c) return;
  s.hub.rejectCall(c.id, 'rejected');
  endCall(null);
}

function hangUp() {
  if (!s.call) return;
  s.hub.endCall(s.call.id, 'hangup');
  endCall('Call ended');
}

/** Tear the call down locally (the server already knows, or was told). */
function endCall(message, kind = 'info') {
  const c = s.call;
  if (!c) return;
  s.call = null;
  clearInterval(c.tick);
  clearTimeout(c.guard);
  if (c.pc) c.pc.close();
  if (c.stream) c.stream.getTracks().forEach((t) => t.stop());
  $('remote-video').srcObject = null;
  $('local-video').srcObject = null;
  $('call-timer').textContent = '';
  resetCallControls();
  $('call-panel').hidden = true;
  $('app').classList.remove('in-call');
  if (peopleOpen() && !folded()) setPeople(false); // a phone on its side: the people beside the chat again
  if ($('incoming-call').open) $('incoming-call').close();
  setCallState('ended', 'ended');
  if (message) toast(message, kind === 'info' ? 'info' : 'error');
  renderMembers();
}

async function onSignal({ payload: p }) {
  const c = s.call;
  if (p.kind === 'offer') {
    if (c && c.id === p.callId && c.pc) { // renegotiation or ICE restart
      await c.pc.setRemoteDescription(p.sdp);
      await c.pc.setLocalDescription(await c.pc.createAnswer());
      s.hub.sendWebRTCAnswer(s.me, c.peer, c.pc.localDescription, c.id);
    } else if (c) {
      s.hub.rejectCall(p.callId, 'busy');
    } else {
      s.call = { id: p.callId, peer: p.from, offer: p.sdp, localIce: [], remoteIce: [], role: 'callee' };
      guard(s.call, s.guards.ringMs, 'timeout', `Missed call from ${nameOf(p.from)}`);
      $('incoming-caller').textContent = nameOf(p.from);
      $('incoming-call').showModal();
      ring();
      renderMembers();
    }
  } else if (c && c.id === p.callId) {
    if (p.kind === 'answer') {
      guardConnect(c);
      await c.pc.setRemoteDescription(p.sdp);
      setCallState('connecting', 'connecting…');
      await remoteIce(c);
    } else if (p.kind === 'ice_candidate') {
      if (c.pc && c.pc.remoteDescription) await c.pc.addIceCandidate(p.candidate).catch(() => {});
      else c.remoteIce.push(p.candidate);
    }
  }
}

function onCallOver({ payload: p, local }) {
  const c = s.call;
  if (!c || c.id !== p.callId) return;
  if (local) return endCall('Call ended: you lost the connection');
  const name = nameOf(c.peer);
  if (c.role === 'callee' && !c.accepted) { // the caller gave up, or the ring timed out
    const say = UNANSWERED_REASONS[p.reason];
    return endCall(say ? say(name) : `Missed call from ${name}`);
  }
  const say = END_REASONS[p.reason];
  if (!say) console.info(`hubbub demo: call ended with reason ${p.reason}`);
  endCall(say ? say(name) : `Call with ${name} ended`);
}

// ---- wiring -------------------------------------------------------------------------

function wire(client) {
  // A client left behind (leave(), a failed join) talks to nobody.
  const hub = { on: (type, handler) => client.on(type, (m) => { if (s.hub === client) handler(m); }) };
  // Call buttons follow the connection: a call cannot start while it is down.
  hub.on('open', () => { s.online = true; setConn('open', 'connected'); renderMembers(); });
  hub.on('close', ({ payload }) => {
    s.online = false;
    setConn(payload.willReconnect ? 'reconnecting' : 'closed',
      payload.willReconnect ? 'reconnecting…' : 'disconnected');
    renderMembers();
  });
  hub.on('reconnecting', ({ payload }) => setConn('reconnecting', `reconnecting… (attempt ${payload.attempt})`));
  hub.on('rejoin', ({ payload }) => {
    if (payload.roomId !== s.room) return;
    setMembers(payload.members);
    if (payload.recovered === false) reloadHistory();
  });
  hub.on('chat', ({ payload: p }) => {
    if (p.roomId !== s.room) return;
    const follow = nearBottom() || p.userId === s.me;
    if (p.clientMsgId) document.querySelector(`[data-client-msg-id="${CSS.escape(p.clientMsgId)}"]`)?.remove();
    // A chat replayed after a reconnect has `content: null` if it was deleted since.
    upsert({ ...p, reactions: {}, deleted: p.content === null });
    const news = p.userId !== s.me && p.content !== null;
    if (news) announce(`${nameOf(p.userId)}: ${p.content}`);
    setTyping(p.userId, false);
    renderHistoryStatus();
    if (follow) scrollToBottom();
    else if (news) newBelow();
    if (news && document.hidden) {
      s.unread += 1;
      renderTitle();
    }
  });
  hub.on('message_edit', ({ payload: p }) => p.roomId === s.room &&
    update(p.messageId, () => (p.content === null ? { deleted: true, content: null }
      : { content: p.content, editedAt: p.editedAt })));
  hub.on('message_delete', ({ payload: p }) => p.roomId === s.room &&
    update(p.messageId, () => ({ deleted: true, content: null, deletedAt: p.deletedAt })));
  hub.on('reaction', ({ payload: p }) => p.roomId === s.room && update(p.messageId, (m) => {
    const reactions = { ...(m.reactions || {}) };
    const users = new Set(reactions[p.emoji] || []);
    if (p.op === 'add') users.add(p.userId); else users.delete(p.userId);
    reactions[p.emoji] = [...users];
    return { reactions };
  }));
  hub.on('typing', ({ payload: p }) => p.roomId === s.room && p.userId !== s.me && setTyping(p.userId, p.isTyping));
  hub.on('presence', ({ payload: p }) => {
    s.names.set(p.userId, p.username);
    const m = s.members.get(p.userId);
    if (m) Object.assign(m, { status: p.status, lastSeen: p.lastSeen, username: p.username || m.username });
    if (p.userId === s.me) showMyStatus(p.status);
    if (m) renderMembers();
  });
  hub.on('join_room', ({ payload: p }) => {
    if (p.roomId !== s.room) return;
    s.members.set(p.userId, { userId: p.userId, username: p.username, status: p.status || 'online' });
    s.names.set(p.userId, p.username);
    renderMembers();
  });
  hub.on('leave_room', ({ payload: p }) => {
    if (p.roomId !== s.room) return;
    // After `presence: offline` the server makes them leave: they stay listed, greyed.
    if (s.members.get(p.userId)?.status !== 'offline') s.members.delete(p.userId);
    setTyping(p.userId, false);
    renderMembers();
  });
  hub.on('webrtc', (m) => onSignal(m).catch((err) => {
    console.warn('hubbub demo: signalling failed', err);
    endCall('The call failed: the connection could not be set up', 'error');
  }));
  hub.on('call_end', onCallOver);
  hub.on('call_reject', onCallOver);
  hub.on('announcement', ({ payload }) => toast(`📣 ${payload.content}`, 'announcement'));
  // Requests the page makes handle their own errors (a toast, or the message's "not sent");
  // here: a refused call offer, a status change, and what the server says unasked.
  hub.on('error', ({ payload, request }) => {
    // A call over here (declined, busy, hung up) may still get refusals of frames that were
    // on their way: the ICE candidates Chromium kept finding, a hang-up crossing the other's.
    const callId = request && request.payload && request.payload.callId;
    if (callId && (!s.call || s.call.id !== callId)) {
      console.debug(`hubbub demo: late ${request.type} for a call that is over: ${payload.code}`);
      return;
    }
    console.warn(`hubbub demo: ${request ? request.type : 'server'} error ${payload.code}: ${payload.message}`);
    if (request && request.type === 'webrtc') {
      if (s.call && request.payload.callId === s.call.id && request.payload.kind === 'offer') {
        endCall(`Call failed: ${callRefusal(payload.code, nameOf(s.call.peer))}`, 'error');
      }
    } else if (request && request.type === 'presence') {
      toast(humanError(payload, 'Could not change your status'), 'error');
    } else if (!request) {
      toast(humanError(payload), 'error');
    }
  });
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  join($('name-input').value, $('room-input').value);
});
$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = tidy($('message-input').value);
  if (!text.trim() || !s.room) return;
  $('message-input').value = '';
  fitHeight($('message-input'));
  s.hub.stopTyping(s.room);
  send(text);
});
$('message-input').addEventListener('input', (e) => {
  fitHeight(e.target);
  if (e.target.value) s.hub.typing(s.room); else s.hub.stopTyping(s.room);
});
// On a touch screen with no mouse (a phone) the keyboard's Enter is a new line and the Send
// button sends, as in the chat apps people use there: a stray Enter must not send half a
// message. Elsewhere Enter sends and Shift+Enter is a new line.
const touchOnly = matchMedia('(hover: none) and (pointer: coarse)');
const composerHint = () => {
  $('composer-hint').textContent = touchOnly.matches
    ? 'Enter starts a new line, the Send button sends' : 'Enter sends, Shift+Enter starts a new line';
};
touchOnly.addEventListener('change', composerHint);
composerHint();
$('message-input').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && s.replyTo) { e.preventDefault(); cancelReply(); }
  // An Enter that ends an IME composition is not a send.
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !touchOnly.matches) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});
$('cancel-reply').addEventListener('click', () => { cancelReply(); $('message-input').focus(); });
$('message-input').addEventListener('blur', () => s.room && s.hub.stopTyping(s.room));
// A reader at the bottom stays there when the list's box changes size (a call opening on a
// phone, the keyboard, a rotation) or a message in it grows (a reaction, a quote).
let stick = true;
$('messages').addEventListener('scroll', () => {
  stick = nearBottom();
  if (stick) seenBottom();
  if ($('messages').scrollTop < 60) loadOlder();
});
$('new-messages').addEventListener('click', () => {
  const box = $('messages');
  const still = matchMedia('(prefers-reduced-motion: reduce)').matches;
  box.scrollTo({ top: box.scrollHeight, behavior: still ? 'auto' : 'smooth' });
});
// Back on the page: what came meanwhile has been seen (the title loses its count).
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && s.unread) {
    s.unread = 0;
    renderTitle();
  }
});
$('cancel-delete').addEventListener('click', () => $('confirm-delete').close());
$('confirm-delete-button').addEventListener('click', confirmDelete);
$('confirm-delete').addEventListener('close', () => { s.deleting = null; });
const keepAtBottom = new ResizeObserver(() => { if (stick) scrollToBottom(); });
keepAtBottom.observe($('messages'));
keepAtBottom.observe($('message-list'));
$('leave-button').addEventListener('click', leave);
$('people-toggle').addEventListener('click', () => setPeople(!peopleOpen(), { focus: true }));
// The panel closes on Escape (the focus back on People), on a tap outside the room's bar, on
// the focus leaving the bar, and when the people are no longer folded (turned on its side out
// of a call; turned during a call, they stay open in the chat's place).
document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape' || !peopleOpen() || e.defaultPrevented || document.querySelector('dialog[open]')) return;
  e.preventDefault();
  setPeople(false, { focus: true });
});
document.addEventListener('pointerdown', (e) => {
  if (peopleOpen() && !e.target.closest('.sidebar')) setPeople(false);
});
$('app').querySelector('.sidebar').addEventListener('focusout', (e) => {
  if (peopleOpen() && e.relatedTarget && !e.relatedTarget.closest('.sidebar')) setPeople(false);
});
for (const query of [COMPACT, SIDEWAYS]) {
  query.addEventListener('change', () => { if (peopleOpen() && !folded()) setPeople(false); });
}
$('status-select').addEventListener('change', (e) => s.hub.setPresence(s.me, s.names.get(s.me), e.target.value));
$('accept-call').addEventListener('click', accept);
$('reject-call').addEventListener('click', decline);
$('incoming-call').addEventListener('cancel', (e) => { e.preventDefault(); decline(); });
$('incoming-call').addEventListener('close', stopRinging);
$('hangup-button').addEventListener('click', hangUp);
$('mute-button').addEventListener('click', () => {
  const track = s.call && s.call.stream && s.call.stream.getAudioTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  $('mute-button').textContent = track.enabled ? 'Mute' : 'Unmute';
});
$('camera-button').addEventListener('click', () => {
  const track = s.call && s.call.stream && s.call.stream.getVideoTracks()[0];
  if (!track) return;
  track.enabled = !track.enabled;
  $('camera-button').textContent = track.enabled ? 'Camera off' : 'Camera on';
});
window.addEventListener('pagehide', () => { if (s.call) s.hub.endCall(s.call.id, 'hangup'); });

const params = new URLSearchParams(location.search);
$('name-input').value = params.get('name') || localStorage.getItem('hubbub.demo.name') || '';
if (params.get('room')) $('room-input').value = params.get('room');
if (params.get('name') && params.get('room')) join(params.get('name'), params.get('room'));
else ($('name-input').value ? $('room-input') : $('name-input')).focus();
window.hubbubDemo = s; // for the curious (and the console)
