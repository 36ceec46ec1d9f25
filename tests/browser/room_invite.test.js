// Room invite links in the built-in web client (issue 16 item 3): a members-only room turns a
// visitor away, `/join/ROOM?invite=TOKEN` (made with `salon room invite`) lets one in, and the
// same link once used up says so; an owner makes, copies, lists and revokes links on the page
// (ad-hoc commands on the room, run by web/assets/tools.js). Run with tests/run-browser.sh.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Salon, Bot, SALON_BIN, launchBrowser, newPage, shot, axe } from './salon.js';

let salon, browser;

before(async () => {
  salon = await new Salon().start();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (salon) await salon.stop();
});

function roomInvite(room, ...args) {
  const r = spawnSync(SALON_BIN, ['room', 'invite', room, ...args, '--config', salon.config], { cwd: salon.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`salon room invite: ${r.stderr}`);
  const url = new URL(r.stdout.split('\n').find((l) => l.startsWith('http')));
  return url.pathname + url.search;
}

async function open(path) {
  const page = await newPage(browser);
  await page.goto(salon.url + path);
  return page;
}

test('a members-only room lets in the visitor who follows its invite link, once', async () => {
  const r = `club${Date.now() % 100000}`;
  const bot = await new Bot(salon, `${r}@rooms.localhost`, 'host', '', { 'muc#roomconfig_membersonly': '1' }).start();
  try {
    // Without the link: turned away.
    const outsider = await open(`/join/${r}?nick=outsider`);
    await outsider.getByText('This room is for members only.').waitFor({ timeout: 20000 });
    assert.equal(await outsider.evaluate(() => window.salon.joined), false);
    await outsider.context().close();

    const path = roomInvite(r, '--uses', '1');
    assert.match(path, new RegExp(`^/join/${r}\\?invite=[a-z0-9]{24}$`));
    const friend = await open(`${path}&nick=friend`);
    await friend.waitForFunction(() => window.salon && window.salon.joined, null, { timeout: 20000 });
    await bot.waitFor((e) => e.event === 'online' && e.nick === 'friend');
    await friend.fill('#input', 'thanks for the link');
    await friend.press('#input', 'Enter');
    await bot.waitFor((e) => e.event === 'message' && e.nick === 'friend' && e.body === 'thanks for the link');
    await shot(friend, 'room-invite');
    assert.deepEqual(friend.errors, []);
    await friend.context().close();

    // Its one use is spent: the next visitor with it hears why.
    const late = await open(`${path}&nick=late`);
    await late.getByText('This invite link has expired, been used up or been revoked.').waitFor({ timeout: 20000 });
    await late.context().close();
  } finally {
    await bot.stop();
  }
});

test('an owner makes an invite link on the page, copies it, lists it and revokes it', async () => {
  const r = `guild${Date.now() % 100000}`;
  const bot = await new Bot(salon, `${r}@rooms.localhost`, 'host', '', { 'muc#roomconfig_membersonly': '1' }).start();
  try {
    // A guest of the page becomes an owner of the members-only room, then joins it.
    const owner = await newPage(browser, { context: { bypassCSP: true } });
    await owner.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: salon.url });
    await owner.goto(`${salon.url}/join/${r}`);
    const jid = await owner.waitForFunction(() => window.salon.conn?.online && window.salon.conn.jid, null, { timeout: 20000 });
    await bot.setAffiliation((await jid.jsonValue()).split('/')[0], 'owner');
    await owner.fill('#nick-input', 'keeper');
    await owner.press('#nick-input', 'Enter');
    await owner.waitForFunction(() => window.salon.joined, null, { timeout: 20000 });

    // The owner makes a link for five people from the page and copies it.
    await owner.click('#invite-links');
    await owner.fill('#link-uses', '5');
    await owner.selectOption('#link-expires', '86400');
    await owner.getByRole('button', { name: 'Make a link' }).click();
    const link = owner.locator('#links-dialog .share-url');
    await link.waitFor({ timeout: 10000 });
    const url = await link.getAttribute('href');
    assert.match(url, new RegExp(`^${salon.url}/join/${r}\\?invite=[a-z0-9]{24}$`));
    await owner.locator('#links-dialog').getByRole('button', { name: 'Copy link' }).click();
    assert.equal(await owner.evaluate(() => navigator.clipboard.readText()), url);
    await shot(owner, 'invite-links');
    await axe(owner, 'the invite links dialog');

    // Someone with the link gets in; the room's guests do not see the owner's tools.
    const friend = await open(`${new URL(url).pathname}${new URL(url).search}&nick=friend`);
    await friend.waitForFunction(() => window.salon && window.salon.joined, null, { timeout: 20000 });
    await bot.waitFor((e) => e.event === 'online' && e.nick === 'friend');
    assert.equal(await friend.locator('#invite-links').count(), 0);
    await friend.context().close();

    // The list shows the link with a use taken; the owner revokes it.
    await owner.click('#links-dialog >> text=Close');
    await owner.click('#invite-links');
    const item = owner.locator('#links-dialog li', { hasText: url });
    await item.getByText('4 uses left').waitFor({ timeout: 10000 });
    await item.getByRole('button', { name: /Revoke/ }).click();
    await owner.locator('#links-dialog').getByText('The link no longer works.').waitFor({ timeout: 10000 });
    await item.waitFor({ state: 'detached', timeout: 10000 });
    await owner.locator('#links-dialog li', { hasText: 'None yet.' }).waitFor({ timeout: 10000 });
    assert.deepEqual(owner.errors, []);

    // The next visitor with it hears why they cannot come in.
    const late = await open(`${new URL(url).pathname}${new URL(url).search}&nick=late`);
    await late.getByText('This invite link has expired, been used up or been revoked.').waitFor({ timeout: 20000 });
    assert.equal(await late.evaluate(() => window.salon.joined), false);
    await late.context().close();
    await owner.context().close();
  } finally {
    await bot.stop();
  }
});
