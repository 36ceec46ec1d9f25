// Private conversations with occupants (XEP-0045 §7.5): one log each beside the room's, which
// stays the main view; a tab bar switches. Fetched when the first one starts.

import { x, t, child, newId } from './xmpp.js';
import { NS, $, el, S, status, notice, hooks } from './core.js';
import { countUnread, oobOf, render } from './log.js';
import { viewLog, showView, renderConvs } from './composer.js';

/** The conversation with `nick`, opened in the background if there is none. */
export function pmWith(nick, key = nick) {
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

export function addPm(c, m) {
  c.items.push(m);
  const log = c.log;
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  log.append(m.note ? el('p', { class: 'notice', text: m.note }) : render(m));
  if (stick || m.own) log.scrollTop = log.scrollHeight;
  hooks.saveSoon();
}

export function sendPm(c, body, oob) {
  const id = newId();
  S.conn.send(x('message', { to: `${S.roomJid}/${c.nick}`, type: 'chat', id }, x('body', {}, t(body)),
    x('x', { xmlns: NS.mucUser }), oob && x('x', { xmlns: NS.oob }, x('url', {}, t(oob)))));
  addPm(c, { id, pm: true, own: true, nick: S.nick, body, oob, time: Date.now() });
}

export function onPrivate(st, nick, body) {
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
export function pmFailed(id, why) {
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
export function msgCommand(rest) {
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
export function pmMoved(c, note, gone = c.gone, nick = c.nick) {
  const other = c.nick !== nick && S.pms.get(nick);
  // An older conversation with someone else of that nick stays, under another key.
  S.pms = new Map([...S.pms].map(([k, v]) => (v === c ? [nick, c] : v === other ? [nick + '\n' + newId(), v] : [k, v])));
  addPm(c, { note });
  c.gone = gone;
  c.nick = nick;
  labelPm(c);
}

export function closePm(c) {
  for (const [k, v] of S.pms) if (v === c) S.pms.delete(k);
  c.log.remove();
  showView(S.view === c ? null : S.view);
  ($('convs').hidden ? $('input') : $('convs').firstElementChild).focus();
}

