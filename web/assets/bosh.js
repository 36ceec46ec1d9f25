// XMPP over BOSH (XEP-0124, XEP-0206), for networks where WebSockets do not get through;
// the page fetches this module only when it needs it.

import { NS, x, t, parser, unreachable } from './xmpp.js';

const HTTPBIND = 'http://jabber.org/protocol/httpbind';
/** What a new stream starts with, as RFC 7395 has it (`<open/>`), for BOSH streams too. */
const OPEN = () => parser.parseFromString(`<open xmlns="${NS.framing}"/>`, 'text/xml').documentElement;
const XBOSH = 'urn:xmpp:xbosh';

/** XMPP over BOSH (XEP-0124, XEP-0206), for networks where WebSockets do not get through.
 *  Same interface as WebSocketTransport. One request is kept waiting at the server for what
 *  arrives; what the page sends goes in a second one (the server allows two). */
export class BoshTransport {
  constructor(url) {
    this.url = url;
    this.onelement = () => {};
    this.onclose = () => {};
    this.sid = null;
    this.rid = Math.floor(Math.random() * 2 ** 40) + 1;
    this.queue = [];
    this.inflight = 0;
    this.restarting = false;
    this.ended = true;
    this.aborter = null;
  }
  open(domain) {
    this.domain = domain;
    this.ended = false;
    this.aborter = new AbortController();
    const body = x('body', {
      xmlns: HTTPBIND, 'xmlns:xmpp': XBOSH, content: 'text/xml; charset=utf-8', hold: '1',
      rid: this.rid++, to: domain, ver: '1.6', wait: '60', 'xml:lang': 'en', 'xmpp:version': '1.0',
    });
    this.inflight++;
    return this._post(body).then((root) => {
      this.inflight--;
      const sid = root && root.getAttribute('sid');
      if (!sid || root.getAttribute('type') === 'terminate') throw unreachable('cannot connect to ' + this.url);
      this.sid = sid;
      this.onelement(OPEN());
      this._deliver(root);
      this._pump();
    }, (e) => {
      this.inflight--;
      this.ended = true;
      throw unreachable('cannot connect to ' + this.url + ' (' + e.message + ')');
    });
  }
  /** After SASL: the next request asks for a stream restart and carries nothing else. The
   *  new stream's features may come back on any response, so its `open` is handed on now. */
  restart() {
    this.restarting = true;
    this.onelement(OPEN());
    this._pump();
  }
  send(data) {
    if (!this.connected) return false;
    // Inside <body/> a stanza names its namespace itself (XEP-0206 §6); over WebSocket the
    // framing supplies jabber:client.
    this.queue.push(data.replace(/^<(message|presence|iq)(?=[\s/>])(?![^>]*\sxmlns=)/, `<$1 xmlns="${NS.client}"`));
    this._pump();
    return true;
  }
  get connected() {
    return !!this.sid && !this.ended;
  }
  close() {
    if (!this.connected) return;
    const payload = this.queue.splice(0).join('');
    this.ended = true;
    const end = `<body xmlns="${HTTPBIND}" rid="${this.rid++}" sid="${t(this.sid)}" type="terminate">${payload}</body>`;
    fetch(this.url, { method: 'POST', body: end, headers: { 'Content-Type': 'text/xml; charset=utf-8' } }).catch(() => {});
    if (this.aborter) this.aborter.abort();
  }
  abort() {
    if (this.ended) return;
    this.ended = true;
    if (this.aborter) this.aborter.abort();
    this.onclose({ code: 4000, reason: 'connection dropped' });
  }

  _pump() {
    if (!this.connected) return;
    // A restart goes alone, once nothing else is in flight but the waiting request.
    if (this.restarting) {
      if (this.inflight >= 2) return;
      this.restarting = false;
      const restart = x('body', {
        xmlns: HTTPBIND, 'xmlns:xmpp': XBOSH, rid: this.rid++, sid: this.sid, to: this.domain,
        'xml:lang': 'en', 'xmpp:restart': 'true',
      });
      this._request(restart);
      return;
    }
    while (this.inflight < 2 && (this.queue.length || this.inflight === 0)) {
      const payload = this.queue.splice(0).join('');
      this._request(`<body xmlns="${HTTPBIND}" rid="${this.rid++}" sid="${t(this.sid)}">${payload}</body>`);
    }
  }
  _request(body) {
    this.inflight++;
    this._post(body).then((root) => {
      this.inflight--;
      if (this.ended) return;
      if (!root) return this._fail('the server sent something that is not BOSH');
      this._deliver(root);
      if (root.getAttribute('type') === 'terminate') {
        this.ended = true;
        this.onclose({ code: 1000, reason: root.getAttribute('condition') || 'session ended' });
        return;
      }
      this._pump();
    }, (e) => {
      this.inflight--;
      if (!this.ended) this._fail(e.message);
    });
  }
  async _post(body) {
    const r = await fetch(this.url, {
      method: 'POST', body, signal: this.aborter.signal,
      headers: { 'Content-Type': 'text/xml; charset=utf-8' },
    });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const doc = parser.parseFromString(await r.text(), 'text/xml');
    const root = doc.documentElement;
    if (root.localName !== 'body' || root.namespaceURI !== HTTPBIND || doc.getElementsByTagName('parsererror').length) return null;
    return root;
  }
  _deliver(root) {
    for (const el of [...root.children]) this.onelement(el);
  }
  _fail(reason) {
    this.ended = true;
    if (this.aborter) this.aborter.abort();
    this.onclose({ code: 4001, reason });
  }
}
