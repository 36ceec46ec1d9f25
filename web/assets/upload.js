// Sharing a file (XEP-0363 upload, XEP-0066 link); fetched when the first file is shared.

import { x, t, child, children, text, newId } from './xmpp.js';
import { NS, $, el, S, errorOf, notice, pmMod, myKey } from './core.js';
import { addMessage, httpUrl } from './log.js';

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
  if (pm) return pm.gone ? notice(`${name} was uploaded but not shared: ${pm.nick} has left the room.`, 'bad', pm.log) : pmMod.sendPm(pm, getUrl, getUrl);
  const id = newId();
  S.conn.send(x('message', { to: S.roomJid, type: 'groupchat', id }, x('body', {}, t(getUrl)),
    x('x', { xmlns: NS.oob }, x('url', {}, t(getUrl))), x('origin-id', { xmlns: NS.sid, id })));
  const m = { id, stanzaId: null, nick: S.nick, key: myKey(), occupantId: S.me?.occupantId, body: getUrl, oob: getUrl, time: Date.now(), delayed: false, replyTo: null, reactions: new Map(), pending: true };
  S.pending.set(id, m);
  addMessage(m);
}

export function uploadAll(files) {
  for (const f of files) uploadFile(f);
}

