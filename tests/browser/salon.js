// Test fixtures: a real Salon process with a temporary data dir and free ports, headless
// Debian Chromium through playwright-core, and a slixmpp helper process.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const SALON_BIN = process.env.SALON_BIN ? path.resolve(REPO, process.env.SALON_BIN) : path.join(REPO, 'target/debug/salon');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PYTHON = process.env.SALON_PYTHON || path.join(REPO, 'tests/python/.venv/bin/python');
export const CONVERSE_DIR = process.env.SALON_CONVERSE_DIR || path.join(here, 'node_modules/converse.js/dist');
export const SHOTS = process.env.SALON_SCREENSHOTS || null;

// Ports this process handed out: a port closed at once can come back from the next bind, and
// Salon refuses two listeners on one port.
const handedOut = new Set();

function anyFreePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function freePort() {
  for (;;) {
    const port = await anyFreePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

const portOpen = (port) => new Promise((resolve) => {
  const c = connect(port, '127.0.0.1');
  c.on('connect', () => { c.destroy(); resolve(true); });
  c.on('error', () => resolve(false));
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Salon {
  async start({ resumeTimeout, top = [] } = {}) {
    if (!existsSync(SALON_BIN)) throw new Error(`Salon binary not found at ${SALON_BIN}: run cargo build -p salon`);
    this.dir = mkdtempSync(path.join(tmpdir(), 'salon-browser-'));
    this.c2s = await freePort();
    this.tls = await freePort();
    this.http = await freePort();
    this.url = `http://127.0.0.1:${this.http}`;
    const lines = [
      'domain = "localhost"',
      `data_dir = "${this.dir}/data"`,
      // Top-level keys (registration, admins) before the first table.
      ...top,
      '',
      '[listen]',
      `c2s = "127.0.0.1:${this.c2s}"`,
      `c2s_direct_tls = "127.0.0.1:${this.tls}"`,
      `http = "127.0.0.1:${this.http}"`,
      '',
      '[c2s]',
      'require_encryption = true',
      ...(resumeTimeout ? [`resume_timeout = ${resumeTimeout}`] : []),
      '',
      '[anonymous]',
      'domain = "anon.localhost"',
      '',
      '[muc]',
      'domain = "rooms.localhost"',
      '',
      '[limits]',
      'connections_per_ip = 1000',
      'login_failures_per_minute = 1000',
      '',
      '[upload]',
      'domain = "upload.localhost"',
      '',
      '[http]',
      `converse_dir = "${CONVERSE_DIR}"`,
      '',
      '[log]',
      `level = "${process.env.SALON_TEST_LOG_LEVEL || 'info'}"`,
      '',
    ];
    this.config = path.join(this.dir, 'salon.toml');
    writeFileSync(this.config, lines.join('\n'));
    this.logPath = path.join(this.dir, 'salon-stderr.log');
    const { openSync } = await import('node:fs');
    const log = openSync(this.logPath, 'a');
    this.proc = spawn(SALON_BIN, ['serve', '--config', this.config], {
      cwd: this.dir, stdio: ['ignore', log, log],
      env: { ...process.env },
    });
    this.exited = new Promise((r) => this.proc.on('exit', (code) => r(code)));
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`salon exited during startup:\n${this.log()}`);
      if (await portOpen(this.http)) return this;
      await sleep(100);
    }
    throw new Error(`salon did not listen on ${this.http}:\n${this.log()}`);
  }
  log() {
    try { return readFileSync(this.logPath, 'utf8').split('\n').slice(-60).join('\n'); } catch { return ''; }
  }
  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
      await this.exited;
      clearTimeout(t);
    }
    // SALON_KEEP_TMP=1 keeps the config, data and log for a look after the run.
    if (this.dir && !process.env.SALON_KEEP_TMP) rmSync(this.dir, { recursive: true, force: true });
  }
  /** Create the account `local`@localhost with `password` (the command line, as an admin does). */
  addUser(local, password) {
    const r = spawnSync(SALON_BIN, ['user', 'add', `${local}@localhost`, '--password', password, '--config', this.config], { cwd: this.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) throw new Error(`salon user add ${local}: ${r.stderr}`);
    return `${local}@localhost`;
  }
  /** `salon invite create ARGS…`; the landing page's path (/invite/TOKEN). */
  createInvite(...args) {
    const r = spawnSync(SALON_BIN, ['invite', 'create', ...args, '--config', this.config], { cwd: this.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) throw new Error(`salon invite create: ${r.stderr}`);
    const url = r.stdout.split('\n').find((l) => l.startsWith('http'));
    return new URL(url).pathname;
  }
  /** Does the server offer XEP-0198 to clients? (asks over WebSocket from a page) */
  async offersStreamManagement(page) {
    return page.evaluate(async (anon) => {
      const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/xmpp-websocket', 'xmpp');
      const frames = [];
      await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
      const wait = (re) => new Promise((res) => {
        const check = () => { const f = frames.find((x) => re.test(x)); if (f) res(f); else setTimeout(check, 20); };
        check();
      });
      ws.onmessage = (e) => frames.push(e.data);
      ws.send(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="${anon}" version="1.0"/>`);
      await wait(/mechanisms/);
      ws.send('<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="ANONYMOUS"/>');
      await wait(/<success/);
      frames.length = 0;
      ws.send(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="${anon}" version="1.0"/>`);
      const f = await wait(/features/);
      ws.close();
      return f.includes('urn:xmpp:sm:3');
    }, 'anon.localhost');
  }
}

let browser = null;
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (tests/run-browser.sh does)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return browser;
}

/** A new page in its own context (own storage), with console errors collected. */
export async function newPage(b, opts = {}) {
  const context = await b.newContext({ viewport: opts.viewport || { width: 1100, height: 720 }, ...opts.context });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  return page;
}

export async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + '.png') });
}

/** A slixmpp client in a room, driven over stdin/stdout with JSON lines (see muc_bot.py). */
export class Bot {
  /** `config`: room configuration fields the bot submits if it creates the room. */
  constructor(salon, room, nick, password, config) {
    this.salon = salon;
    this.room = room;
    this.nick = nick;
    this.password = password;
    this.config = config;
    this.events = [];
    this.waiters = [];
  }
  async start() {
    return this.run('muc_bot.py', [String(this.salon.c2s), this.room, this.nick, ...(this.password || this.config ? [this.password || ''] : []), ...(this.config ? [JSON.stringify(this.config)] : [])], 'joined');
  }
  /** Start the Python helper `script` (in this folder) with `args`; its JSON lines become
   *  events; resolves once it reports `ready`. */
  async run(script, args, ready) {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run tests/run-python.sh once (it creates the venv with slixmpp)`);
    this.proc = spawn(PYTHON, [path.join(here, script), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let ev;
      try { ev = JSON.parse(line); } catch { return; }
      this.events.push(ev);
      for (const w of [...this.waiters]) if (w.pred(ev)) { this.waiters.splice(this.waiters.indexOf(w), 1); w.resolve(ev); }
    });
    await this.waitFor((e) => e.event === ready, 30000);
    return this;
  }
  waitFor(pred, timeout = 15000) {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) { this.waiters.splice(i, 1); reject(new Error(`bot ${this.nick}: timed out; events so far:\n${JSON.stringify(this.events, null, 1)}`)); }
      }, timeout);
    });
  }
  say(body) {
    this.command({ say: body });
  }
  /** A private message to the occupant `nick` (XEP-0045 §7.5). */
  pm(nick, body) {
    this.command({ pm: nick, body });
  }
  changeNick(nick) {
    this.command({ nick });
  }
  /** Give `jid` (bare) an affiliation with the room, as its owner (XEP-0045 §10.3). */
  async setAffiliation(jid, affiliation) {
    this.command({ affiliation, jid });
    await this.waitFor((e) => e.event === 'affiliation' && e.jid === jid && e.affiliation === affiliation);
  }
  command(cmd) {
    this.proc.stdin.write(JSON.stringify(cmd) + '\n');
  }
  async stop() {
    if (this.proc.exitCode !== null) return;
    this.proc.stdin.write(JSON.stringify({ quit: true }) + '\n');
    const t = setTimeout(() => this.proc.kill(), 5000);
    await new Promise((r) => this.proc.on('exit', r));
    clearTimeout(t);
  }
}

/** What a visitor's browser fetches to show a room link (`/join/x`) up to the nick prompt:
 *  same-origin paths, in the order asked. The page weight figures sum these. */
/** Bytes on the wire for `path` of `salon` when the client accepts gzip (what a browser gets). */
export function gzipped(salon, path) {
  return new Promise((resolve, reject) => {
    http.get(`${salon.url}${path}`, { headers: { 'accept-encoding': 'gzip' } }, (r) => {
      let n = 0;
      r.on('data', (c) => { n += c.length; });
      r.on('end', () => resolve(n));
    }).on('error', reject);
  });
}

export async function firstLoad(b, salon) {
  const page = await newPage(b);
  const paths = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.origin === salon.url && !paths.includes(u.pathname)) paths.push(u.pathname);
  });
  await page.goto(`${salon.url}/join/x`);
  await page.locator('#nick-input').waitFor({ timeout: 20000 });
  await page.waitForLoadState('networkidle');
  await page.context().close();
  // Headless Chromium does not ask for the icon; a browser with a tab strip does.
  if (!paths.includes('/assets/favicon.svg')) paths.push('/assets/favicon.svg');
  return paths;
}

/** A web site of the test's own that starts Converse.js (the files Salon serves, from
 *  CONVERSE_DIR) as a site embedding a chat does: `/` is the page, `/dist/` Converse's files.
 *  With `testApi` the page hands Converse's API to the test as `window.capi` (its state as
 *  `window.cstate`); without, the page is a deployment's own, untouched. */
export class ConverseSite {
  constructor({ testApi = true } = {}) {
    this.testApi = testApi;
    this.settings = {};
  }
  async start() {
    this.server = http.createServer(async (req, res) => {
      const url = new URL(req.url, 'http://x');
      if (url.pathname === '/favicon.ico') {
        res.writeHead(204);
        return res.end();
      }
      if (url.pathname === '/') {
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end(this.page());
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
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${this.server.address().port}/`;
    return this;
  }
  page() {
    const settings = JSON.stringify({ assets_path: `${this.url}dist/`, ...this.settings });
    const init = this.testApi
      ? `window.converse.plugins.add('salon-test', { initialize() { window.capi = this._converse.api; window.cstate = this._converse.state; } });
  window.converse.initialize({ ...${settings}, whitelisted_plugins: ['salon-test'] });`
      : `window.converse.initialize(${settings});`;
    return `<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body class="converse-fullscreen"><script type="module">
const start = () => {
  if (!window.converse) return setTimeout(start, 20);
  ${init}
};
start();
</script></body></html>`;
  }
  /** The site's page in `context` (a new one if none) with these Converse settings; console
   *  errors gather in `page.errors`, uncaught ones also in `page.uncaught`. */
  async open(settings, context = null) {
    this.settings = settings;
    context ||= await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const page = await context.newPage();
    page.errors = [];
    page.uncaught = [];
    page.on('pageerror', (e) => { page.uncaught.push(String(e)); page.errors.push(String(e)); });
    page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); if (process.env.DEBUG_CONVERSE) console.log(m.text().slice(0, 600)); });
    await page.goto(this.url);
    return page;
  }
  close() {
    if (this.server) this.server.close();
  }
}

/** Converse settings that log in to the account `jid` over WebSocket at once. */
export function converseLogin(salon, jid, password, more = {}) {
  return {
    authentication: 'login',
    jid,
    password,
    auto_login: true,
    websocket_url: `${salon.url.replace('http', 'ws')}/xmpp-websocket`,
    discover_connection_methods: false,
    view_mode: 'fullscreen',
    loglevel: process.env.CONVERSE_LOGLEVEL || 'warn',
    ...more,
  };
}

/** Wait until Converse on `page` (a ConverseSite page with the test API) has fired `event`. */
export async function converseReady(page, event) {
  await page.waitForFunction(() => window.capi, null, { timeout: 20000 });
  await page.evaluate((e) => window.capi.waitUntil(e), event);
}

/** For a test file of Converse.js pages: a Salon, the browser and a ConverseSite (options as
 *  its constructor's), started before the file's tests and stopped after them. */
export function converseFixture(siteOptions) {
  const env = {};
  before(async () => {
    env.salon = await new Salon().start();
    env.browser = await launchBrowser();
    env.site = await new ConverseSite(siteOptions).start();
  });
  after(async () => {
    if (env.site) env.site.close();
    if (env.browser) await env.browser.close();
    if (env.salon) await env.salon.stop();
  });
  return env;
}

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
/** axe-core on `page` (its context made with `bypassCSP: true`): no serious or critical
 *  finding; the violations, for a closer look. */
export async function axe(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [], `axe-core on ${what}`);
  return result.violations;
}
