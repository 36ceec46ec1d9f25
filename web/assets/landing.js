// The landing page (`/`): pick a nickname and a room, share or embed it; fetched only there.

import { $, S, roomJid, joinUrl, xmppUri } from './core.js';

/** `openRoom(jid, nick)` (app.js) opens the room chosen. */
export function showLanding(r, openRoom) {
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

