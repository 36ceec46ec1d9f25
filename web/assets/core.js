// Shared by the page's modules: its state (`window.salon`), namespaces, DOM helpers, the
// status line and notices.

import { child, text } from './xmpp.js';

export const NS = {
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
export const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
export const ROLE_ORDER = { moderator: 0, participant: 1, visitor: 2, none: 3 };
export const ROLE_TITLE = { moderator: 'Moderators', participant: 'Participants', visitor: 'Visitors' };
export const KEEP_MESSAGES = 150;

// Modules import only those below them (core < log < room < composer < app): calls up go
// through hooks, filled by the higher module as it loads (docs/web-client.md).
export const hooks = {};

// pm.js is fetched with the first private conversation: code that finds one may use pmMod.
export let pmMod = null;
let pmLoading = null;
export const loadPm = () => (pmLoading ||= hooks.pm().then((m) => (pmMod = m), (e) => { pmLoading = null; throw e; }));

export const tools = () => hooks.tools();

export const $ = (id) => document.getElementById(id);
export const el = (tag, props = {}, ...kids) => {
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
export const splitJid = (jid) => {
  const i = jid.indexOf('/');
  return i < 0 ? [jid, ''] : [jid.slice(0, i), jid.slice(i + 1)];
};
export const dark = () => matchMedia('(prefers-color-scheme: dark)').matches;

/** Everything the page knows; `window.salon` for tests and curious people. */
export const S = {
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


/** A room name as typed (`sprint`, `#sprint`, `sprint@rooms.host`) → its bare JID. */
export function roomJid(room) {
  room = room.trim().replace(/^#+/, '').replace(/^xmpp:/, '').replace(/\?.*$/, '');
  if (room.includes('@')) return room.toLowerCase();
  return room.toLowerCase().replace(/\s+/g, '-').replace(/["&'/:<>@]/g, '') + '@' + S.cfg.muc;
}

export const joinUrl = (name) => location.origin + '/join/' + encodeURIComponent(name);
export const xmppUri = (jid) => 'xmpp:' + jid + '?join';

// -- status line ------------------------------------------------------------------------------

let statusTimer = null;
export function status(msg, kind = 'info', hideAfter = 0, action = null) {
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

export function errorOf(st) {
  const e = child(st, 'error');
  if (!e) return { condition: 'undefined-condition', text: '' };
  const cond = [...e.children].find((c) => c.localName !== 'text');
  return { condition: cond ? cond.localName : 'undefined-condition', text: text(child(e, 'text')) || '' };
}

export function myKey() {
  return (S.me && S.me.occupantId) || S.nick;
}

export function notice(msg, kind = '', log = $('log')) {
  log.append(el('p', { class: 'notice ' + kind, text: msg }));
  log.scrollTop = log.scrollHeight;
}

export const snapKey = () => 'salon:room:' + S.roomJid;
