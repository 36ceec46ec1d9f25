// A small XMPP client connection for the browser: a transport (WebSocket, RFC 7395, or BOSH,
// XEP-0206, where WebSockets do not get through: bosh.js, fetched only then), SASL ANONYMOUS, resource binding and XEP-0198
// stream management with resumption. Stanzas go out as strings (see `x()`), come in as DOM
// elements.

export const NS = {
  client: 'jabber:client',
  framing: 'urn:ietf:params:xml:ns:xmpp-framing',
  stream: 'http://etherx.jabber.org/streams',
  sasl: 'urn:ietf:params:xml:ns:xmpp-sasl',
  bind: 'urn:ietf:params:xml:ns:xmpp-bind',
  sm: 'urn:xmpp:sm:3',
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  ping: 'urn:xmpp:ping',
};

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' }[c]));

// Strip characters XML 1.0 cannot carry.
const clean = (s) => String(s).replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '');

/** Build an element as a string: x('message', {to, type}, x('body', {}, text)).
 *  Children are strings made by x() (inserted as they are) or text wrapped with t(). */
export function x(name, attrs = {}, ...children) {
  let s = '<' + name;
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) s += ` ${k}="${esc(clean(v))}"`;
  const inner = children.flat().filter((c) => c !== null && c !== undefined && c !== false).join('');
  return inner ? `${s}>${inner}</${name}>` : s + '/>';
}
/** Text content for x(). */
export const t = (text) => esc(clean(text));

/** First child element with this local name (and namespace, if given). */
export function child(el, name, ns) {
  if (!el) return null;
  for (const c of el.children) if (c.localName === name && (!ns || c.namespaceURI === ns)) return c;
  return null;
}
export function children(el, name, ns) {
  return el ? [...el.children].filter((c) => c.localName === name && (!ns || c.namespaceURI === ns)) : [];
}
export const text = (el) => (el ? el.textContent : null);

let counter = 0;
export const newId = () => (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + '-' + (++counter) + '-' + Math.random().toString(36).slice(2));

export const parser = new DOMParser();
function parseFrame(data) {
  const doc = parser.parseFromString(`<w xmlns="${NS.client}" xmlns:stream="${NS.stream}">${data}</w>`, 'text/xml');
  const root = doc.documentElement;
  if (root.localName !== 'w' || doc.getElementsByTagName('parsererror').length) return null;
  return root.firstElementChild;
}

/** XMPP over WebSocket (RFC 7395). Transports offer open(domain), restart(), send(string),
 *  close(), abort() and `connected`, and call onelement(el) and onclose(info). */
export class WebSocketTransport {
  constructor(url) {
    this.url = url;
    this.onelement = () => {};
    this.onclose = () => {};
    this.ws = null;
  }
  open(domain) {
    this.domain = domain;
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url, 'xmpp');
      } catch (e) {
        reject(e);
        return;
      }
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.restart();
        resolve();
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data !== 'string') return;
        const el = parseFrame(ev.data);
        if (el) this.onelement(el);
      };
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (!opened) reject(unreachable('cannot connect to ' + this.url));
        else this.onclose({ code: ev.code, reason: ev.reason });
      };
      ws.onerror = () => {};
    });
  }
  restart() {
    this.send(x('open', { xmlns: NS.framing, to: this.domain, version: '1.0' }));
  }
  send(data) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(data);
      return true;
    }
    return false;
  }
  get connected() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }
  /** Orderly end: `<close/>`, then the socket. */
  close() {
    const ws = this.ws;
    if (!ws) return;
    this.send(x('close', { xmlns: NS.framing }));
    this.ws = null;
    setTimeout(() => ws.close(1000), 100);
  }
  /** Drop the connection without a word (the session stays resumable on the server). */
  abort() {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.close(4000, 'gone');
    this.onclose({ code: 4000, reason: 'connection dropped' });
  }
}

/** An error for a server that could not be reached at all (the page words it for people). */
export function unreachable(message) {
  const e = new Error(message);
  e.unreachable = true;
  return e;
}

class StreamError extends Error {
  constructor(condition, textMsg) {
    super(textMsg || condition);
    this.condition = condition;
  }
}

/** One XMPP session, possibly over several transports in turn (XEP-0198 resumption). */
export class Connection {
  /** options: { transport: () => Transport (or a promise of one), domain, onstanza(el), onstate(state, detail) } */
  constructor(options) {
    this.opt = options;
    this.transport = null;
    this.jid = null;
    this.sm = null; // { id, hIn, acked, unacked: [string], resumable, max }
    this.iqs = new Map();
    this.waiter = null;
    this.pending = []; // elements that arrived while a waiter was not ready
    this.keepalive = null;
    this.lastHeard = 0;
  }

  /** Connect and log in. With `resume` ({ id, hIn, acked, unacked, jid }) try to resume that
   *  session first. Resolves to 'resumed' or 'fresh'. */
  async connect(resume) {
    const tr = await this.opt.transport();
    this.transport = tr;
    this.pending = [];
    // Until the session is up, keep every element for the step that wants it: BOSH hands
    // over several at once, before the next step has asked.
    this.negotiating = true;
    tr.onelement = (el) => this._element(el);
    tr.onclose = (info) => this._closed(tr, info);
    await tr.open(this.opt.domain);
    await this._want('open');
    let features = await this._want('features');
    const mechs = children(child(features, 'mechanisms', NS.sasl), 'mechanism').map(text);
    if (!mechs.includes('ANONYMOUS')) throw new Error('the server offers no anonymous login here');
    tr.send(x('auth', { xmlns: NS.sasl, mechanism: 'ANONYMOUS' }));
    const answer = await this._want('success', 'failure');
    if (answer.localName === 'failure') {
      const why = answer.firstElementChild ? answer.firstElementChild.localName : 'failure';
      throw new Error('anonymous login refused: ' + (text(child(answer, 'text')) || why));
    }
    tr.restart();
    await this._want('open');
    features = await this._want('features');
    const smOffered = !!child(features, 'sm', NS.sm);
    if (resume && resume.id && smOffered) {
      tr.send(x('resume', { xmlns: NS.sm, previd: resume.id, h: resume.hIn >>> 0 }));
      const r = await this._want('resumed', 'failed');
      if (r.localName === 'resumed') {
        this.jid = resume.jid;
        this.sm = { id: resume.id, hIn: resume.hIn, acked: resume.acked, unacked: [...resume.unacked], resumable: true, max: resume.max };
        this._acked(Number(r.getAttribute('h')));
        // Re-send what the server had not received before the old connection died.
        for (const s of this.sm.unacked) tr.send(s);
        if (this.sm.unacked.length) tr.send(x('r', { xmlns: NS.sm }));
        this._started();
        this._flushPending();
        return 'resumed';
      }
      // Failed: start over on this same stream (XEP-0198 §5: the client may bind now).
    }
    this.sm = null;
    const bindId = newId();
    tr.send(x('iq', { type: 'set', id: bindId }, x('bind', { xmlns: NS.bind })));
    const bound = await this._want('iq');
    const jidEl = child(child(bound, 'bind', NS.bind), 'jid');
    if (bound.getAttribute('type') !== 'result' || !jidEl) throw new Error('resource binding failed');
    this.jid = text(jidEl);
    if (smOffered) {
      tr.send(x('enable', { xmlns: NS.sm, resume: 'true' }));
      const e = await this._want('enabled', 'failed');
      if (e.localName === 'enabled') {
        this.sm = {
          id: e.getAttribute('resume') === 'true' || e.getAttribute('resume') === '1' ? e.getAttribute('id') : null,
          hIn: 0, acked: 0, unacked: [], max: Number(e.getAttribute('max')) || 0,
        };
      }
    }
    this._started();
    this._flushPending();
    return 'fresh';
  }

  /** The state worth keeping to resume this session from another page load. */
  resumeState() {
    if (!this.sm || !this.sm.id) return null;
    return { id: this.sm.id, hIn: this.sm.hIn, acked: this.sm.acked, unacked: this.sm.unacked.slice(-200), jid: this.jid, max: this.sm.max };
  }

  get online() {
    return !!this.transport && this.transport.connected && !this.waiter;
  }

  /** Send a stanza (string). Counted and kept for re-sending when stream management is on. */
  send(stanza) {
    if (this.sm) {
      this.sm.unacked.push(stanza);
      this._requestAckSoon();
    }
    if (this.transport) this.transport.send(stanza);
  }

  /** Send an IQ; resolves with the result element, rejects with the error element. */
  iq(attrs, payload, timeout = 20000) {
    const id = attrs.id || newId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.iqs.delete(id);
        reject(new Error('no answer'));
      }, timeout);
      this.iqs.set(id, { resolve, reject, timer });
      this.send(x('iq', { ...attrs, id }, payload));
    });
  }

  /** Log out: the session ends on the server (no resumption). */
  close() {
    this._stopKeepalive();
    this.sm = null;
    const tr = this.transport;
    this.transport = null;
    if (tr) tr.close();
  }

  /** Drop the connection as a network failure would (for tests and for dead connections). */
  abort() {
    if (this.transport) this.transport.abort();
  }

  // -- internals --------------------------------------------------------------------------

  _want(...names) {
    return new Promise((resolve, reject) => {
      const idx = this.pending.findIndex((el) => names.includes(el.localName));
      if (idx >= 0) {
        resolve(this.pending.splice(idx, 1)[0]);
        return;
      }
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error('the server did not answer (waiting for ' + names.join('/') + ')'));
      }, 20000);
      this.waiter = { names, resolve: (el) => { clearTimeout(timer); resolve(el); }, reject: (e) => { clearTimeout(timer); reject(e); } };
    });
  }

  _flushPending() {
    this.waiter = null;
    this.negotiating = false;
    const p = this.pending;
    this.pending = [];
    for (const el of p) this._element(el);
  }

  _element(el) {
    this.lastHeard = Date.now();
    const name = el.localName;
    if (name === 'error' && el.namespaceURI === NS.stream) {
      const cond = [...el.children].find((c) => c.localName !== 'text');
      const err = new StreamError(cond ? cond.localName : 'undefined-condition', text(child(el, 'text')));
      this.streamError = err;
      if (this.waiter) this.waiter.reject(err);
      return;
    }
    if (name === 'close' && el.namespaceURI === NS.framing) {
      if (this.waiter) this.waiter.reject(new Error('the server closed the stream'));
      if (this.transport) this.transport.abort();
      return;
    }
    if (this.waiter || this.negotiating) {
      if (this.waiter && this.waiter.names.includes(name)) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve(el);
      } else {
        this.pending.push(el);
      }
      return;
    }
    if (el.namespaceURI === NS.sm) {
      if (name === 'r') this.transport && this.transport.send(x('a', { xmlns: NS.sm, h: this.sm ? this.sm.hIn >>> 0 : 0 }));
      else if (name === 'a') {
        this._acked(Number(el.getAttribute('h')));
        this.awaitingAck = 0;
      }
      return;
    }
    if (name !== 'message' && name !== 'presence' && name !== 'iq') return;
    if (this.sm) this.sm.hIn = (this.sm.hIn + 1) >>> 0;
    if (name === 'iq') {
      const type = el.getAttribute('type');
      const id = el.getAttribute('id');
      if ((type === 'result' || type === 'error') && this.iqs.has(id)) {
        const p = this.iqs.get(id);
        this.iqs.delete(id);
        clearTimeout(p.timer);
        if (type === 'result') p.resolve(el);
        else p.reject(el);
        return;
      }
      if (type === 'get' && child(el, 'ping', NS.ping)) {
        this.send(x('iq', { type: 'result', id, to: el.getAttribute('from') }));
        return;
      }
      if (type === 'get' || type === 'set') {
        this.send(x('iq', { type: 'error', id, to: el.getAttribute('from') },
          x('error', { type: 'cancel' }, x('service-unavailable', { xmlns: NS.stanzas }))));
        return;
      }
    }
    this.opt.onstanza(el);
  }

  _acked(h) {
    if (!this.sm || Number.isNaN(h)) return;
    let n = (h - this.sm.acked) >>> 0;
    if (n > this.sm.unacked.length) n = this.sm.unacked.length;
    this.sm.unacked.splice(0, n);
    this.sm.acked = h >>> 0;
    this.opt.onstate('acked');
  }

  _requestAckSoon() {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      if (this.sm && this.sm.unacked.length && this.transport) this.transport.send(x('r', { xmlns: NS.sm }));
    }, 250);
  }

  _started() {
    this.started = true;
    this._stopKeepalive();
    this.lastHeard = Date.now();
    this.probedAt = 0;
    // A silent connection may be dead (phones, NAT timeouts, a stalled proxy): while the page
    // is in view, ask for a sign of life after 5 s of silence and give up on the connection
    // 4 s later (noticed within about 10 s); in the background, every 30 s and 20 s later.
    this.keepalive = setInterval(() => {
      if (!this.transport || this.waiter) return;
      const now = Date.now();
      const quiet = now - this.lastHeard;
      const [ask, giveUp] = typeof document !== 'undefined' && document.hidden ? [30000, 20000] : [5000, 4000];
      if (this.probedAt > this.lastHeard && now - this.probedAt > giveUp) this.abort();
      else if (quiet > ask && this.probedAt <= this.lastHeard) this.probe();
    }, 1000);
  }

  /** Ask the server for a sign of life now (XEP-0198 <r/>, else a ping, XEP-0199); the
   *  keepalive drops the connection if none comes. For when the network may have changed. */
  probe() {
    if (!this.transport || !this.started) return;
    this.probedAt = Date.now();
    if (this.sm) this.transport.send(x('r', { xmlns: NS.sm }));
    else this.iq({ type: 'get', to: this.jid.split('/')[0].split('@').pop() }, x('ping', { xmlns: NS.ping }), 8000).catch(() => {});
  }

  _stopKeepalive() {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
  }

  _closed(tr, info) {
    if (tr !== this.transport) return;
    const wasStarted = this.started;
    this.started = false;
    this._stopKeepalive();
    this.transport = null;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(this.streamError || new Error('connection lost'));
    }
    for (const [id, p] of this.iqs) {
      // Answers to IQs sent before a resumption may still come; others are lost.
      if (!this.sm) {
        clearTimeout(p.timer);
        p.reject(new Error('connection lost'));
        this.iqs.delete(id);
      }
    }
    if (wasStarted) this.opt.onstate('disconnected', { ...info, error: this.streamError });
    this.streamError = null;
  }
}
