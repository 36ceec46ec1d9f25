// The message log: incoming messages (XEP-0308 corrections, XEP-0461 replies, XEP-0444
// reactions, XEP-0424/0425 retractions), how they look, shared files, keyboard moves.

import { child, children, text } from './xmpp.js';
import { nickColor, cachedColor } from './colors.js';
import { NS, $, el, splitJid, dark, S, errorOf, notice, loadPm, tools, hooks, myKey } from './core.js';

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

export function onMessage(st) {
  const from = st.getAttribute('from') || '';
  const [bare, nick] = splitJid(from);
  if (bare !== S.roomJid) return;
  const type = st.getAttribute('type');
  if (type === 'error') {
    const { condition, text: msg } = errorOf(st);
    if (nick) return loadPm().then((m) => m.pmFailed(st.getAttribute('id'), msg || condition.replace(/-/g, ' ')));
    const p = S.pending.get(st.getAttribute('id'));
    if (p) {
      p.failed = true;
      render(p);
    }
    notice(`Your message was not delivered: ${msg || condition}.`, 'bad');
    return;
  }
  let body = text(child(st, 'body'));
  if (type !== 'groupchat') return nick && body !== null && loadPm().then((m) => m.onPrivate(st, nick, body));
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
      if (orig === S.editing) hooks.cancelContext();
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
    hooks.renderConvs();
  }
  if (document.hidden) countUnread();
}

export function countUnread() {
  S.unread++;
  document.title = `(${S.unread}) #${S.roomName} — Salon`;
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && S.roomName) {
    S.unread = 0;
    document.title = '#' + S.roomName + ' — Salon';
  }
});

export const oobOf = (st) => text(child(child(st, 'x', NS.oob), 'url'))?.trim() || null;

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

export function addMessage(m) {
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
export function httpUrl(s) {
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

export function nickSpan(nick, cls = 'nick') {
  const span = el('span', { class: cls, text: nick });
  const c = cachedColor(nick, dark());
  if (c) span.style.color = c;
  else nickColor(nick, dark()).then((col) => { span.style.color = col; });
  return span;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function isModerator() {
  return S.me && S.me.role === 'moderator';
}

export function render(m) {
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
        onclick: () => hooks.toggleReaction(m, emoji),
      }, emoji, ' ', el('span', { text: String(who.size) })))));
    }
    const actions = el('div', { class: 'actions', role: 'toolbar', 'aria-label': 'Message actions' });
    const can = m.stanzaId && S.joined;
    if (can) actions.append(el('button', { type: 'button', 'aria-label': `Reply to ${m.nick}`, title: 'Reply', text: '↩', onclick: () => hooks.startReply(m) }));
    if (can) actions.append(el('button', { type: 'button', 'aria-label': 'React', title: 'React', text: '☺', onclick: (e) => hooks.openPicker(m, e.currentTarget) }));
    if (own && !m.pending) actions.append(el('button', { type: 'button', 'aria-label': 'Edit', title: 'Edit', text: '✎', onclick: () => hooks.startEdit(m) }));
    if (can && isModerator()) actions.append(el('button', { type: 'button', 'aria-label': `Remove message from ${m.nick}`, title: 'Remove (moderator)', text: '🗑', onclick: () => tools().then((m2) => m2.retract(m)) }));
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
export function logKeys(e) {
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

export function renderMessages() {
  for (const m of S.messages) render(m);
}

/** Joins and leaves, folded into one line while nothing else is said. */
export function noise(nick, what) {
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

