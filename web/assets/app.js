// Salon's built-in web client: the landing page and one chat room (XEP-0045), with history,
// occupants, topic, nick colours (XEP-0392), corrections (XEP-0308), replies (XEP-0461),
// reactions (XEP-0444), moderation (XEP-0045 admin, XEP-0425), private conversations with
// occupants (XEP-0045 §7.5), and sessions that survive a reload or a dropped connection (XEP-0198).

import { Connection, WebSocketTransport, BoshTransport, x, t, child, children, text, newId } from './xmpp.js';
import { nickColor, cachedColor } from './colors.js';

const NS = {
  muc: 'http://jabber.org/protocol/muc',
  mucUser: 'http://jabber.org/protocol/muc#user',
  mucOwner: 'http://jabber.org/protocol/muc#owner',
  mucAdmin: 'http://jabber.org/protocol/muc#admin',
  data: 'jabber:x:data',
  delay: 'urn:xmpp:delay',
  sid: 'urn:xmpp:sid:0',
  occupantId: 'urn:xmpp:occupant-id:0',
  correct: 'urn:xmpp:message-correct:0',
  reply: 'urn:xmpp:reply:0',
  fallback: 'urn:xmpp:fallback:0',
  reactions: 'urn:xmpp:reactions:0',
  retract: 'urn:xmpp:message-retract:1',
  moderate: 'urn:xmpp:message-moderate:1',
  hints: 'urn:xmpp:hints',
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  upload: 'urn:xmpp:http:upload:0',
  oob: 'jabber:x:oob',
  discoInfo: 'http://jabber.org/protocol/disco#info',
  visitor: 'urn:salon:visitor:0',
  roomInvite: 'urn:salon:room-invite:0',
};
const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
const ROLE_ORDER = { moderator: 0, participant: 1, visitor: 2, none: 3 };
const ROLE_TITLE = { moderator: 'Moderators', participant: 'Participants', visitor: 'Visitors' };
const KEEP_MESSAGES = 150;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false) e.append(kid);
  return e;
};
const splitJid = (jid) => {
  const i = jid.indexOf('/');
  return i < 0 ? [jid, ''] : [jid.slice(0, i), jid.slice(i + 1)];
};
const dark = () => matchMedia('(prefers-color-scheme: dark)').matches;

/** Everything the page knows; `window.salon` for tests and curious people. */
const S = {
  cfg: null,
  roomJid: null,
  roomName: null,
  nick: null,
  embed: false,
  conn: null,
  bosh: new URLSearchParams(location.search).get('transport') === 'bosh',
  password: null, // a password-protected room's, once asked for
  invite: null, // a members-only room's invite link token (?invite=), shown when joining
  wsWorked: false,
  joined: false,
  joining: false,
  me: null, // own occupant
  occupants: new Map(),
  messages: [],
  byStanzaId: new Map(),
  byKeyId: new Map(),
  pending: new Map(),
  subject: '',
  subjectSeen: false,
  retry: 0,
  reconnectTimer: null,
  leaving: false,
  reply: null,
  editing: null,
  suggestN: 1,
  unread: 0,
  pms: new Map(), // private conversations, by the other occupant's nick
  view: null, // the private conversation in view; null: the room
  roomUnread: 0,
  events: [], // for tests: 'resumed', 'fresh', 'disconnected'
  connecting: false,
  everConnected: false, // on this page: says "lost" rather than "cannot reach"
  everJoined: false,
  renaming: null, // the nick asked for by /nick, until the room answers
  roomRefused: false,
};
window.salon = S;

// -- configuration and routing --------------------------------------------------------------

async function loadConfig() {
  let cfg = {};
  try {
    const r = await fetch('/config.json', { cache: 'no-cache' });
    if (r.ok) cfg = await r.json();
  } catch { /* derive everything from the page's host */ }
  const domain = cfg.domain || location.hostname;
  let ws = cfg.websocket_url || '/xmpp-websocket';
  if (ws.startsWith('/')) ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + ws;
  return {
    domain,
    anon: cfg.anonymous_domain || 'anon.' + domain,
    muc: cfg.muc_domain || 'rooms.' + domain,
    ws,
    bosh: cfg.bosh_url || '/http-bind',
    upload: cfg.upload_domain || null,
  };
}

function route() {
  const q = new URLSearchParams(location.search);
  let room = null;
  const m = location.pathname.match(/^\/join\/([^/]+)\/?$/);
  if (m) room = decodeURIComponent(m[1]);
  else if (q.get('channel')) room = q.get('channel');
  else if (q.get('room')) room = q.get('room');
  else if (location.hash.length > 1) room = decodeURIComponent(location.hash.slice(1));
  room = room ? room.replace(/^#+/, '').trim() : '';
  return { room: room || null, nick: (q.get('nick') || '').trim() || null, embed: q.get('embed') === '1', invite: q.get('invite') };
}

/** A room name as typed (`sprint`, `#sprint`, `sprint@rooms.host`) → its bare JID. */
function roomJid(room) {
  room = room.trim().replace(/^#+/, '').replace(/^xmpp:/, '').replace(/\?.*$/, '');
  if (room.includes('@')) return room.toLowerCase();
  return room.toLowerCase().replace(/\s+/g, '-').replace(/["&'/:<>@]/g, '') + '@' + S.cfg.muc;
}

const joinUrl = (name) => location.origin + '/join/' + encodeURIComponent(name);
const xmppUri = (jid) => 'xmpp:' + jid + '?join';

// -- landing ----------------------------------------------------------------------------------

function showLanding(r) {
  document.title = 'Salon';
  $('landing').hidden = false;
  $('chat').hidden = true;
  const nick = $('landing-nick'), room = $('landing-room');
  nick.value = r.nick || localStorage.getItem('salon:nick') || '';
  room.value = r.room || '';
  const update = () => {
    const name = room.value.trim().replace(/^#+/, '') || 'lobby';
    const jid = roomJid(name);
    const local = jid.endsWith('@' + S.cfg.muc) ? jid.split('@')[0] : jid;
    const url = joinUrl(local);
    $('share-link').href = url;
    $('share-link').textContent = url;
    $('xmpp-link').href = xmppUri(jid);
    $('xmpp-uri').textContent = xmppUri(jid);
    $('embed-snippet').value = `<iframe src="${url}?embed=1" title="Chat: ${local}" style="width:100%;height:500px;border:0"></iframe>`;
  };
  room.addEventListener('input', update);
  update();
  $('embed-snippet').addEventListener('focus', (e) => e.target.select());
  $('landing-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const jid = roomJid(room.value);
    const local = jid.endsWith('@' + S.cfg.muc) ? jid.split('@')[0] : jid;
    history.pushState(null, '', '/join/' + encodeURIComponent(local));
    $('landing').hidden = true;
    openRoom(jid, nick.value.trim());
  });
  (nick.value ? room : nick).focus();
}

// -- status line ------------------------------------------------------------------------------

let statusTimer = null;
function status(msg, kind = 'info', hideAfter = 0, action = null) {
  const s = $('status');
  clearTimeout(statusTimer);
  if (!msg) {
    s.hidden = true;
    s.dataset.kind = '';
    return;
  }
  s.hidden = false;
  s.dataset.kind = kind;
  s.replaceChildren(msg);
  if (action) s.append(' ', el('button', { type: 'button', class: 'link', onclick: action.run, text: action.label }));
  if (hideAfter) statusTimer = setTimeout(() => status(null), hideAfter);
}

// -- the room -----------------------------------------------------------------------------------

function openRoom(jid, nick) {
  S.roomJid = jid;
  S.roomName = jid.endsWith('@' + S.cfg.muc) ? jid.split('@')[0] : jid;
  document.title = '#' + S.roomName + ' — Salon';
  $('chat').hidden = false;
  $('landing').hidden = true;
  document.body.classList.toggle('embed', S.embed);
  $('room-name').textContent = '#' + S.roomName;
  $('open-app').href = xmppUri(jid);
  document.querySelector('.nick-room').textContent = '#' + S.roomName;
  setupComposer();
  const snap = loadSnapshot();
  // A nick in the link joins at once; a reload resumes its session. Otherwise the prompt
  // asks, with the nick last accepted filled in, and tells who is in the room meanwhile.
  if (snap && (!nick || snap.nick === nick)) {
    restoreSnapshot(snap);
    start(snap.nick, snap.sm);
  } else if (nick) {
    start(nick, null);
  } else {
    askNick(savedNick());
    start(null, null);
  }
}

const savedNick = () => localStorage.getItem('salon:nick') || '';
/** Remember a nick the room accepted (never one merely asked for). */
function rememberNick(nick) {
  try {
    localStorage.setItem('salon:nick', nick);
  } catch { /* storage refused: the prompt will ask next time */ }
}

function askNick(value, error, suggestion, rename = false) {
  const f = $('nick-form');
  f.hidden = false;
  f.classList.toggle('rename', rename);
  $('nick-title').hidden = rename;
  $('rename-title').hidden = !rename;
  $('nick-cancel').hidden = !rename;
  $('nick-submit').textContent = rename ? 'Change' : 'Join';
  $('room-peek').hidden = rename || !$('room-peek').textContent;
  if (!rename) $('composer').hidden = true;
  $('nick-input').value = value || '';
  $('nick-error').hidden = !error;
  $('nick-error').textContent = error || '';
  $('nick-suggest').hidden = !suggestion;
  if (suggestion) $('nick-suggestion').textContent = suggestion;
  $('nick-input').focus();
  if (error) $('nick-input').select();
}

function setupNickForm() {
  $('nick-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = $('nick-input').value.trim();
    if (!nick) return;
    chooseNick(nick);
  });
  $('nick-suggestion').addEventListener('click', () => chooseNick($('nick-suggestion').textContent));
  $('nick-cancel').addEventListener('click', () => {
    $('nick-form').hidden = true;
    $('input').focus();
  });
}

function chooseNick(nick) {
  $('nick-form').hidden = true;
  if (S.joined) return rename(nick);
  // Kept in memory only: a reload resumes the session and needs no password.
  if (!$('password-row').hidden) S.password = $('password-input').value;
  if (!$('nick-error').hidden) {
    // The previous try failed: keep the base for the next suggestion.
  } else {
    S.suggestN = 1;
  }
  if (S.conn && S.conn.online) {
    S.nick = nick;
    joinRoom();
  } else if (S.connecting) {
    S.nick = nick; // joins once connected
    $('composer').hidden = false;
  } else {
    start(nick, null);
  }
}

/** A new nick in the room (XEP-0045 §7.6): presence to the new occupant address. */
function rename(nick) {
  nick = nick.trim();
  if (!nick || nick === S.nick || !S.joined) return;
  S.renaming = nick;
  S.conn.send(x('presence', { to: `${S.roomJid}/${nick}`, id: newId() }));
  $('input').focus();
}

/** Nick + a digit, the digit growing each time the suggestion was taken too. */
function suggestNick(nick) {
  const base = nick.replace(/\d+$/, '') || nick;
  const tail = nick.match(/(\d+)$/);
  S.suggestN = Math.max(S.suggestN + 1, tail ? Number(tail[1]) + 1 : 2);
  return base + S.suggestN;
}

async function start(nick, resume) {
  S.nick = nick;
  if (nick) {
    $('nick-form').hidden = true;
    $('composer').hidden = false;
  }
  if (!S.conn) {
    S.conn = new Connection({
      // WebSocket first; BOSH where WebSockets do not get through (some proxies), or when
      // the link asks for it with ?transport=bosh.
      transport: () => (S.bosh ? new BoshTransport(S.cfg.bosh) : new WebSocketTransport(S.cfg.ws)),
      domain: S.cfg.anon,
      onstanza,
      onstate,
    });
  }
  if (S.nick) status(resume ? 'Reconnecting…' : 'Connecting…');
  S.connecting = true;
  try {
    const how = await S.conn.connect(resume);
    S.connecting = false;
    if (!S.bosh) S.wsWorked = true;
    S.everConnected = true;
    S.events.push(how);
    S.retry = 0;
    if (how === 'resumed') {
      status('Connected — session resumed.', 'ok', 2500);
      S.joined = true;
      S.everJoined = true;
      document.body.classList.add('joined');
    } else if (S.nick) {
      status(S.messages.length ? 'Connected; joining again…' : 'Joining…');
      joinRoom();
    } else {
      status(null);
      peekRoom();
    }
    saveSoon();
  } catch (e) {
    S.connecting = false;
    S.conn.abort();
    S.events.push('failed');
    // A WebSocket that never opened on this page: try BOSH at once before waiting.
    if (!S.bosh && !S.wsWorked && /cannot connect/.test(e.message || '')) {
      S.bosh = true;
      S.events.push('bosh');
      return start(nick, resume);
    }
    reconnectLater(e);
  }
}

/** What went wrong with the connection, in the visitor's words, and what happens next. */
function connectionTrouble(err) {
  const cond = err && err.condition;
  if (cond === 'system-shutdown') return 'The chat server is restarting.';
  if (cond === 'conflict') return 'This chat was opened elsewhere.';
  if (cond === 'policy-violation' || cond === 'not-authorized') return 'The chat server ended the connection.';
  if (!S.everConnected) {
    if (!navigator.onLine) return 'You are offline: the chat cannot start.';
    return 'The chat server cannot be reached. Check your internet connection.';
  }
  if (!navigator.onLine) return 'You are offline.';
  return 'Connection lost.';
}

function reconnectLater(err) {
  clearTimeout(S.reconnectTimer);
  clearInterval(S.countdown);
  if (S.leaving) return;
  // Quick at first, and never more than 2 s apart for the first minute while the page is in
  // view: the browser's `online` event does not come when only the server or the path to it
  // was down, and a try that fails at once costs the server nothing. After that, or in a
  // background tab, up to 30 s.
  const cap = document.hidden || S.retry > 30 ? 30000 : 2000;
  const delay = Math.round(Math.min(cap, 500 * 2 ** S.retry) * (0.75 + Math.random() * 0.5));
  S.retry++;
  const due = Date.now() + delay;
  const what = connectionTrouble(err);
  const tick = () => {
    const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
    status(`${what} ${S.everConnected ? 'Reconnecting' : 'Trying again'} in ${left} s…`, 'warn', 0, { label: 'Try now', run: reconnectNow });
  };
  tick();
  S.countdown = setInterval(tick, 1000);
  S.reconnectTimer = setTimeout(reconnectNow, delay);
}

function reconnectNow() {
  clearTimeout(S.reconnectTimer);
  clearInterval(S.countdown);
  S.reconnectTimer = null;
  if (S.leaving) return;
  const resume = S.conn && S.conn.resumeState();
  if (!resume) S.joined = false;
  start(S.nick, resume);
}

function onstate(state, info) {
  if (state === 'acked') return saveSoon();
  if (state === 'disconnected') {
    S.events.push('disconnected');
    if (S.leaving) return;
    if (!S.conn.resumeState()) S.joined = false;
    reconnectLater(info && info.error);
  }
}

// The network is back, or the page is in view again (a phone woke up): reconnect now if the
// page was waiting to, else make sure the connection still works.
addEventListener('online', () => {
  if (S.reconnectTimer) reconnectNow();
  else if (S.conn) S.conn.probe();
});
addEventListener('offline', () => { if (S.conn) S.conn.probe(); });
document.addEventListener('visibilitychange', () => {
  if (document.hidden) return;
  if (S.reconnectTimer) reconnectNow();
  else if (S.conn && Date.now() - S.conn.lastHeard > 5000) S.conn.probe();
});

function joinRoom() {
  S.joining = true;
  S.joined = false;
  S.subjectSeen = false;
  S.occupants.clear();
  renderOccupants();
  // Coming back after a failed resumption: only what was missed.
  const last = S.messages.filter((m) => !m.pending).at(-1);
  const history = last ? { since: new Date(last.time).toISOString() } : { maxstanzas: 50 };
  const secret = visitorSecret();
  S.conn.send(x('presence', { to: `${S.roomJid}/${S.nick}`, id: newId() },
    x('x', { xmlns: NS.muc }, x('history', history), S.password ? x('password', {}, t(S.password)) : null,
      S.invite ? x('invite', { xmlns: NS.roomInvite, token: S.invite }) : null),
    secret ? x('visitor', { xmlns: NS.visitor, secret }) : null));
}

// The browser secret: a server may hand this browser a secret in a room's self-presence, to be
// shown again on every later join (it tells a returning visitor from a new one). Kept per
// server; nothing is sent where none was given.
const secretKey = () => 'salon:visitor:' + S.cfg.domain;
function visitorSecret() {
  try {
    return localStorage.getItem(secretKey()) || null;
  } catch {
    return null;
  }
}
function keepVisitorSecret(st) {
  const secret = child(st, 'visitor', NS.visitor)?.getAttribute('secret');
  if (!secret || secret.length > 512) return;
  try {
    localStorage.setItem(secretKey(), secret);
  } catch { /* storage refused: joins go without it */ }
}

/** Before the visitor picks a nick: is the room there, who is in it, has it a topic? */
async function peekRoom() {
  let info;
  try {
    info = await S.conn.iq({ type: 'get', to: S.roomJid }, x('query', { xmlns: NS.discoInfo }), 8000);
  } catch (e) {
    const cond = e instanceof Element ? errorOf(e).condition : null;
    if (cond === 'jid-malformed') return roomRefused();
    if (cond === 'item-not-found') showPeek('No one is here yet: the room opens when you join.');
    return;
  }
  const q = child(info, 'query', NS.discoInfo);
  const fields = new Map(children(child(q, 'x', NS.data), 'field').map((f) => [f.getAttribute('var'), text(child(f, 'value')) || '']));
  const n = Number(fields.get('muc#roominfo_occupants'));
  const subject = fields.get('muc#roominfo_subject');
  if (subject && !S.subjectSeen) $('topic').textContent = subject;
  const locked = children(q, 'feature').some((f) => f.getAttribute('var') === 'muc_passwordprotected');
  if (locked) $('password-row').hidden = false;
  showPeek(Number.isFinite(n) ? (n === 0 ? 'No one is here right now.' : n === 1 ? '1 person is here.' : `${n} people are here.`) : '');
}
function showPeek(msg) {
  $('room-peek').textContent = msg;
  $('room-peek').hidden = !msg || $('nick-form').classList.contains('rename');
}

/** The server refuses the room's address itself: no nick will help. */
function roomRefused() {
  S.roomRefused = true;
  S.leaving = true;
  $('open-app').hidden = true;
  $('nick-form').hidden = true;
  $('composer').hidden = true;
  sessionStorage.removeItem(snapKey());
  status(null);
  $('log').replaceChildren(el('div', { class: 'card refused', role: 'alert' },
    el('h2', { text: 'This room name cannot be used' }),
    el('p', { text: `“${S.roomName}” is not a valid room name on this server. Room names may use letters, digits, dots, dashes and underscores — no emoji, spaces or symbols.` }),
    el('p', {}, el('a', { href: '/', text: 'Choose another room name' }))));
}

function leave() {
  S.leaving = true;
  clearTimeout(S.reconnectTimer);
  clearInterval(S.countdown);
  sessionStorage.removeItem(snapKey());
  if (S.conn) {
    if (S.conn.online) S.conn.send(x('presence', { to: `${S.roomJid}/${S.nick}`, type: 'unavailable' }));
    setTimeout(() => S.conn.close(), 200);
  }
  setTimeout(() => { location.href = '/'; }, 400);
}

// -- incoming stanzas -------------------------------------------------------------------------

function onstanza(st) {
  const from = st.getAttribute('from') || '';
  const [bare] = splitJid(from);
  if (st.localName === 'presence' && bare === S.roomJid) onPresence(st);
  else if (st.localName === 'message') onMessage(st);
  saveSoon();
}

function errorOf(st) {
  const e = child(st, 'error');
  if (!e) return { condition: 'undefined-condition', text: '' };
  const cond = [...e.children].find((c) => c.localName !== 'text');
  return { condition: cond ? cond.localName : 'undefined-condition', text: text(child(e, 'text')) || '' };
}

function onPresence(st) {
  const [, nick] = splitJid(st.getAttribute('from'));
  const type = st.getAttribute('type');
  if (type === 'error') {
    // A refused nick change leaves the visitor in the room under the old nick.
    if (S.joined && S.renaming === nick) return renameError(st);
    return joinError(st);
  }
  const xu = child(st, 'x', NS.mucUser);
  const codes = new Set(children(xu, 'status').map((s) => s.getAttribute('code')));
  const item = child(xu, 'item');
  const self = codes.has('110');
  const old = S.occupants.get(nick);
  const pm = !self && S.pms.get(nick);
  if (type === 'unavailable') {
    S.occupants.delete(nick);
    const reason = text(child(item, 'reason'));
    const why = reason ? ` (${reason})` : '';
    if (codes.has('303')) {
      const newNick = item && item.getAttribute('nick');
      if (self) {
        S.nick = newNick;
        S.renaming = null;
        rememberNick(newNick);
      }
      // Known under the new nick at once: its presence that follows is no new arrival.
      if (old && newNick) S.occupants.set(newNick, { ...old, nick: newNick });
      notice(`${nick} is now known as ${newNick}`);
      if (pm) pmMoved(pm, `${nick} is now known as ${newNick}.`, false, newNick);
    } else if (codes.has('307')) {
      notice(self ? `You were kicked out of the room${why}.` : `${nick} was kicked${why}.`, self ? 'bad' : '');
    } else if (codes.has('301')) {
      notice(self ? `You were banned from the room${why}.` : `${nick} was banned${why}.`, self ? 'bad' : '');
    } else if (codes.has('332')) {
      notice('The chat service is shutting down.', 'bad');
    } else if (self) {
      notice('You left the room.');
    } else if (S.joined) {
      noise(nick, 'left');
    }
    if (pm && !codes.has('303')) pmMoved(pm, codes.has('307') ? `${nick} was kicked${why}.` : codes.has('301') ? `${nick} was banned${why}.` : `${nick} left the room.`, true);
    if (self && !codes.has('303')) {
      S.joined = false;
      S.me = null;
      if (codes.has('307') || codes.has('301') || codes.has('321')) {
        S.leaving = true;
        sessionStorage.removeItem(snapKey());
        status('You are no longer in the room.', 'bad', 0, { label: 'Rejoin', run: () => location.reload() });
        $('composer').hidden = true;
      }
    }
    renderOccupants();
    return;
  }
  const occ = {
    nick,
    role: (item && item.getAttribute('role')) || 'participant',
    affiliation: (item && item.getAttribute('affiliation')) || 'none',
    jid: item && item.getAttribute('jid'),
    occupantId: child(st, 'occupant-id', NS.occupantId)?.getAttribute('id') || null,
    show: text(child(st, 'show')),
  };
  S.occupants.set(nick, occ);
  if (pm && pm.gone) {
    const other = pm.occupantId && occ.occupantId && pm.occupantId !== occ.occupantId;
    pmMoved(pm, other ? `Someone else now uses the nickname ${nick}.` : `${nick} is back in the room.`, false);
    pm.occupantId = occ.occupantId;
  }
  if (self) {
    const firstJoin = !S.joined;
    S.nick = nick;
    S.me = occ;
    keepVisitorSecret(st);
    if (codes.has('201')) {
      // A new room, locked until configured: accept the default configuration.
      S.conn.iq({ type: 'set', to: S.roomJid }, x('query', { xmlns: NS.mucOwner }, x('x', { xmlns: NS.data, type: 'submit' })))
        .catch(() => notice('Could not unlock the new room.', 'bad'));
    }
    if (firstJoin) {
      S.joined = true;
      S.joining = false;
      rememberNick(nick);
      document.body.classList.add('joined');
      $('composer').hidden = false;
      $('nick-form').hidden = true;
      status(null);
      if (codes.has('201')) notice('You created this room.');
      // Alone in the room (new, or everyone left): how to bring people in.
      if (!S.everJoined && [...S.occupants.values()].every((o) => o.nick === nick)) shareCard();
      S.everJoined = true;
      // Back after a failed resumption: who left while this page was away?
      for (const [k, c] of S.pms) if (k === c.nick && !c.gone && !S.occupants.has(k)) pmMoved(c, `${k} left the room.`, true);
      if (document.activeElement === document.body || !document.activeElement) $('input').focus();
    } else if (old && old.role !== occ.role) {
      notice(`You are now ${article(occ.role)} ${occ.role}.`);
    }
    renderMessages();
  } else if (!old && S.joined) {
    noise(nick, 'joined');
  } else if (old && old.role !== occ.role && S.joined) {
    notice(`${nick} is now ${article(occ.role)} ${occ.role}.`);
  }
  renderOccupants();
}
const article = (w) => (/^[aeiou]/.test(w) ? 'an' : 'a');

function renameError(st) {
  const { condition, text: msg } = errorOf(st);
  const wanted = S.renaming;
  S.renaming = null;
  const why = {
    conflict: `“${wanted}” is already used in this room.`,
    'not-acceptable': `“${wanted}” is not accepted here.`,
    'jid-malformed': `“${wanted}” cannot be a nickname.`,
    'not-allowed': 'This room does not allow changing nicknames.',
  }[condition] || `The room said no (${msg || condition}).`;
  notice(`You are still ${S.nick}: ${why}`, 'bad');
}

/** The invitation for an empty room: its link to share, and how to open it in an app. */
function shareCard() {
  const url = joinUrl(S.roomName);
  const copy = el('button', { type: 'button', class: 'small copy', text: 'Copy link' });
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(url);
      copy.textContent = 'Copied';
    } catch {
      // No clipboard (an insecure origin, a refusal): select the link for a manual copy.
      getSelection().selectAllChildren(link);
      copy.textContent = 'Press Ctrl+C to copy';
    }
    setTimeout(() => { copy.textContent = 'Copy link'; }, 2500);
  });
  const link = el('a', { href: url, class: 'share-url', text: url });
  $('log').append(el('section', { class: 'card share-room', 'aria-label': 'Invite people' },
    el('p', { class: 'share-lead', text: 'You are the only one here. Invite people with this link:' }),
    el('p', { class: 'share-row' }, link, copy),
    el('p', {}, 'Have an XMPP app (Conversations, Gajim, Dino, Monal…)? ',
      el('a', { href: xmppUri(S.roomJid), class: 'xmpp-join', text: 'Open the room in it' }), ' — ', el('code', { text: xmppUri(S.roomJid) }))));
}

async function joinError(st) {
  const { condition, text: msg } = errorOf(st);
  S.joining = false;
  if (condition === 'jid-malformed' && !msg && await roomAddressRefused()) return roomRefused();
  const said = msg ? ` The server said: “${msg}”` : '';
  const texts = {
    conflict: `The nickname “${S.nick}” is already used in this room.`,
    'not-acceptable': `The nickname “${S.nick}” is not accepted here.`,
    'jid-malformed': `The nickname “${S.nick}” cannot be used: try letters and digits.`,
    forbidden: 'You are banned from this room.',
    'not-authorized': S.password ? 'That password was not accepted.' : 'This room needs a password.',
    'registration-required': S.invite ? 'This invite link has expired, been used up or been revoked.' : 'This room is for members only.',
    'service-unavailable': 'The room is full or not available.',
    'item-not-found': 'This room does not exist, and you cannot create it.',
    'not-allowed': 'You may not create rooms here.',
    'resource-constraint': 'Too many requests; wait a moment and try again.',
  };
  const base = (texts[condition] || `Could not join the room (${condition}).`) + said;
  status(null);
  if (['conflict', 'not-acceptable', 'jid-malformed'].includes(condition)) {
    askNick(S.nick, base, condition === 'conflict' ? suggestNick(S.nick) : null);
  } else if (condition === 'not-authorized') {
    // XEP-0045 §7.2.6: a password-protected room. Ask for it beside the nick.
    $('password-row').hidden = false;
    askNick(S.nick, base, null);
    $('password-input').value = '';
    $('password-input').focus();
  } else {
    askNick(S.nick, base, null);
  }
}

/** Is it the room's address, not the nick, that the server refuses? (Both come back as
 *  jid-malformed; a question to the room itself tells which.) */
async function roomAddressRefused() {
  try {
    await S.conn.iq({ type: 'get', to: S.roomJid }, x('query', { xmlns: NS.discoInfo }), 8000);
    return false;
  } catch (e) {
    return e instanceof Element && errorOf(e).condition === 'jid-malformed';
  }
}

function stanzaIdOf(st) {
  for (const s of children(st, 'stanza-id', NS.sid)) if (s.getAttribute('by') === S.roomJid) return s.getAttribute('id');
  return null;
}

/** The body less the fallback text for `forNs` (XEP-0428 ranges, in code points). */
function stripFallback(st, body, forNs) {
  const fb = children(st, 'fallback', NS.fallback).find((f) => f.getAttribute('for') === forNs);
  if (!fb || body === null) return body;
  const b = child(fb, 'body');
  if (!b) return '';
  const cps = Array.from(body);
  const start = Number(b.getAttribute('start') ?? 0), end = Number(b.getAttribute('end') ?? cps.length);
  return (cps.slice(0, start).join('') + cps.slice(end).join('')).replace(/^\n/, '');
}

function onMessage(st) {
  const from = st.getAttribute('from') || '';
  const [bare, nick] = splitJid(from);
  if (bare !== S.roomJid) return;
  const type = st.getAttribute('type');
  if (type === 'error') {
    const { condition, text: msg } = errorOf(st);
    if (nick) return pmFailed(st.getAttribute('id'), msg || condition.replace(/-/g, ' '));
    const p = S.pending.get(st.getAttribute('id'));
    if (p) {
      p.failed = true;
      render(p);
    }
    notice(`Your message was not delivered: ${msg || condition}.`, 'bad');
    return;
  }
  let body = text(child(st, 'body'));
  if (type !== 'groupchat') return nick && body !== null && onPrivate(st, nick, body);
  const subject = child(st, 'subject');
  if (subject && body === null) return setTopic(text(subject) || '', nick, !!child(st, 'delay', NS.delay));
  const occId = child(st, 'occupant-id', NS.occupantId)?.getAttribute('id') || null;
  const key = occId || nick;
  const retract = child(st, 'retract', NS.retract);
  if (retract) {
    const target = S.byStanzaId.get(retract.getAttribute('id'));
    const moderated = child(retract, 'moderated', NS.moderate);
    // Moderators retract through the room; anyone else only their own messages.
    if (target && (moderated ? !nick : target.key === key)) {
      target.retracted = true;
      target.retractedBy = moderated ? 'a moderator' : null;
      target.reason = text(child(retract, 'reason')) || text(child(moderated, 'reason'));
      render(target);
    }
    return;
  }
  const reactions = child(st, 'reactions', NS.reactions);
  if (reactions) {
    const target = S.byStanzaId.get(reactions.getAttribute('id'));
    if (target) {
      for (const set of target.reactions.values()) set.delete(key);
      for (const r of children(reactions, 'reaction')) {
        const e = text(r);
        if (!e) continue;
        if (!target.reactions.has(e)) target.reactions.set(e, new Map());
        target.reactions.get(e).set(key, nick);
      }
      for (const [e, set] of target.reactions) if (!set.size) target.reactions.delete(e);
      render(target);
    }
    return;
  }
  const tomb = child(st, 'retracted', NS.retract);
  if (body === null && !tomb) return;
  const stanzaId = stanzaIdOf(st);
  if (stanzaId && S.byStanzaId.has(stanzaId)) return; // already shown (history after a rejoin)
  const id = child(st, 'origin-id', NS.sid)?.getAttribute('id') || st.getAttribute('id');
  const delay = child(st, 'delay', NS.delay);
  const replace = child(st, 'replace', NS.correct);
  if (replace) {
    const orig = S.byKeyId.get(key + '\n' + replace.getAttribute('id'));
    if (orig && !orig.retracted) {
      orig.body = stripFallback(st, body, NS.reply);
      orig.edited = true;
      orig.pendingEdit = false;
      render(orig);
      if (orig === S.editing) cancelContext();
      return;
    }
  }
  if (nick === S.nick && S.pending.has(id)) {
    const p = S.pending.get(id);
    S.pending.delete(id);
    p.pending = false;
    p.stanzaId = stanzaId;
    p.key = key;
    p.occupantId = occId;
    index(p);
    render(p);
    return;
  }
  const replyEl = child(st, 'reply', NS.reply);
  const m = {
    id,
    stanzaId,
    nick,
    key,
    occupantId: occId,
    body: replyEl ? stripFallback(st, body, NS.reply) : body,
    time: delay ? Date.parse(delay.getAttribute('stamp')) || Date.now() : Date.now(),
    delayed: !!delay,
    replyTo: replyEl ? { id: replyEl.getAttribute('id'), to: replyEl.getAttribute('to') } : null,
    reactions: new Map(),
    retracted: !!tomb,
    oob: oobOf(st),
  };
  addMessage(m);
  if (m.delayed) return;
  if (S.view) {
    S.roomUnread++;
    renderConvs();
  }
  if (document.hidden) countUnread();
}

function countUnread() {
  S.unread++;
  document.title = `(${S.unread}) #${S.roomName} — Salon`;
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && S.roomName) {
    S.unread = 0;
    document.title = '#' + S.roomName + ' — Salon';
  }
});

const oobOf = (st) => text(child(child(st, 'x', NS.oob), 'url'))?.trim() || null;

function setTopic(subject, nick, delayed) {
  const changed = S.subjectSeen && subject !== S.subject;
  S.subject = subject;
  S.subjectSeen = true;
  $('topic').textContent = subject;
  $('topic').title = subject;
  if (changed && !delayed) notice(subject ? `${nick || 'The room'} set the topic: ${subject}` : `${nick || 'The room'} cleared the topic.`);
}

// -- the message log --------------------------------------------------------------------------

function index(m) {
  if (m.stanzaId) S.byStanzaId.set(m.stanzaId, m);
  if (m.id) S.byKeyId.set(m.key + '\n' + m.id, m);
}

function addMessage(m) {
  S.messages.push(m);
  index(m);
  const log = $('log');
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  // History arrives oldest first; later live messages go at the end.
  log.append(render(m));
  if (S.messages.length > 1000) {
    const old = S.messages.shift();
    old.node?.remove();
  }
  if (stick || m.nick === S.nick) log.scrollTop = log.scrollHeight;
}

function mentions(body) {
  if (!S.nick || !body) return false;
  const n = S.nick.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}_])${n}($|[^\\p{L}\\p{N}_])`, 'iu').test(body);
}

function richText(body) {
  const frag = document.createDocumentFragment();
  const re = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
  let last = 0;
  for (const m of body.matchAll(re)) {
    frag.append(body.slice(last, m.index));
    frag.append(el('a', { href: m[0], target: '_blank', rel: 'noopener noreferrer nofollow', text: m[0] }));
    last = m.index + m[0].length;
  }
  frag.append(body.slice(last));
  return frag;
}

// -- shared files (XEP-0363 uploads, XEP-0066 links) -------------------------------------------

const IMAGE_EXT = /\.(png|jpe?g|gif|webp|avif|bmp|svg)$/i;
/** The URL if it is an absolute http(s) URL, else null. */
function httpUrl(s) {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}
function fileName(url) {
  const seg = new URL(url).pathname.split('/').filter(Boolean).pop() || url;
  try {
    return decodeURIComponent(seg);
  } catch {
    return seg;
  }
}
/** A message that is a shared file: its body is the oob URL, or a lone image URL. */
function attachmentOf(m) {
  const body = (m.body || '').trim();
  if (!body || /\s/.test(body)) return null;
  const url = httpUrl(body);
  if (!url) return null;
  const path = new URL(url).pathname;
  const image = IMAGE_EXT.test(path);
  if (m.oob && m.oob === body) return { url, name: fileName(url), image };
  return image ? { url, name: fileName(url), image } : null;
}
function fileLink(f) {
  return el('p', { class: 'text file' }, el('a', { href: f.url, target: '_blank', rel: 'noopener noreferrer nofollow', download: '', text: '📄 ' + f.name, title: f.url }));
}
function attachmentNode(f) {
  if (!f.image) return fileLink(f);
  const img = el('img', { src: f.url, alt: f.name, loading: 'lazy', decoding: 'async' });
  const a = el('a', { class: 'attachment', href: f.url, target: '_blank', rel: 'noopener noreferrer nofollow', title: f.name }, img);
  img.addEventListener('load', () => {
    const log = $('log');
    if (log.scrollHeight - log.scrollTop - log.clientHeight < img.clientHeight + 80) log.scrollTop = log.scrollHeight;
  });
  img.addEventListener('error', () => a.replaceWith(fileLink(f)));
  return a;
}

const fmtSize = (n) => (n >= 1048576 ? `${+(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} KB` : `${n} bytes`);
const UPLOAD_ERRORS = {
  'not-allowed': 'uploads are not allowed here',
  forbidden: 'uploads are not allowed here',
  'resource-constraint': 'upload limit reached; try again later',
  'service-unavailable': 'file sharing is not available on this server',
  'feature-not-implemented': 'file sharing is not available on this server',
};

/** One line in the composer for an upload: name, progress, then the outcome. */
function uploadLine(name) {
  const bar = el('progress', { max: '1', 'aria-label': `Uploading ${name}` });
  const msg = el('span', { class: 'upload-text', text: `Uploading ${name}…` });
  const close = el('button', { type: 'button', class: 'icon', 'aria-label': 'Dismiss', text: '✕' });
  const line = el('div', { class: 'upload' }, msg, bar, close);
  close.addEventListener('click', () => line.remove());
  close.hidden = true;
  $('uploads').append(line);
  $('uploads').hidden = false;
  return {
    progress: (f) => { bar.value = f; },
    fail: (why) => {
      line.classList.add('bad');
      bar.remove();
      msg.textContent = `Could not send ${name}: ${why}.`;
      msg.setAttribute('role', 'alert');
      close.hidden = false;
    },
    done: () => line.remove(),
  };
}

function extFor(type) {
  const m = /^image\/(png|jpeg|gif|webp|avif|bmp)$/.exec(type || '');
  return m ? (m[1] === 'jpeg' ? 'jpg' : m[1]) : 'bin';
}

async function uploadFile(file) {
  const type = file.type || 'application/octet-stream';
  const name = (file.name || `pasted-${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}.${extFor(type)}`).replace(/[\/\\]/g, '_');
  const ui = uploadLine(name);
  const pm = S.view;
  if (!S.cfg.upload) return ui.fail('file sharing is not available on this server');
  if (!S.joined || !S.conn) return ui.fail('you are not in the room');
  let slot;
  try {
    const res = await S.conn.iq({ type: 'get', to: S.cfg.upload },
      x('request', { xmlns: NS.upload, filename: name, size: String(file.size), 'content-type': type }));
    slot = child(res, 'slot', NS.upload);
  } catch (e) {
    if (!(e instanceof Element)) return ui.fail(e.message || 'no answer');
    const err = errorOf(e);
    const max = text(child(child(child(e, 'error'), 'file-too-large', NS.upload), 'max-file-size'));
    if (max || err.condition === 'not-acceptable' && /large|size/i.test(err.text)) return ui.fail(`file too large${max ? ': max ' + fmtSize(Number(max)) : ''}`);
    return ui.fail(err.text || UPLOAD_ERRORS[err.condition] || err.condition);
  }
  const put = child(slot, 'put'), get = child(slot, 'get');
  const putUrl = httpUrl(put?.getAttribute('url') || ''), getUrl = httpUrl(get?.getAttribute('url') || '');
  if (!putUrl || !getUrl) return ui.fail('the server gave no upload address');
  try {
    await new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', putUrl);
      for (const h of children(put, 'header')) {
        const n = h.getAttribute('name') || '';
        if (/^(authorization|cookie|expires)$/i.test(n)) xhr.setRequestHeader(n, text(h).replace(/[\r\n]/g, ''));
      }
      xhr.setRequestHeader('Content-Type', type);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) ui.progress(e.loaded / e.total); };
      xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve() : reject(new Error(`the upload failed (HTTP ${xhr.status}${xhr.status === 413 ? ', file too large' : ''})`)));
      xhr.onerror = () => reject(new Error('the upload failed (network error)'));
      xhr.send(file);
    });
  } catch (e) {
    return ui.fail(e.message);
  }
  ui.done();
  if (!S.joined) return notice(`${name} was uploaded but could not be shared: you are not in the room.`, 'bad');
  if (pm) return pm.gone ? notice(`${name} was uploaded but not shared: ${pm.nick} has left the room.`, 'bad', pm.log) : sendPm(pm, getUrl, getUrl);
  const id = newId();
  S.conn.send(x('message', { to: S.roomJid, type: 'groupchat', id }, x('body', {}, t(getUrl)),
    x('x', { xmlns: NS.oob }, x('url', {}, t(getUrl))), x('origin-id', { xmlns: NS.sid, id })));
  const m = { id, stanzaId: null, nick: S.nick, key: myKey(), occupantId: S.me?.occupantId, body: getUrl, oob: getUrl, time: Date.now(), delayed: false, replyTo: null, reactions: new Map(), pending: true };
  S.pending.set(id, m);
  addMessage(m);
}

function uploadAll(files) {
  for (const f of files) uploadFile(f);
}

function nickSpan(nick, cls = 'nick') {
  const span = el('span', { class: cls, text: nick });
  const c = cachedColor(nick, dark());
  if (c) span.style.color = c;
  else nickColor(nick, dark()).then((col) => { span.style.color = col; });
  return span;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function isModerator() {
  return S.me && S.me.role === 'moderator';
}

function render(m) {
  const own = m.pm ? !!m.own : m.nick === S.nick && (!m.occupantId || !S.me || !S.me.occupantId || m.occupantId === S.me.occupantId);
  const body = m.body || '';
  const me = body.startsWith('/me ');
  const cls = ['msg'];
  if (own) cls.push('own');
  if (m.pending) cls.push('pending');
  if (m.failed) cls.push('failed');
  if (m.retracted) cls.push('retracted');
  if (!own && !m.pm && mentions(body)) cls.push('mention');
  if (me) cls.push('action');
  const date = new Date(m.time);
  const node = el('article', { class: cls.join(' '), tabindex: '-1', 'aria-label': `${m.nick}, ${dateFmt.format(date)}` });
  if (m.stanzaId) node.dataset.stanzaId = m.stanzaId;
  const meta = el('div', { class: 'meta' }, nickSpan(m.nick),
    el('time', { datetime: date.toISOString(), title: dateFmt.format(date), text: m.delayed && Date.now() - m.time > 86400000 ? dateFmt.format(date) : timeFmt.format(date) }),
    m.edited && !m.retracted ? el('span', { class: 'edited', text: '(edited)' }) : null,
    m.pending ? el('span', { class: 'edited', text: m.failed ? 'not sent' : 'sending…' }) : null);
  node.append(meta);
  if (m.retracted) {
    node.append(el('p', { class: 'text', text: `This message was removed${m.retractedBy ? ' by ' + m.retractedBy : ''}${m.reason ? ': ' + m.reason : '.'}` }));
  } else {
    if (m.replyTo) {
      const target = S.byStanzaId.get(m.replyTo.id);
      const who = target ? target.nick : splitJid(m.replyTo.to || '')[1] || '…';
      const what = target ? (target.retracted ? '(removed)' : target.body.split('\n')[0].slice(0, 140)) : '(an earlier message)';
      node.append(el('blockquote', { class: 'quote', onclick: () => target?.node?.scrollIntoView({ block: 'center', behavior: 'smooth' }) }, nickSpan(who), ' ', what));
    }
    const file = attachmentOf(m);
    if (file) {
      node.append(attachmentNode(file));
    } else {
      const p = el('p', { class: 'text' });
      if (me) p.append(nickSpan(m.nick, 'nick'), ' ', richText(body.slice(4)));
      else p.append(richText(body));
      node.append(p);
    }
    if (m.error) node.append(el('p', { class: 'why', text: `Not delivered: ${m.error}.` }));
    if (m.reactions?.size) {
      const mine = myKey();
      node.append(el('div', { class: 'reactions' }, [...m.reactions].map(([emoji, who]) => el('button', {
        type: 'button', class: 'chip', 'aria-pressed': who.has(mine) ? 'true' : 'false',
        title: [...who.values()].join(', '), 'aria-label': `${emoji} ${who.size}: ${[...who.values()].join(', ')}`,
        onclick: () => toggleReaction(m, emoji),
      }, emoji, ' ', el('span', { text: String(who.size) })))));
    }
    const actions = el('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Message actions' });
    const can = m.stanzaId && S.joined;
    if (can) actions.append(el('button', { type: 'button', 'aria-label': `Reply to ${m.nick}`, title: 'Reply', text: '↩', onclick: () => startReply(m) }));
    if (can) actions.append(el('button', { type: 'button', 'aria-label': 'React', title: 'React', text: '☺', onclick: (e) => openPicker(m, e.currentTarget) }));
    if (own && !m.pending) actions.append(el('button', { type: 'button', 'aria-label': 'Edit', title: 'Edit', text: '✎', onclick: () => startEdit(m) }));
    if (can && isModerator()) actions.append(el('button', { type: 'button', 'aria-label': `Remove message from ${m.nick}`, title: 'Remove (moderator)', text: '🗑', onclick: () => retract(m) }));
    if (actions.children.length && !m.pm) node.append(actions);
  }
  // One tab stop for the whole log: its buttons and links are reached with the arrow keys.
  for (const b of node.querySelectorAll('button, a[href]')) b.tabIndex = -1;
  if (m.node) m.node.replaceWith(node);
  m.node = node;
  return node;
}

/** Keyboard in a message log (one roving focus): Up and Down (Home, End) move between
 *  messages, Right and Left through the focused message's links and buttons, Escape back. */
function logKeys(e) {
  const log = e.target.closest('.log');
  if (!log || e.altKey || e.ctrlKey || e.metaKey) return;
  const cur = document.activeElement;
  const art = cur.closest('article');
  const msgs = [...log.querySelectorAll(':scope > article')];
  if (!msgs.length) return;
  let to = null;
  if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
    const i = art ? msgs.indexOf(art) : msgs.length;
    to = msgs[Math.max(0, Math.min(msgs.length - 1, i + (e.key === 'ArrowUp' ? -1 : 1)))];
  } else if (e.key === 'Home' || e.key === 'End') {
    to = e.key === 'Home' ? msgs[0] : msgs.at(-1);
  } else if ((e.key === 'ArrowRight' || e.key === 'ArrowLeft') && art) {
    const stops = [...art.querySelectorAll('button, a[href]')];
    const j = stops.indexOf(cur);
    if (e.key === 'ArrowRight') to = stops[j + 1] || stops[0] || null;
    else to = j <= 0 ? art : stops[j - 1];
  } else if (e.key === 'Escape' && art) {
    to = log;
  }
  if (!to) return;
  e.preventDefault();
  to.focus();
}

function renderMessages() {
  for (const m of S.messages) render(m);
}

function notice(msg, kind = '', log = $('log')) {
  log.append(el('p', { class: 'notice ' + kind, text: msg }));
  log.scrollTop = log.scrollHeight;
}

/** Joins and leaves, folded into one line while nothing else is said. */
function noise(nick, what) {
  const log = $('log');
  let line = log.lastElementChild;
  if (!line || !line.classList.contains('noise')) {
    line = el('p', { class: 'notice noise' });
    line.events = new Map();
    log.append(line);
  }
  const prev = line.events.get(nick);
  let now = what;
  if (prev === 'joined' && what === 'left') now = 'joined and left';
  else if (prev === 'left' && what === 'joined') now = 'came back';
  else if (prev === 'joined and left' && what === 'joined') now = 'joined';
  else if (prev === 'came back' && what === 'left') now = 'left';
  line.events.delete(nick);
  line.events.set(nick, now);
  const parts = [...line.events].map(([n, w]) => `${n} ${w}`);
  line.textContent = parts.length > 4 ? `${parts.slice(0, 3).join(', ')} and ${parts.length - 3} more changes` : parts.join(', ');
  line.title = parts.join('\n');
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  if (stick) log.scrollTop = log.scrollHeight;
}

// -- occupants --------------------------------------------------------------------------------

function renderOccupants() {
  const list = $('occupant-list');
  const occs = [...S.occupants.values()].sort((a, b) => (ROLE_ORDER[a.role] ?? 9) - (ROLE_ORDER[b.role] ?? 9) || a.nick.localeCompare(b.nick));
  $('occupant-count').textContent = String(occs.length);
  // One heading and one list per role: a list holds only its items.
  const groups = [];
  let role = null;
  for (const o of occs) {
    if (o.role !== role) {
      role = o.role;
      groups.push(el('h3', { class: 'role', text: ROLE_TITLE[role] || role }), el('ul'));
    }
    const mine = o.nick === S.nick;
    const li = el('li', { class: 'occupant' + (mine ? ' me' : '') },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      mine ? nickSpan(o.nick) : el('button', { type: 'button', class: 'who', title: 'Private message', 'aria-label': `Private message to ${o.nick}`, onclick: () => showView(pmWith(o.nick)) },
        nickSpan(o.nick), el('span', { class: 'pm-icon', 'aria-hidden': 'true', text: '✉\ufe0e' })),
      o.affiliation === 'owner' || o.affiliation === 'admin' ? el('span', { class: 'badge', text: o.affiliation }) : null,
      mine ? el('span', { class: 'badge', text: 'you' }) : null,
      mine ? el('button', { type: 'button', class: 'icon rename', title: 'Change your nickname', onclick: () => askNick(S.nick, null, null, true) },
        el('span', { 'aria-hidden': 'true', text: '✎' }), el('span', { class: 'visually-hidden', text: 'Change your nickname' })) : null);
    const dot = li.querySelector('.dot');
    nickColor(o.nick, dark()).then((c) => { dot.style.background = c; });
    li.setAttribute('aria-label', `${o.nick}, ${o.role}${o.affiliation !== 'none' ? ', ' + o.affiliation : ''}${mine ? ', you' : ''}`);
    if (isModerator() && !mine && ROLE_ORDER[o.role] >= ROLE_ORDER.participant - (S.me.affiliation === 'owner' || S.me.affiliation === 'admin' ? 1 : 0)) {
      li.append(el('span', { class: 'mod' },
        el('button', { type: 'button', class: 'small', text: 'Kick', 'aria-label': `Kick ${o.nick}`, onclick: () => kick(o) }),
        o.jid ? el('button', { type: 'button', class: 'small', text: 'Ban', 'aria-label': `Ban ${o.nick}`, onclick: () => ban(o) }) : null));
    }
    groups.at(-1).append(li);
  }
  list.replaceChildren(...groups);
}

// -- private conversations (XEP-0045 §7.5) ----------------------------------------------------
// One log per occupant beside the room's, which stays the main view; a tab bar switches.

/** The conversation with `nick`, opened in the background if there is none. */
function pmWith(nick, key = nick) {
  let c = S.pms.get(key);
  if (c) return c;
  const head = el('p', { class: 'notice' });
  c = { nick, gone: !S.occupants.has(nick), occupantId: S.occupants.get(nick)?.occupantId, unread: 0, items: [], head,
    log: el('section', { class: 'log', role: 'log', tabindex: '0', hidden: true }, head) };
  $('occupants').before(c.log);
  S.pms.set(key, c);
  labelPm(c);
  return c;
}

function labelPm(c) {
  c.log.setAttribute('aria-label', `Private conversation with ${c.nick}`);
  c.head.textContent = `Private conversation with ${c.nick}. The room does not see it.`;
  renderConvs();
}

function addPm(c, m) {
  c.items.push(m);
  const log = c.log;
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  log.append(m.note ? el('p', { class: 'notice', text: m.note }) : render(m));
  if (stick || m.own) log.scrollTop = log.scrollHeight;
  saveSoon();
}

function sendPm(c, body, oob) {
  const id = newId();
  S.conn.send(x('message', { to: `${S.roomJid}/${c.nick}`, type: 'chat', id }, x('body', {}, t(body)),
    x('x', { xmlns: NS.mucUser }), oob && x('x', { xmlns: NS.oob }, x('url', {}, t(oob)))));
  addPm(c, { id, pm: true, own: true, nick: S.nick, body, oob, time: Date.now() });
}

function onPrivate(st, nick, body) {
  const c = pmWith(nick);
  const delay = child(st, 'delay', NS.delay);
  addPm(c, { pm: true, nick, body, oob: oobOf(st), delayed: !!delay, time: (delay && Date.parse(delay.getAttribute('stamp'))) || Date.now() });
  if (S.view !== c) {
    if (!c.unread++ && $('status').hidden) status(`Private message from ${nick}.`, 'pm', 6000, { label: 'Read it', run: () => showView(c) });
    renderConvs();
  }
  if (document.hidden) countUnread();
}

/** The room refused a private message: not allowed here (XEP-0045 §7.5), no such occupant… */
function pmFailed(id, why) {
  for (const c of S.pms.values()) {
    const m = c.items.find((i) => i.own && i.id === id);
    if (m) {
      m.failed = true;
      m.error = why;
      return render(m);
    }
  }
  notice(`A private message was not delivered: ${why}.`, 'bad', viewLog());
}

/** `/msg NICK text`; a nick may hold spaces, so the longest one present wins. */
function msgCommand(rest) {
  const nick = [...S.occupants.keys(), ...S.pms.keys()].sort((a, b) => b.length - a.length)
    .find((n) => rest === n || (rest.startsWith(n) && /\s/.test(rest[n.length]))) ?? rest.split(/\s/)[0];
  if (nick === S.nick || (!S.occupants.has(nick) && !S.pms.has(nick))) {
    return notice(nick ? `No one else called “${nick}” is in the room.` : 'Type /msg, a nickname, then your message.', 'bad', viewLog());
  }
  const c = pmWith(nick);
  const body = rest.slice(nick.length).trim();
  showView(c);
  if (body && !c.gone) sendPm(c, body);
  return true;
}

/** The occupant changed nick (XEP-0045 §7.6), left, or came back. */
function pmMoved(c, note, gone = c.gone, nick = c.nick) {
  const other = c.nick !== nick && S.pms.get(nick);
  // An older conversation with someone else of that nick stays, under another key.
  S.pms = new Map([...S.pms].map(([k, v]) => (v === c ? [nick, c] : v === other ? [nick + '\n' + newId(), v] : [k, v])));
  addPm(c, { note });
  c.gone = gone;
  c.nick = nick;
  labelPm(c);
}

function closePm(c) {
  for (const [k, v] of S.pms) if (v === c) S.pms.delete(k);
  c.log.remove();
  showView(S.view === c ? null : S.view);
  ($('convs').hidden ? $('input') : $('convs').firstElementChild).focus();
}

const viewLog = () => (S.view ? S.view.log : $('log'));

function showView(c) {
  const from = viewLog();
  from.keep = from.scrollHeight - from.scrollTop - from.clientHeight < 80 ? null : from.scrollTop;
  S.view = c || null;
  $('log').hidden = !!c;
  for (const o of S.pms.values()) o.log.hidden = o !== c;
  if (c) c.unread = 0;
  else S.roomUnread = 0;
  if ($('status').dataset.kind === 'pm') status(null);
  cancelContext();
  renderConvs();
  closeDrawer();
  const log = viewLog();
  log.scrollTop = log.keep ?? log.scrollHeight;
  if (!$('composer').hidden && !$('input').disabled) $('input').focus();
  saveSoon();
}

/** The tab bar, and the composer for the conversation in view (which may have left). */
function renderConvs() {
  const bar = $('convs');
  const focused = bar.contains(document.activeElement) && document.activeElement.dataset.k;
  const count = (n) => n > 0 && el('span', { class: 'unread' }, String(n), el('span', { class: 'visually-hidden', text: ' unread' }));
  bar.hidden = !S.pms.size;
  bar.replaceChildren(
    el('button', { type: 'button', class: 'tab', 'data-k': '', 'aria-current': !S.view && 'true', onclick: () => showView(null) }, '#' + S.roomName, count(S.roomUnread)),
    ...[...S.pms].map(([k, c]) => el('span', { class: 'pm-tab' + (c.gone ? ' gone' : '') },
      el('button', { type: 'button', class: 'tab', 'data-k': k, 'aria-current': S.view === c && 'true', onclick: () => showView(c) },
        nickSpan(c.nick), c.gone && el('span', { class: 'visually-hidden', text: ' (left the room)' }), count(c.unread)),
      el('button', { type: 'button', class: 'icon', 'data-k': '\n' + k, 'aria-label': `Close the conversation with ${c.nick}`, text: '✕', onclick: () => closePm(c) }))));
  if (focused !== false) bar.querySelector(`[data-k="${CSS.escape(focused)}"]`)?.focus();
  const v = S.view;
  const label = !v ? 'Message' : v.gone ? `${v.nick} has left the room` : `Private message to ${v.nick}`;
  $('input').placeholder = $('input-label').textContent = label;
  $('input').disabled = $('send').disabled = $('attach').disabled = !!v?.gone;
}

// -- sending --------------------------------------------------------------------------------

function myKey() {
  return (S.me && S.me.occupantId) || S.nick;
}

function sendMessage(body) {
  if (S.editing) {
    const m = S.editing;
    if (body !== m.body) {
      const id = newId();
      S.conn.send(x('message', { to: S.roomJid, type: 'groupchat', id },
        x('body', {}, t(body)), x('replace', { xmlns: NS.correct, id: m.id }), x('origin-id', { xmlns: NS.sid, id })));
    }
    cancelContext();
    return;
  }
  const id = newId();
  let full = body;
  const extra = [];
  let replyTo = null;
  if (S.reply) {
    const r = S.reply;
    const quote = `> ${r.nick}: ${r.body.split('\n')[0].slice(0, 100)}\n`;
    full = quote + body;
    replyTo = { id: r.stanzaId, to: `${S.roomJid}/${r.nick}` };
    extra.push(x('reply', { xmlns: NS.reply, to: replyTo.to, id: r.stanzaId }),
      x('fallback', { xmlns: NS.fallback, for: NS.reply }, x('body', { start: 0, end: Array.from(quote).length })));
    cancelContext();
  }
  S.conn.send(x('message', { to: S.roomJid, type: 'groupchat', id }, x('body', {}, t(full)), ...extra, x('origin-id', { xmlns: NS.sid, id })));
  const m = { id, stanzaId: null, nick: S.nick, key: myKey(), occupantId: S.me?.occupantId, body, time: Date.now(), delayed: false, replyTo, reactions: new Map(), pending: true };
  S.pending.set(id, m);
  addMessage(m);
}

function toggleReaction(m, emoji) {
  const mine = myKey();
  const set = new Set([...m.reactions].filter(([, who]) => who.has(mine)).map(([e]) => e));
  if (set.has(emoji)) set.delete(emoji);
  else set.add(emoji);
  S.conn.send(x('message', { to: S.roomJid, type: 'groupchat', id: newId() },
    x('reactions', { xmlns: NS.reactions, id: m.stanzaId }, [...set].map((e) => x('reaction', {}, t(e)))),
    x('store', { xmlns: NS.hints })));
}

function openPicker(m, anchor) {
  const p = $('reaction-picker');
  p.replaceChildren(...REACTIONS.map((e) => el('button', { type: 'button', role: 'menuitem', text: e, 'aria-label': `React with ${e}`, onclick: () => { closePicker(); toggleReaction(m, e); } })));
  p.hidden = false;
  const r = anchor.getBoundingClientRect();
  p.style.top = Math.max(8, r.top - p.offsetHeight - 6) + 'px';
  p.style.left = Math.max(8, Math.min(innerWidth - p.offsetWidth - 8, r.right - p.offsetWidth)) + 'px';
  p.returnTo = anchor;
  p.firstElementChild.focus();
}
function closePicker() {
  const p = $('reaction-picker');
  if (p.hidden) return;
  p.hidden = true;
  p.returnTo?.focus();
}
document.addEventListener('click', (e) => { if (!e.target.closest('#reaction-picker, .actions')) closePicker(); });

function setContext(label) {
  $('context').hidden = false;
  $('context-text').replaceChildren(...label);
  $('input').focus();
}
function startReply(m) {
  S.editing = null;
  S.reply = m;
  setContext(['Replying to ', nickSpan(m.nick), ': ', m.body.split('\n')[0].slice(0, 80)]);
}
function startEdit(m) {
  S.reply = null;
  S.editing = m;
  $('input').value = m.body;
  autosize();
  setContext(['Editing your message']);
}
function cancelContext() {
  const wasEditing = !!S.editing;
  S.reply = null;
  S.editing = null;
  $('context').hidden = true;
  if (wasEditing) {
    $('input').value = '';
    autosize();
  }
}

async function adminIq(payload, what) {
  try {
    await S.conn.iq({ type: 'set', to: S.roomJid }, payload);
  } catch (e) {
    const err = e instanceof Element ? errorOf(e) : { condition: e.message, text: '' };
    notice(`Could not ${what}: ${err.text || err.condition}.`, 'bad');
  }
}
function kick(o) {
  const reason = prompt(`Kick ${o.nick}? Reason (optional):`, '');
  if (reason === null) return;
  adminIq(x('query', { xmlns: NS.mucAdmin }, x('item', { nick: o.nick, role: 'none' }, reason ? x('reason', {}, t(reason)) : null)), `kick ${o.nick}`);
}
function ban(o) {
  const reason = prompt(`Ban ${o.nick} from the room? Reason (optional):`, '');
  if (reason === null) return;
  adminIq(x('query', { xmlns: NS.mucAdmin }, x('item', { jid: splitJid(o.jid)[0], affiliation: 'outcast' }, reason ? x('reason', {}, t(reason)) : null)), `ban ${o.nick}`);
}
function retract(m) {
  if (!confirm(`Remove this message from ${m.nick} for everyone?`)) return;
  adminIq(x('moderate', { xmlns: NS.moderate, id: m.stanzaId }, x('retract', { xmlns: NS.retract }), x('reason', {})), 'remove the message');
}

function autosize() {
  const i = $('input');
  i.style.height = 'auto';
  i.style.height = Math.min(i.scrollHeight, 160) + 'px';
}

function closeDrawer() {
  if (!document.body.classList.contains('show-occupants')) return;
  document.body.classList.remove('show-occupants');
  $('toggle-occupants').setAttribute('aria-expanded', 'false');
}

let composerReady = false;
function setupComposer() {
  if (composerReady) return;
  composerReady = true;
  setupNickForm();
  const input = $('input');
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const body = input.value.replace(/\s+$/, '');
    if (!body.trim() || !S.joined) return;
    const msg = /^\/msg(\s+|$)/i.exec(body);
    const nick = /^\/nick(\s+|$)/i.exec(body);
    if (nick) {
      const wanted = body.slice(nick[0].length).trim();
      if (wanted) rename(wanted);
      else askNick(S.nick, null, null, true);
    } else if (msg) {
      if (!msgCommand(body.slice(msg[0].length))) return;
    } else if (S.view) {
      if (S.view.gone) return;
      sendPm(S.view, body);
    } else {
      sendMessage(body);
    }
    input.value = '';
    autosize();
    input.focus();
  });
  input.addEventListener('input', autosize);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    } else if (e.key === 'ArrowUp' && !input.value && !S.view) {
      const last = [...S.messages].reverse().find((m) => m.nick === S.nick && !m.pending && !m.retracted && (!m.occupantId || m.key === myKey()));
      if (last) {
        e.preventDefault();
        startEdit(last);
      }
    } else if (e.key === 'Escape') {
      cancelContext();
    }
  });
  $('context-cancel').addEventListener('click', cancelContext);
  $('attach').hidden = !S.cfg.upload;
  $('attach').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = '';
    uploadAll(files);
    input.focus();
  });
  input.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (!files.length || !S.cfg.upload) return;
    e.preventDefault();
    uploadAll(files);
  });
  $('chat').addEventListener('dragover', (e) => {
    if (S.cfg.upload && S.joined && e.dataTransfer?.types?.includes('Files')) e.preventDefault();
  });
  $('chat').addEventListener('drop', (e) => {
    const files = [...(e.dataTransfer?.files || [])];
    if (!files.length || !S.cfg.upload || !S.joined) return;
    e.preventDefault();
    uploadAll(files);
  });
  $('reaction-picker').addEventListener('keydown', (e) => {
    const items = [...$('reaction-picker').children];
    const i = items.indexOf(document.activeElement);
    if (e.key === 'Escape') closePicker();
    else if (e.key === 'ArrowRight' || e.key === 'ArrowDown') items[(i + 1) % items.length].focus();
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') items[(i - 1 + items.length) % items.length].focus();
    else return;
    e.preventDefault();
  });
  $('toggle-occupants').addEventListener('click', () => {
    const open = document.body.classList.toggle('show-occupants');
    $('toggle-occupants').setAttribute('aria-expanded', String(open));
  });
  document.querySelector('.body').addEventListener('click', (e) => { if (e.target.closest('.log')) closeDrawer(); });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeDrawer(); });
  $('leave').addEventListener('click', leave);
  document.querySelector('.body').addEventListener('keydown', logKeys);
}

// -- surviving a reload (XEP-0198 resumption, page state in sessionStorage) -------------------

const snapKey = () => 'salon:room:' + S.roomJid;
let saveTimer = null;
function saveSoon() {
  if (saveTimer) return;
  saveTimer = setTimeout(() => { saveTimer = null; save(); }, 300);
}
function save() {
  if (!S.roomJid || S.leaving || !S.nick) return;
  const keep = S.messages.slice(-KEEP_MESSAGES).map((m) => ({
    ...m, node: undefined, reactions: [...m.reactions].map(([e, who]) => [e, [...who]]),
  }));
  try {
    sessionStorage.setItem(snapKey(), JSON.stringify({
      v: 1, nick: S.nick, sm: S.conn && S.conn.resumeState(), joined: S.joined, me: S.me,
      subject: S.subject, occupants: [...S.occupants.values()], messages: keep, saved: Date.now(), roomUnread: S.roomUnread,
      pms: [...S.pms].map(([key, c]) => ({
        key, nick: c.nick, gone: c.gone, occupantId: c.occupantId, unread: c.unread, shown: c === S.view,
        items: c.items.slice(-KEEP_MESSAGES).map((m) => ({ ...m, node: undefined })),
      })),
    }));
  } catch { /* storage full or refused: reload will rejoin instead of resuming */ }
}
addEventListener('pagehide', () => { clearTimeout(saveTimer); saveTimer = null; save(); });

function loadSnapshot() {
  try {
    const s = JSON.parse(sessionStorage.getItem(snapKey()) || 'null');
    return s && s.v === 1 ? s : null;
  } catch {
    return null;
  }
}

function restoreSnapshot(s) {
  S.nick = s.nick;
  S.me = s.me;
  S.joined = !!(s.sm && s.joined);
  S.subject = s.subject || '';
  S.subjectSeen = !!s.subject;
  $('topic').textContent = S.subject;
  for (const o of s.occupants || []) S.occupants.set(o.nick, o);
  for (const raw of s.messages || []) {
    const m = { ...raw, reactions: new Map(raw.reactions.map(([e, who]) => [e, new Map(who)])) };
    if (m.pending) S.pending.set(m.id, m);
    addMessage(m);
  }
  S.roomUnread = s.roomUnread || 0;
  for (const { key, items, shown, ...saved } of s.pms || []) {
    const c = Object.assign(pmWith(saved.nick, key), saved);
    for (const m of items) addPm(c, m);
    if (shown) S.view = c;
  }
  showView(S.view);
  renderOccupants();
  if (S.joined) {
    $('composer').hidden = false;
    S.everJoined = true;
    document.body.classList.add('joined');
  }
}

// -- start ----------------------------------------------------------------------------------

async function main() {
  S.cfg = await loadConfig();
  const r = route();
  S.embed = r.embed;
  S.invite = r.invite;
  if (!r.room) return showLanding(r);
  openRoom(roomJid(r.room), r.nick);
}
addEventListener('popstate', () => location.reload());
addEventListener('hashchange', () => { if (location.pathname === '/' && location.hash.length > 1) location.reload(); });
main();
