// The invitation landing page (/invite/TOKEN) in headless Chromium: it explains the server,
// shows the xmpp: link with its QR code and apps per platform, signs up in the browser, and
// says so when the link is used up. Run with tests/run-browser.sh.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Salon, launchBrowser, newPage, shot, gzipped } from './salon.js';

let salon, browser;

before(async () => {
  salon = await new Salon().start({ top: ['registration = "invite"'] });
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (salon) await salon.stop();
});

test('an invitation page signs up in the browser, then says it is used up', async () => {
  const path = salon.createInvite('--uses', '1');
  const token = path.split('/').pop();
  const page = await newPage(browser);
  const response = await page.goto(salon.url + path);
  assert.equal(response.status(), 200);
  assert.match(await page.locator('h1').innerText(), /invited to localhost/);
  const link = page.locator('a[href^="xmpp:"]');
  assert.equal(await link.getAttribute('href'), `xmpp:localhost?register;preauth=${token}`);
  const qr = page.locator('.qr svg');
  const box = await qr.boundingBox();
  assert.ok(box && box.width >= 100 && box.height >= 100, `QR code drawn: ${JSON.stringify(box)}`);
  for (const app of ['Conversations', 'Monal', 'Gajim']) {
    assert.ok(await page.getByRole('link', { name: app }).first().isVisible(), app);
  }
  await shot(page, 'invite');

  // A reserved name is refused with the reason, and the form keeps what was typed.
  await page.fill('input[name=username]', 'postmaster');
  await page.fill('input[name=password]', 'a-password');
  await page.click('button[type=submit]');
  await page.locator('.error').waitFor();
  assert.match(await page.locator('.error').innerText(), /reserved/);
  assert.equal(await page.inputValue('input[name=username]'), 'postmaster');

  await page.fill('input[name=username]', 'webby');
  await page.fill('input[name=password]', 'a-password');
  await page.click('button[type=submit]');
  await page.getByText('webby@localhost').waitFor();
  assert.match(await page.locator('h1').innerText(), /Welcome/);

  const again = await page.goto(salon.url + path);
  assert.equal(again.status(), 410);
  assert.match(await page.locator('body').innerText(), /already been used/);
  await page.context().close();
});

test('the invitation page fits the built-in client\'s first-load budget', async () => {
  // docs/web-client.md: the built-in client's first load is at most 33.6 KB gzipped; the
  // invitation page, QR code and all, is held to the same budget.
  const path = salon.createInvite('--uses', '1');
  const page = await newPage(browser);
  const paths = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.origin === salon.url && !paths.includes(u.pathname)) paths.push(u.pathname);
  });
  await page.goto(salon.url + path);
  await page.waitForLoadState('networkidle');
  await page.context().close();
  let weight = 0;
  for (const p of paths) weight += await gzipped(salon, p);
  assert.ok(paths.includes(path), `the page itself was fetched: ${paths}`);
  assert.ok(weight > 1000, `measured something: ${weight} bytes from ${paths}`);
  assert.ok(weight <= 33.6 * 1024, `invitation page weighs ${weight} bytes gzipped (${paths})`);
  console.log(`invitation page, gzipped first load: ${(weight / 1024).toFixed(1)} KB (${paths.length} requests)`);
});
