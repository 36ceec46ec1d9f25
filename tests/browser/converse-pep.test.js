// Converse.js logged in with an account: a room it bookmarks is stored in the account's PEP
// (XEP-0402, which Salon announces with #compat) and is back after a reload and after logging in
// again in a fresh browser; nothing on the console about PEP, bookmarks, avatars or OMEMO.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Salon, launchBrowser, sleep, CONVERSE_DIR } from './salon.js';

let salon, browser, site, siteUrl, settings;

before(async () => {
  salon = await new Salon().start();
  browser = await launchBrowser();
  site = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(page(settings));
    }
    const file = path.join(CONVERSE_DIR, path.normalize(decodeURIComponent(url.pathname.replace(/^\/dist\//, ''))));
    try {
      const body = await readFile(file);
      const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : file.endsWith('.json') ? 'application/json' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
      res.writeHead(200, { 'content-type': type });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  siteUrl = `http://127.0.0.1:${site.address().port}/`;
});

after(async () => {
  if (site) site.close();
  if (browser) await browser.close();
  if (salon) await salon.stop();
});

// A page that starts Converse with a small plugin handing its API to the test.
function page(settings) {
  return `<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body class="converse-fullscreen"><script type="module">
const start = () => {
  if (!window.converse) return setTimeout(start, 20);
  window.converse.plugins.add('salon-test', { initialize() { window.capi = this._converse.api; window.cstate = this._converse.state; } });
  window.converse.initialize({ ...${JSON.stringify(settings)}, whitelisted_plugins: ['salon-test'] });
};
start();
</script></body></html>`;
}

async function open(context, pageSettings) {
  settings = { assets_path: `${siteUrl}dist/`, ...pageSettings };
  const p = await context.newPage();
  p.errors = [];
  p.on('pageerror', (e) => p.errors.push(String(e)));
  p.on('console', (m) => { if (m.type() === 'error') p.errors.push(m.text()); if (process.env.DEBUG_CONVERSE) console.log(m.text().slice(0, 600)); });
  await p.goto(siteUrl);
  return p;
}

/** The bookmarks Converse holds once it has fetched them from the server. */
async function bookmarks(p) {
  await p.waitForFunction(() => window.capi, null, { timeout: 20000 });
  return p.evaluate(async () => {
    await window.capi.waitUntil('bookmarksInitialized');
    return window.cstate.bookmarks.models.map((b) => [b.get('jid'), b.get('name'), b.get('nick')]);
  });
}

test('Converse.js keeps a bookmarked room across a reload and a new login, without PEP errors', async () => {
  const jid = salon.addUser('reader', 'secret words');
  const room = `books${Date.now() % 100000}@rooms.localhost`;
  const login = {
    authentication: 'login',
    jid,
    password: 'secret words',
    auto_login: true,
    websocket_url: `${salon.url.replace('http', 'ws')}/xmpp-websocket`,
    discover_connection_methods: false,
    view_mode: 'fullscreen',
    loglevel: process.env.CONVERSE_LOGLEVEL || 'warn',
  };
  const first = await browser.newContext();
  let p = await open(first, login);
  try {
    assert.deepEqual(await bookmarks(p), []);
    await p.evaluate((room) => window.capi.bookmarks.set({ jid: room, name: 'Book club', nick: 'reader', autojoin: false }), room);
    // Until the server has it: the publish goes out asynchronously.
    await sleep(1500);
    await p.reload();
    // Converse reads its own cache after a reload; a new login below asks the server.
    assert.deepEqual(await bookmarks(p), [[room, 'Book club', 'reader']]);
    const errorsBefore = p.errors;
    await first.close();

    const second = await browser.newContext();
    p = await open(second, login);
    assert.deepEqual(await bookmarks(p), [[room, 'Book club', 'reader']], `server log:\n${salon.log()}`);
    await sleep(1000);
    const pepErrors = [...errorsBefore, ...p.errors].filter((e) => /pubsub|pep\b|omemo|bookmark|vcard|avatar|item-not-found|service-unavailable|feature-not-implemented/i.test(e));
    assert.deepEqual(pepErrors, [], 'console errors about PEP');
    await second.close();
  } catch (e) {
    throw new Error(`${e.message}\npage errors: ${p.errors.join(' | ')}`);
  }
});
