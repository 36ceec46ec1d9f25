// XMPP libraries nobody on the project wrote, in Node, against a real Salon: xmpp.js (TCP with
// STARTTLS, and WebSocket) and StanzaJS (WebSocket and BOSH). Each runs the same short scenario:
// SCRAM login to two accounts, a 1:1 message between them, both in a room exchanging a groupchat
// message, and an anonymous guest joining the same room and being heard.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client as xmppClient, xml } from '@xmpp/client';
import * as Stanza from 'stanza';
import { WebSocket } from 'ws';
import { Salon } from './salon.js';

// xmpp.js's WebSocket transport uses the global WebSocket, which Node has only from version 22.
globalThis.WebSocket ??= WebSocket;

// The test server has a self-signed certificate.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

let salon;
before(async () => { salon = await new Salon().start(); });
after(async () => { if (salon) await salon.stop(); });

const withTimeout = (promise, ms, what) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}\n${salon.log()}`)), ms)),
]);

/** Resolves with the first stanza from `source` (an emitter of `event`) that `pred` accepts. */
function next(source, event, pred, what) {
  return withTimeout(new Promise((resolve) => {
    const on = (s) => { if (pred(s)) { source.off(event, on); resolve(s); } };
    source.on(event, on);
  }), 10000, what);
}

test('xmpp.js: SCRAM login, 1:1 chat, a room, and a guest over WebSocket', async () => {
  const stamp = Date.now() % 100000;
  salon.addUser(`xa${stamp}`, 'alice-pw');
  salon.addUser(`xb${stamp}`, 'bob-pw');
  const room = `xmppjs${stamp}@rooms.localhost`;
  const mechanisms = [];
  const connect = async (options) => {
    const c = xmppClient({ domain: 'localhost', resource: 'xmppjs', ...options });
    c.on('error', () => {});
    c.on('send', (el) => { if (el.is('auth')) mechanisms.push(el.attrs.mechanism); });
    await withTimeout(c.start(), 15000, `xmpp.js login ${options.username || 'guest'}`);
    await c.send(xml('presence'));
    return c;
  };
  const alice = await connect({ service: `xmpp://127.0.0.1:${salon.c2s}`, username: `xa${stamp}`, password: 'alice-pw' });
  const bob = await connect({ service: `${salon.url.replace('http', 'ws')}/xmpp-websocket`, username: `xb${stamp}`, password: 'bob-pw' });
  const guest = await connect({ service: `${salon.url.replace('http', 'ws')}/xmpp-websocket`, domain: 'anon.localhost' });
  try {
    // Both accounts logged in with SCRAM (xmpp.js's own preference, given what Salon offers).
    assert.deepEqual(mechanisms.slice(0, 2), ['SCRAM-SHA-1', 'SCRAM-SHA-1']);
    assert.deepEqual(mechanisms[2], 'ANONYMOUS');

    const chat = next(bob, 'stanza', (s) => s.is('message') && s.getChildText('body') === 'hi bob', 'bob gets the chat');
    await alice.send(xml('message', { to: `xb${stamp}@localhost`, type: 'chat' }, xml('body', {}, 'hi bob')));
    assert.equal((await chat).attrs.from.split('/')[0], `xa${stamp}@localhost`);

    const joined = (c, nick) => next(c, 'stanza', (s) => s.is('presence') && s.attrs.from === `${room}/${nick}`
      && s.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChildren('status').some((st) => st.attrs.code === '110'), `${nick} joins`);
    const join = async (c, nick) => {
      const self = joined(c, nick);
      await c.send(xml('presence', { to: `${room}/${nick}` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
      return self;
    };
    await join(alice, 'alice');
    // Alice created the room: she accepts the default configuration (an instant room, §10.1.2).
    await alice.iqCaller.set(xml('query', 'http://jabber.org/protocol/muc#owner', xml('x', { xmlns: 'jabber:x:data', type: 'submit' })), room);
    await join(bob, 'bob');
    await join(guest, 'visitor');
    const heard = (c, nick, body) => next(c, 'stanza', (s) => s.is('message') && s.attrs.type === 'groupchat'
      && s.attrs.from === `${room}/${nick}` && s.getChildText('body') === body, `${body} heard`);
    const both = [heard(alice, 'bob', 'hello room'), heard(guest, 'bob', 'hello room')];
    await bob.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, 'hello room')));
    await Promise.all(both);
    const fromGuest = heard(alice, 'visitor', 'a guest says hi');
    await guest.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, 'a guest says hi')));
    await fromGuest;
  } finally {
    for (const c of [alice, bob, guest]) await c.stop().catch(() => {});
  }
});

test('StanzaJS: SCRAM login, 1:1 chat, a room, and a guest over BOSH', async () => {
  const stamp = Date.now() % 100000;
  salon.addUser(`sa${stamp}`, 'alice-pw');
  salon.addUser(`sb${stamp}`, 'bob-pw');
  const room = `stanzajs${stamp}@rooms.localhost`;
  const ws = `${salon.url.replace('http', 'ws')}/xmpp-websocket`;
  const mechanisms = [];
  const transportErrors = [];
  const connect = async (options, transports) => {
    const c = Stanza.createClient({ transports, resource: 'stanzajs', ...options });
    c.on('raw:outgoing', (text) => {
      const m = /<auth [^>]*mechanism=["']([^"']+)/.exec(text);
      if (m) mechanisms.push(m[1]);
    });
    const ready = next(c, 'session:started', () => true, `StanzaJS login ${options.jid}`);
    c.connect();
    await ready;
    // StanzaJS can answer a stream-management request that arrives while it is closing by
    // writing to its transport after ending it; a transport error before we asked it to
    // disconnect is a real failure, that one is StanzaJS's own shutdown and is tolerated.
    c.transport.on('error', (err) => {
      if (!(c.sessionTerminating && err.code === 'ERR_STREAM_WRITE_AFTER_END')) transportErrors.push(err);
    });
    c.sendPresence();
    return c;
  };
  const alice = await connect({ jid: `sa${stamp}@localhost`, password: 'alice-pw' }, { websocket: ws, bosh: false });
  const bob = await connect({ jid: `sb${stamp}@localhost`, password: 'bob-pw' }, { websocket: ws, bosh: false });
  const guest = await connect({ jid: 'anon.localhost', server: 'anon.localhost' }, { websocket: false, bosh: `${salon.url}/http-bind` });
  try {
    assert.match(mechanisms[0], /^SCRAM-SHA-(1|256)$/);
    assert.match(mechanisms[1], /^SCRAM-SHA-(1|256)$/);
    assert.equal(mechanisms[2], 'ANONYMOUS');

    const chat = next(bob, 'chat', (m) => m.body === 'hi bob', 'bob gets the chat');
    alice.sendMessage({ to: `sb${stamp}@localhost`, type: 'chat', body: 'hi bob' });
    assert.equal((await chat).from.split('/')[0], `sa${stamp}@localhost`);

    const join = async (c, nick) => {
      const joined = next(c, 'muc:join', (p) => p.from === `${room}/${nick}`, `${nick} joins`);
      c.joinRoom(room, nick);
      await joined;
    };
    await join(alice, 'alice');
    await alice.configureRoom(room, { type: 'submit' });
    await join(bob, 'bob');
    await join(guest, 'visitor');
    const heard = (c, nick, body) => next(c, 'groupchat', (m) => m.from === `${room}/${nick}` && m.body === body, `${body} heard`);
    const both = [heard(alice, 'bob', 'hello room'), heard(guest, 'bob', 'hello room')];
    bob.sendMessage({ to: room, type: 'groupchat', body: 'hello room' });
    await Promise.all(both);
    const fromGuest = heard(alice, 'visitor', 'a guest says hi');
    guest.sendMessage({ to: room, type: 'groupchat', body: 'a guest says hi' });
    await fromGuest;
    assert.deepEqual(transportErrors, []);
  } finally {
    // Wait for each client to be gone, so that nothing of theirs runs after the test.
    await Promise.all([alice, bob, guest].map((c) => new Promise((resolve) => {
      const timer = setTimeout(resolve, 5000);
      c.once('disconnected', () => { clearTimeout(timer); resolve(); });
      c.disconnect();
    })));
  }
});
