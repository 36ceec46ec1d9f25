// What the page needs now and then, fetched on first use: the card that invites people to an
// empty room, an owner's invite links (urn:salon:room-invite:0, XEP-0050 ad-hoc commands on the
// room), and moderation (kick, ban, remove a message: XEP-0045 §8-9, XEP-0425).

import { x, t, child, children, text } from './xmpp.js';
import { NS, $, el, splitJid, S, errorOf, notice, joinUrl, xmppUri } from './core.js';

/** The invitation for an empty room: its link to share, and how to open it in an app. */
export function shareCard() {
  const url = joinUrl(S.roomName);
  const link = el('a', { href: url, class: 'share-url', text: url });
  $('log').append(el('section', { class: 'card share-room', 'aria-label': 'Invite people' },
    el('p', { class: 'share-lead', text: 'You are the only one here. Invite people with this link:' }),
    el('p', { class: 'share-row' }, link, copyButton(link)),
    el('p', {}, 'Have an XMPP app (Conversations, Gajim, Dino, Monal…)? ',
      el('a', { href: xmppUri(S.roomJid), class: 'xmpp-join', text: 'Open the room in it' }), ' — ', el('code', { text: xmppUri(S.roomJid) }))));
}

/** A button that copies the address of `link` (selects it where there is no clipboard). */
export function copyButton(link) {
  const copy = el('button', { type: 'button', class: 'small copy', text: 'Copy link' });
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(link.href);
      copy.textContent = 'Copied';
    } catch {
      // No clipboard (an insecure origin, a refusal): select the link for a manual copy.
      getSelection().selectAllChildren(link);
      copy.textContent = 'Press Ctrl+C to copy';
    }
    setTimeout(() => { copy.textContent = 'Copy link'; }, 2500);
  });
  return copy;
}

async function adminIq(payload, what) {
  try {
    await S.conn.iq({ type: 'set', to: S.roomJid }, payload);
  } catch (e) {
    const err = e instanceof Element ? errorOf(e) : { condition: e.message, text: '' };
    notice(`Could not ${what}: ${err.text || err.condition}.`, 'bad');
  }
}
export function kick(o) {
  const reason = prompt(`Kick ${o.nick}? Reason (optional):`, '');
  if (reason === null) return;
  adminIq(x('query', { xmlns: NS.mucAdmin }, x('item', { nick: o.nick, role: 'none' }, reason ? x('reason', {}, t(reason)) : null)), `kick ${o.nick}`);
}
export function ban(o) {
  const reason = prompt(`Ban ${o.nick} from the room? Reason (optional):`, '');
  if (reason === null) return;
  adminIq(x('query', { xmlns: NS.mucAdmin }, x('item', { jid: splitJid(o.jid)[0], affiliation: 'outcast' }, reason ? x('reason', {}, t(reason)) : null)), `ban ${o.nick}`);
}
export function retract(m) {
  if (!confirm(`Remove this message from ${m.nick} for everyone?`)) return;
  adminIq(x('moderate', { xmlns: NS.moderate, id: m.stanzaId }, x('retract', { xmlns: NS.retract }), x('reason', {})), 'remove the message');
}

// -- an owner's invite links ---------------------------------------------------------------------

const COMMANDS = 'http://jabber.org/protocol/commands';

/** Run the room's command `what` (#create, #list, #revoke) with `fields` submitted; its form. */
async function command(what, fields = {}) {
  const submit = Object.entries({ FORM_TYPE: NS.roomInvite, ...fields }).map(([k, v]) => x('field', { var: k }, x('value', {}, t(v))));
  const res = await S.conn.iq({ type: 'set', to: S.roomJid }, x('command', { xmlns: COMMANDS, node: `${NS.roomInvite}#${what}`, action: 'execute' },
    x('x', { xmlns: NS.data, type: 'submit' }, submit)), 10000);
  const form = child(child(res, 'command', COMMANDS), 'x', NS.data);
  return (name) => children(children(form, 'field').find((f) => f.getAttribute('var') === name), 'value').map(text);
}

const linkFor = (token) => joinUrl(S.roomName) + '?invite=' + encodeURIComponent(token);
const when = (secs) => new Date(secs * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** The "Invite links" button in the top bar, once; it opens a dialog to make, copy, list and
 *  revoke the room's links. */
export function inviteLinks() {
  if ($('invite-links')) return;
  const said = el('p', { role: 'status' });
  const list = el('ul', { class: 'links' });
  const made = el('p', { class: 'share-row' });
  const uses = el('input', { id: 'link-uses', type: 'number', min: '1', max: '1000', value: '1', required: true });
  const expires = el('select', { id: 'link-expires' },
    [['3600', 'One hour'], ['86400', 'One day'], ['604800', 'One week'], ['2592000', '30 days']].map(([v, label]) => el('option', { value: v, selected: v === '604800', text: label })));
  const fail = (what) => (e) => { said.textContent = `Could not ${what}: ${(e instanceof Element ? errorOf(e).text || errorOf(e).condition : e.message)}.`; };
  const refresh = () => command('list').then((field) => {
    const items = field('links').map((line) => {
      const [token, ...state] = line.split(' ');
      const link = el('a', { href: linkFor(token), text: linkFor(token) });
      return el('li', {}, link, ' ', state.join(' ').replace(/expires (\d+)/, (_, n) => 'until ' + when(Number(n))), ' ',
        el('button', { type: 'button', class: 'small', text: 'Revoke', 'aria-label': `Revoke ${link.href}`, onclick: () => command('revoke', { token })
          .then(() => { said.textContent = 'The link no longer works.'; refresh(); }, fail('revoke the link')) }));
    });
    list.replaceChildren(...(items.length ? items : [el('li', { text: 'None yet.' })]));
  }, fail('list the links'));
  const form = el('form', { class: 'card' }, el('label', { for: 'link-uses', text: 'How many people' }), uses,
    el('label', { for: 'link-expires', text: 'Works for' }), expires, el('button', { type: 'submit', text: 'Make a link' }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    command('create', { uses: uses.value, expires: expires.value }).then((field) => {
      const link = el('a', { href: linkFor(field('token')[0]), class: 'share-url', text: linkFor(field('token')[0]) });
      made.replaceChildren(link, copyButton(link));
      said.textContent = `A link for ${field('uses')[0]} ${field('uses')[0] === '1' ? 'person' : 'people'}, until ${when(Number(field('expires')[0]))}.`;
      refresh();
    }, fail('make a link'));
  });
  const dialog = el('dialog', { id: 'links-dialog', 'aria-labelledby': 'links-title' },
    el('h2', { id: 'links-title', text: 'Invite links' }),
    el('p', { text: 'Anyone with a link can join, even a members-only room, as many times as it allows until it expires.' }),
    form, made, said, el('h3', { text: 'Links of this room' }), list,
    el('button', { type: 'button', text: 'Close', onclick: () => dialog.close() }));
  dialog.style.maxWidth = '40rem';
  document.body.append(dialog);
  $('open-app').before(el('button', { id: 'invite-links', type: 'button', class: 'icon', text: 'Invite links', onclick: () => {
    said.textContent = '';
    dialog.showModal();
    refresh();
  } }));
}
