// The visitor's figures for the built-in web client, measured in headless Chromium on loopback:
// page weight (gzipped first load), link → first message, reload → session resumed, network
// back → session resumed, and how long a stalled connection goes unnoticed. Printed as a table
// (docs/web-client.md records them); the asserts are loose bounds that catch a regression.
//   SALON_BIN=$CARGO_TARGET_DIR/debug/salon bash tests/run-browser.sh --test-name-pattern figures

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Salon, Bot, launchBrowser, newPage, sleep, firstLoad, gzipped } from './salon.js';

let salon, browser;

before(async () => {
  salon = await new Salon().start();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (salon) await salon.stop();
});

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const gzippedBytes = (path) => gzipped(salon, path);

test('figures: page weight, link → first message, reload → resumed, network back → resumed, stall noticed', async () => {
  const figures = {};
  let weight = 0;
  for (const p of await firstLoad(browser, salon)) weight += await gzippedBytes(p);
  figures['page weight, gzipped first load (KB)'] = (weight / 1024).toFixed(1);

  const room = `figures${Date.now() % 100000}@rooms.localhost`;
  const bot = await new Bot(salon, room, 'host').start();
  try {
    bot.say('welcome, visitor');
    await bot.waitFor((e) => e.event === 'message' && e.body === 'welcome, visitor');
    const local = room.split('@')[0];

    const firstMessage = [];
    for (let i = 0; i < 5; i++) {
      const page = await newPage(browser);
      const t0 = Date.now();
      await page.goto(`${salon.url}/join/${local}?nick=v${i}`);
      await page.locator('#log article .text', { hasText: 'welcome, visitor' }).first().waitFor({ timeout: 20000 });
      firstMessage.push(Date.now() - t0);
      await page.context().close();
    }
    figures['link → first message (ms, median of 5)'] = median(firstMessage);

    const page = await newPage(browser);
    await page.goto(`${salon.url}/join/${local}?nick=stayer`);
    await page.waitForFunction(() => window.salon && window.salon.joined, null, { timeout: 20000 });
    const reloads = [];
    for (let i = 0; i < 3; i++) {
      await sleep(500);
      const t0 = Date.now();
      await page.reload();
      await page.waitForFunction(() => window.salon && window.salon.events.includes('resumed') && window.salon.conn.online, null, { timeout: 20000 });
      reloads.push(Date.now() - t0);
    }
    figures['reload → resumed (ms, median of 3)'] = median(reloads);

    // The network goes away for 3 s and the socket dies with it; then it comes back.
    await page.context().setOffline(true);
    await page.evaluate(() => window.salon.conn.abort());
    await sleep(3000);
    const t0 = Date.now();
    await page.context().setOffline(false);
    await page.waitForFunction(() => window.salon.joined && window.salon.conn.online, null, { timeout: 60000, polling: 50 });
    figures['network back → resumed (ms)'] = Date.now() - t0;

    // A connection that stalls: nothing arrives and nothing leaves, the socket stays open.
    await sleep(500);
    const stall = await page.evaluate(() => new Promise((resolve) => {
      const s = window.salon;
      const ws = s.conn.transport.ws;
      ws.onmessage = () => {};
      ws.send = () => {};
      const t = Date.now();
      const n = s.events.length;
      const check = setInterval(() => {
        if (s.events.slice(n).includes('disconnected')) {
          clearInterval(check);
          resolve(Date.now() - t);
        }
      }, 50);
      setTimeout(() => { clearInterval(check); resolve(-1); }, 90000);
    }));
    figures['stalled connection noticed after (ms)'] = stall;
    await page.context().close();
  } finally {
    await bot.stop();
  }
  console.log('\n| figure | value |\n| --- | --- |\n' + Object.entries(figures).map(([k, v]) => `| ${k} | ${v} |`).join('\n'));
  assert.ok(weight < 100 * 1024, `page weight ${weight}`);
  assert.ok(figures['link → first message (ms, median of 5)'] < 3000);
});
