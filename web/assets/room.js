// Joining and being in the room (XEP-0045): the nick prompt and /nick, refusals, presence,
// the people list, the card of an empty room, moderation (kick, ban, XEP-0425).

import { x, t, child, children, text, newId } from './xmpp.js';
import { nickColor } from './colors.js';
import { NS, ROLE_ORDER, ROLE_TITLE, $, el, splitJid, dark, S, status, errorOf, notice, pmMod, loadPm, tools, hooks, snapKey } from './core.js';
import { nickSpan, isModerator, renderMessages, noise } from './log.js';

export const savedNick = () => localStorage.getItem('salon:nick') || '';
/** Remember a nick the room accepted (never one merely asked for). */
function rememberNick(nick) {
  try {
    localStorage.setItem('salon:nick', nick);
  } catch { /* storage refused: the prompt will ask next time */ }
}

export function askNick(value, error, suggestion, rename = false) {
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

export function setupNickForm() {
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
    hooks.start(nick, null);
  }
}

/** A new nick in the room (XEP-0045 §7.6): presence to the new occupant address. */
export function rename(nick) {
  nick = nick.trim();
  if (!nick || nick === S.nick || !S.joined) return;
  S.renaming = nick;
  S.conn.send(x('presence', { to: `${S.roomJid}/${nick}`, id: newId() }));
  $('input').focus();
}

export function joinRoom() {
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


/** Nick + a digit, the digit growing each time the suggestion was taken too. */
function suggestNick(nick) {
  const base = nick.replace(/\d+$/, '') || nick;
  const tail = nick.match(/(\d+)$/);
  S.suggestN = Math.max(S.suggestN + 1, tail ? Number(tail[1]) + 1 : 2);
  return base + S.suggestN;
}

/** Before the visitor picks a nick: is the room there, who is in it, has it a topic? */
export async function peekRoom() {
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

export function onPresence(st) {
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
      if (pm) pmMod.pmMoved(pm, `${nick} is now known as ${newNick}.`, false, newNick);
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
    if (pm && !codes.has('303')) pmMod.pmMoved(pm, codes.has('307') ? `${nick} was kicked${why}.` : codes.has('301') ? `${nick} was banned${why}.` : `${nick} left the room.`, true);
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
    pmMod.pmMoved(pm, other ? `Someone else now uses the nickname ${nick}.` : `${nick} is back in the room.`, false);
    pm.occupantId = occ.occupantId;
  }
  if (self) {
    const firstJoin = !S.joined;
    S.nick = nick;
    S.me = occ;
    ownerTools(occ);
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
      if (!S.everJoined && [...S.occupants.values()].every((o) => o.nick === nick)) tools().then((m) => m.shareCard());
      S.everJoined = true;
      // Back after a failed resumption: who left while this page was away?
      for (const [k, c] of S.pms) if (k === c.nick && !c.gone && !S.occupants.has(k)) pmMod.pmMoved(c, `${k} left the room.`, true);
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

/** An owner gets the invite links button (tools.js); one no longer an owner loses it. */
export const ownerTools = (me) => (me?.affiliation === 'owner' ? tools().then((m) => m.inviteLinks()) : $('invite-links')?.remove());

// -- occupants --------------------------------------------------------------------------------

export function renderOccupants() {
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
      mine ? nickSpan(o.nick) : el('button', { type: 'button', class: 'who', title: 'Private message', 'aria-label': `Private message to ${o.nick}`, onclick: () => loadPm().then((m) => hooks.showView(m.pmWith(o.nick))) },
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
        el('button', { type: 'button', class: 'small', text: 'Kick', 'aria-label': `Kick ${o.nick}`, onclick: () => tools().then((m) => m.kick(o)) }),
        o.jid ? el('button', { type: 'button', class: 'small', text: 'Ban', 'aria-label': `Ban ${o.nick}`, onclick: () => tools().then((m) => m.ban(o)) }) : null));
    }
    groups.at(-1).append(li);
  }
  list.replaceChildren(...groups);
}

