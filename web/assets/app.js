// Salon's built-in web client: the landing page and one chat room (XEP-0045), with history,
// occupants, topic, nick colours (XEP-0392), corrections (XEP-0308), replies (XEP-0461),
// reactions (XEP-0444), moderation (XEP-0045 admin, XEP-0425), private conversations with
// occupants (XEP-0045 §7.5), and sessions that survive a reload or a dropped connection (XEP-0198).
// This module starts it and keeps its session (reconnecting, XEP-0198 resumption, reloads); the
// others: core, room, log, composer; fetched when used: pm, upload, bosh, tools, landing.

import { Connection, WebSocketTransport, x } from './xmpp.js';
import { $, splitJid, S, pmMod, loadPm, roomJid, xmppUri, status, hooks, snapKey, KEEP_MESSAGES } from './core.js';
import { savedNick, askNick, peekRoom, onPresence, renderOccupants, ownerTools, joinRoom } from './room.js';
import { onMessage, addMessage } from './log.js';
import { showView, setupComposer } from './composer.js';

// For the modules below (core.js hooks); the loaders of the lazy modules live up here.
Object.assign(hooks, { start, leave, saveSoon, pm: () => import('./pm.js'), tools: () => import('./tools.js') });

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

// -- opening a room and the session ------------------------------------------------------------

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
    const resume = () => {
      restoreSnapshot(snap);
      start(snap.nick, snap.sm);
    };
    if (snap.pms?.length) loadPm().catch(() => {}).then(resume);
    else resume();
  } else if (nick) {
    start(nick, null);
  } else {
    askNick(savedNick());
    start(null, null);
  }
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
      // bosh.js is fetched only when needed.
      transport: async () => (S.bosh ? new (await import('./bosh.js')).BoshTransport(S.cfg.bosh) : new WebSocketTransport(S.cfg.ws)),
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

// -- surviving a reload (XEP-0198 resumption, page state in sessionStorage) -------------------

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
  for (const { key, items, shown, ...saved } of pmMod ? s.pms : []) {
    const c = Object.assign(pmMod.pmWith(saved.nick, key), saved);
    for (const m of items) pmMod.addPm(c, m);
    if (shown) S.view = c;
  }
  showView(S.view);
  renderOccupants();
  if (S.joined) {
    ownerTools(S.me);
    $('composer').hidden = false;
    S.everJoined = true;
    document.body.classList.add('joined');
  }
}

// -- start ----------------------------------------------------------------------------------

async function main() {
  const r = route();
  // The landing page's code comes while the configuration does.
  const landing = !r.room && import('./landing.js');
  S.cfg = await loadConfig();
  S.embed = r.embed;
  S.invite = r.invite;
  if (!r.room) return landing.then((m) => m.showLanding(r, openRoom));
  openRoom(roomJid(r.room), r.nick);
}
addEventListener('popstate', () => location.reload());
addEventListener('hashchange', () => { if (location.pathname === '/' && location.hash.length > 1) location.reload(); });
main();
