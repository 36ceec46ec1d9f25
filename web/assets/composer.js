// The composer (sending, replies, edits, reactions, /msg, /nick), the views and controls.

import { x, t, newId } from './xmpp.js';
import { NS, REACTIONS, $, el, S, status, pmMod, loadPm, hooks, myKey } from './core.js';
import { askNick, setupNickForm, rename } from './room.js';
import { addMessage, nickSpan, logKeys } from './log.js';

// For log.js and room.js (core.js hooks).
Object.assign(hooks, { showView, renderConvs, toggleReaction, openPicker, startReply, startEdit, cancelContext });

export const viewLog = () => (S.view ? S.view.log : $('log'));

export function showView(c) {
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
  hooks.saveSoon();
}

/** The tab bar, and the composer for the conversation in view (which may have left). */
export function renderConvs() {
  const bar = $('convs');
  const focused = bar.contains(document.activeElement) && document.activeElement.dataset.k;
  const count = (n) => n > 0 && el('span', { class: 'unread' }, String(n), el('span', { class: 'visually-hidden', text: ' unread' }));
  bar.hidden = !S.pms.size;
  bar.replaceChildren(
    el('button', { type: 'button', class: 'tab', 'data-k': '', 'aria-current': !S.view && 'true', onclick: () => showView(null) }, '#' + S.roomName, count(S.roomUnread)),
    ...[...S.pms].map(([k, c]) => el('span', { class: 'pm-tab' + (c.gone ? ' gone' : '') },
      el('button', { type: 'button', class: 'tab', 'data-k': k, 'aria-current': S.view === c && 'true', onclick: () => showView(c) },
        nickSpan(c.nick), c.gone && el('span', { class: 'visually-hidden', text: ' (left the room)' }), count(c.unread)),
      el('button', { type: 'button', class: 'icon', 'data-k': '\n' + k, 'aria-label': `Close the conversation with ${c.nick}`, text: '✕', onclick: () => pmMod.closePm(c) }))));
  if (focused !== false) bar.querySelector(`[data-k="${CSS.escape(focused)}"]`)?.focus();
  const v = S.view;
  const label = !v ? 'Message' : v.gone ? `${v.nick} has left the room` : `Private message to ${v.nick}`;
  $('input').placeholder = $('input-label').textContent = label;
  $('input').disabled = $('send').disabled = $('attach').disabled = !!v?.gone;
}

// -- sending --------------------------------------------------------------------------------

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
export function cancelContext() {
  const wasEditing = !!S.editing;
  S.reply = null;
  S.editing = null;
  $('context').hidden = true;
  if (wasEditing) {
    $('input').value = '';
    autosize();
  }
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

const uploadAll = (files) => import('./upload.js').then((u) => u.uploadAll(files));

let composerReady = false;
export function setupComposer() {
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
    const clear = () => {
      input.value = '';
      autosize();
      input.focus();
    };
    if (nick) {
      const wanted = body.slice(nick[0].length).trim();
      if (wanted) rename(wanted);
      else askNick(S.nick, null, null, true);
    } else if (msg) {
      loadPm().then((m) => m.msgCommand(body.slice(msg[0].length)) && clear());
      return;
    } else if (S.view) {
      if (S.view.gone) return;
      pmMod.sendPm(S.view, body);
    } else {
      sendMessage(body);
    }
    clear();
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
  $('leave').addEventListener('click', () => hooks.leave());
  document.querySelector('.body').addEventListener('keydown', logKeys);
}

