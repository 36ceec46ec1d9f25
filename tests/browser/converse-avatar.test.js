// Converse.js logged in with an account sets the user's avatar through its own profile dialog
// (it stores a vCard with a PHOTO, XEP-0054); a slixmpp client of another account subscribed to
// the first sees the new avatar (a XEP-0084 metadata notification or the XEP-0153 hash in
// presence) and fetches the same PNG bytes from the XEP-0084 data node and from the vCard:
// Salon's vCard -> PEP conversion (XEP-0398) seen by two clients we did not write.
//
// Salon's own /converse/ page logs in anonymously only, so, like converse-pep.test.js, the test
// serves a page of its own starting Converse.js from the same dist/ directory Salon serves.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { Salon, Bot, PYTHON, launchBrowser, CONVERSE_DIR } from './salon.js';

const here = path.dirname(fileURLToPath(import.meta.url));
let salon, browser, site, siteUrl, settings;

// A valid 1x1 PNG: small enough that Converse stores it as it is (it only recompresses >100 KB).
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
const PNG_SHA1 = createHash('sha1').update(PNG).digest('hex');

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

function page(settings) {
  return `<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body class="converse-fullscreen"><script type="module">
const start = () => {
  if (!window.converse) return setTimeout(start, 20);
  window.converse.plugins.add('salon-test', { initialize() { window.capi = this._converse.api; } });
  window.converse.initialize({ ...${JSON.stringify(settings)}, whitelisted_plugins: ['salon-test'] });
};
start();
</script></body></html>`;
}

/** avatar_watcher.py: a slixmpp client of account `jid` subscribing to `contact`. */
class Watcher extends Bot {
  constructor(salon, jid, password, contact) {
    super(salon, contact, jid.split('@')[0], password);
    this.args = [String(salon.c2s), jid, password, contact];
  }
  async start() {
    this.proc = spawn(PYTHON, [path.join(here, 'avatar_watcher.py'), ...this.args], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let ev;
      try { ev = JSON.parse(line); } catch { return; }
      this.events.push(ev);
      for (const w of [...this.waiters]) if (w.pred(ev)) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(ev); }
    });
    await this.waitFor((e) => e.event === 'session', 30000);
    return this;
  }
}

test('an avatar set in Converse.js reaches a second client as XEP-0084 and vCard with the same bytes', async () => {
  const alice = salon.addUser('alice', 'secret words');
  const bob = salon.addUser('bob', 'other words');
  settings = {
    assets_path: `${siteUrl}dist/`,
    authentication: 'login',
    jid: alice,
    password: 'secret words',
    auto_login: true,
    // Accept bob's subscription request and subscribe back, without a click.
    auto_subscribe: true,
    websocket_url: `${salon.url.replace('http', 'ws')}/xmpp-websocket`,
    discover_connection_methods: false,
    view_mode: 'fullscreen',
    loglevel: process.env.CONVERSE_LOGLEVEL || 'warn',
  };
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const p = await context.newPage();
  p.errors = [];
  p.on('pageerror', (e) => p.errors.push(String(e)));
  p.on('console', (m) => { if (m.type() === 'error') p.errors.push(m.text()); });
  let watcher;
  try {
    await p.goto(siteUrl);
    await p.waitForFunction(() => window.capi, null, { timeout: 20000 });
    await p.evaluate(() => window.capi.waitUntil('rosterContactsFetched'));

    watcher = await new Watcher(salon, bob, 'other words', alice).start();
    await watcher.waitFor((e) => e.event === 'roster' && (e.subscription === 'to' || e.subscription === 'both'), 20000);

    // The profile dialog: the avatar in the control box opens it; the picture is its file input.
    await p.locator('a.show-profile').click();
    const input = p.locator('converse-image-picker input[name="avatar_image"]');
    await input.waitFor({ state: 'attached', timeout: 10000 });
    await input.setInputFiles({ name: 'avatar.png', mimeType: 'image/png', buffer: PNG });
    await p.locator('#profile-tabpanel button.save-form').click();

    // The server tells bob either way; both ways name the SHA-1 of the PNG (XEP-0084 §4.2).
    const seen = await watcher.waitFor((e) => (e.event === 'metadata' || e.event === 'photo_hash') && e.id === PNG_SHA1, 20000);
    const avatar = await watcher.waitFor((e) => e.event === 'avatar' && e.id === PNG_SHA1, 20000);
    assert.equal(avatar.pep, PNG.toString('base64'), `XEP-0084 data node (${avatar.pep_error || 'no error'}); seen as ${seen.event}`);
    assert.equal(avatar.vcard, PNG.toString('base64'), `vCard PHOTO (${avatar.vcard_error || 'no error'})`);
    // A PEP notification proper, not only the presence hash.
    const metadata = await watcher.waitFor((e) => e.event === 'metadata' && e.id === PNG_SHA1, 10000);
    assert.equal(metadata.type, 'image/png');
    assert.equal(Number(metadata.bytes), PNG.length);
    // (Converse fetching its own OMEMO bundle before it is published is not about avatars.)
    const avatarErrors = p.errors.filter((e) => /vcard|avatar/i.test(e));
    assert.deepEqual(avatarErrors, [], 'console errors about avatars');
  } catch (e) {
    throw new Error(`${e.message}\nwatcher events: ${JSON.stringify(watcher?.events)}\npage errors: ${p.errors.join(' | ')}\nserver log:\n${salon.log()}`);
  } finally {
    if (watcher) await watcher.stop();
    await context.close();
  }
});
