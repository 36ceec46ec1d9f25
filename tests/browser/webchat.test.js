// Browser tests of the built-in web client (web/) and the /converse/ page against a real Salon.
// Run with tests/run-browser.sh (it installs Chromium and the npm packages and builds nothing:
// build target/debug/salon first).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Salon, Bot, launchBrowser, newPage, shot, sleep, firstLoad } from './salon.js';

let salon, browser;
const pages = [];

before(async () => {
  salon = await new Salon().start();
  browser = await launchBrowser();
});

after(async () => {
  for (const p of pages) await p.context().close().catch(() => {});
  if (browser) await browser.close();
  if (salon) await salon.stop();
});

async function open(url, opts) {
  const page = await newPage(browser, opts);
  pages.push(page);
  await page.goto(salon.url + url);
  return page;
}

/** Open a room link and wait until the page is in the room. */
async function join(url, opts) {
  const page = await open(url, opts);
  await page.waitForFunction(() => window.salon && window.salon.joined, null, { timeout: 20000 });
  return page;
}

async function send(page, body) {
  await page.fill('#input', body);
  await page.press('#input', 'Enter');
}

const messageIn = (page, body, timeout = 10000) =>
  page.locator('#log article .text', { hasText: body }).first().waitFor({ timeout });

let roomN = 0;
const room = (name) => `${name}${++roomN}${Date.now() % 100000}`;

test('the landing page has the form, the noscript warning, the xmpp: link and an embed snippet', async () => {
  const page = await open('/');
  await page.locator('#landing').waitFor();
  assert.equal(await page.locator('noscript').count(), 1);
  await page.fill('#landing-room', 'Sprint');
  assert.equal(await page.locator('#xmpp-link').getAttribute('href'), 'xmpp:sprint@rooms.localhost?join');
  const snippet = await page.inputValue('#embed-snippet');
  assert.match(snippet, /<iframe src="http:\/\/127\.0\.0\.1:\d+\/join\/sprint\?embed=1"/);
  await shot(page, 'landing');
  await page.fill('#landing-nick', 'lander');
  await page.click('#landing-form button[type=submit]');
  await page.waitForFunction(() => window.salon.joined);
  assert.equal(new URL(page.url()).pathname, '/join/sprint');
  assert.deepEqual(page.errors, []);
});

test('two pages join from a link, talk, and a slixmpp client in the room sees them and answers', async () => {
  const r = room('talk');
  const bot = await new Bot(salon, `${r}@rooms.localhost`, 'slixbot').start();
  try {
    const alice = await join(`/join/${r}?nick=alice`);
    // The other common link forms: ?channel=&nick= and /#room with a remembered nick.
    const bob = await join(`/?channel=${r}&nick=bob`, { viewport: { width: 390, height: 760 } });
    await bot.waitFor((e) => e.event === 'online' && e.nick === 'bob');
    await send(alice, 'hello from alice');
    await messageIn(bob, 'hello from alice');
    await send(bob, 'hi alice, bob here');
    await messageIn(alice, 'hi alice, bob here');
    await bot.waitFor((e) => e.event === 'message' && e.nick === 'alice' && e.body === 'hello from alice');
    await bot.waitFor((e) => e.event === 'message' && e.nick === 'bob' && e.body === 'hi alice, bob here');
    bot.say('hello browsers, slixmpp answering');
    await messageIn(alice, 'slixmpp answering');
    await messageIn(bob, 'slixmpp answering');
    // Occupant list with roles, on both pages.
    await alice.locator('#occupant-list .occupant', { hasText: 'slixbot' }).waitFor();
    const roles = await alice.locator('#occupant-list .role').allTextContents();
    assert.deepEqual(roles.map((s) => s.toLowerCase()), ['moderators', 'participants']);
    // A mention of bob is highlighted on bob's page.
    assert.equal(await bob.locator('#log article.mention', { hasText: 'hi alice' }).count(), 0);
    await messageIn(alice, 'hi alice');
    assert.equal(await alice.locator('#log article.mention', { hasText: 'hi alice, bob here' }).count(), 1);
    // A third visitor arrives with the nick remembered from an earlier visit, via /#room:
    // the prompt has it filled in, and says who is there.
    const carol = await open('/');
    await carol.evaluate(() => localStorage.setItem('salon:nick', 'carol'));
    await carol.goto(`${salon.url}/#${r}`);
    await carol.locator('#room-peek', { hasText: '3 people are here.' }).waitFor();
    assert.equal(await carol.inputValue('#nick-input'), 'carol');
    await carol.press('#nick-input', 'Enter');
    await carol.waitForFunction(() => window.salon.joined);
    assert.equal(await carol.evaluate(() => window.salon.nick), 'carol');
    await messageIn(carol, 'hello from alice'); // history
    await alice.locator('#log .noise', { hasText: 'carol joined' }).waitFor();
    await shot(alice, 'talk-desktop');
    await shot(bob, 'talk-phone');
    await bob.click('#toggle-occupants');
    await bob.locator('#occupant-list .occupant', { hasText: 'carol' }).waitFor();
    assert.equal(await bob.getAttribute('#toggle-occupants', 'aria-expanded'), 'true');
    await sleep(400); // the drawer slides in
    await shot(bob, 'talk-phone-occupants');
    for (const p of [alice, bob, carol]) assert.deepEqual(p.errors, []);
  } finally {
    await bot.stop();
  }
});

test('where WebSockets are blocked the page falls back to BOSH, talks, and survives a dropped connection', async () => {
  const r = room('bosh');
  const alice = await join(`/join/${r}?nick=alice`);
  const bob = await newPage(browser);
  pages.push(bob);
  // A network that lets HTTP through but not WebSockets: the socket fails as it opens.
  await bob.addInitScript(() => {
    window.WebSocket = class {
      constructor() {
        setTimeout(() => this.onclose && this.onclose({ code: 1006, reason: '' }), 10);
      }
      send() {}
      close() {}
    };
    window.WebSocket.OPEN = 1;
  });
  const posts = [];
  bob.on('request', (req) => { if (req.url().endsWith('/http-bind')) posts.push(req.method()); });
  await bob.goto(`${salon.url}/join/${r}?nick=bob`);
  await bob.waitForFunction(() => window.salon && window.salon.joined, null, { timeout: 20000 });
  assert.ok(await bob.evaluate(() => window.salon.bosh && window.salon.events.includes('bosh')));
  assert.ok(posts.length > 2 && posts.every((m) => m === 'POST'), `BOSH requests: ${posts}`);
  await send(alice, 'hello over websocket');
  await messageIn(bob, 'hello over websocket');
  await send(bob, 'hello over bosh');
  await messageIn(alice, 'hello over bosh');
  // A dropped BOSH connection resumes the same session (XEP-0198), still over BOSH.
  const comings = () => alice.locator('#log .noise', { hasText: /bob (left|joined)/ }).count();
  const before = await comings();
  await bob.evaluate(() => window.salon.conn.abort());
  await bob.waitForFunction(() => window.salon.events.filter((e) => e === 'resumed').length === 1, null, { timeout: 30000 });
  await send(bob, 'still here over bosh');
  await messageIn(alice, 'still here over bosh');
  assert.equal(await comings(), before, 'alice saw bob leave or join again');
  assert.deepEqual(bob.errors, []);
});

test('a password-protected room asks for the password, refuses a wrong one, lets the right one in', async () => {
  const r = room('secret');
  const bot = await new Bot(salon, `${r}@rooms.localhost`, 'keeper', 'open sesame').start();
  try {
    const page = await open(`/join/${r}?nick=visitor`);
    await page.locator('#password-row').waitFor({ state: 'visible', timeout: 15000 });
    assert.match(await page.textContent('#nick-error'), /needs a password/);
    await page.fill('#password-input', 'wrong');
    await page.click('#nick-form button[type=submit]');
    await page.locator('#nick-error', { hasText: /not accepted/ }).waitFor({ state: 'visible' });
    await shot(page, 'room-password');
    await page.fill('#password-input', 'open sesame');
    await page.click('#nick-form button[type=submit]');
    await page.waitForFunction(() => window.salon.joined, null, { timeout: 15000 });
    await send(page, 'the password worked');
    await bot.waitFor((e) => e.event === 'message' && e.nick === 'visitor' && e.body === 'the password worked');
    assert.deepEqual(page.errors, []);
  } finally {
    await bot.stop();
  }
});

test('a nick already in the room gets the server error and a free suggestion', async () => {
  const r = room('clash');
  const first = await join(`/join/${r}?nick=dana`);
  await join(`/join/${r}?nick=dana2`);
  const second = await open(`/join/${r}?nick=dana`);
  await second.locator('#nick-error').waitFor({ state: 'visible' });
  assert.match(await second.textContent('#nick-error'), /already used/);
  // dana2 is taken too: the first suggestion fails, the page then offers the next digit.
  assert.equal(await second.textContent('#nick-suggestion'), 'dana2');
  await shot(second, 'nick-conflict');
  await second.click('#nick-suggestion');
  await second.locator('#nick-suggestion', { hasText: 'dana3' }).waitFor({ state: 'visible' });
  await second.click('#nick-suggestion');
  await second.waitForFunction(() => window.salon.joined);
  assert.equal(await second.evaluate(() => window.salon.nick), 'dana3');
  await send(second, 'dana3 is here');
  await messageIn(first, 'dana3 is here');
});

test('a dropped connection reconnects by itself, says so, and the room goes on', async () => {
  const r = room('drop');
  const alice = await join(`/join/${r}?nick=alice`);
  const bob = await join(`/join/${r}?nick=bob`);
  await bob.context().setOffline(true);
  await bob.evaluate(() => window.salon.conn.abort()); // the socket dies
  await bob.locator('#status', { hasText: /You are offline\. Reconnecting in/ }).waitFor({ timeout: 5000 });
  await shot(bob, 'reconnecting');
  await sleep(1500); // a try or two fails while offline
  await bob.context().setOffline(false);
  await bob.waitForFunction(() => window.salon.joined && window.salon.conn.online, null, { timeout: 40000 });
  await bob.locator('#status', { hasText: /Connected/ }).waitFor({ timeout: 10000 });
  await send(bob, 'back online');
  await messageIn(alice, 'back online');
  await send(alice, 'welcome back');
  await messageIn(bob, 'welcome back');
  assert.equal(await bob.evaluate(() => window.salon.nick), 'bob');
});

test('corrections, replies, reactions and moderation (retract, kick) between two pages', async () => {
  const r = room('features');
  const owner = await join(`/join/${r}?nick=olga`);
  const guest = await join(`/join/${r}?nick=gus`);
  await send(guest, 'teh first message');
  await messageIn(owner, 'teh first message');
  // Up arrow edits the last message (XEP-0308).
  await guest.focus('#input');
  await guest.keyboard.press('ArrowUp');
  assert.equal(await guest.inputValue('#input'), 'teh first message');
  await guest.fill('#input', 'the first message');
  await guest.press('#input', 'Enter');
  await owner.locator('#log article', { hasText: 'the first message' }).locator('.edited', { hasText: 'edited' }).waitFor();
  assert.equal(await owner.locator('#log article .text', { hasText: 'teh first' }).count(), 0);
  // Reply (XEP-0461): the quote is shown, the fallback stripped.
  const target = owner.locator('#log article', { hasText: 'the first message' });
  await target.hover();
  await target.getByRole('button', { name: 'Reply to gus' }).click();
  await send(owner, 'a reply to gus');
  const reply = guest.locator('#log article', { hasText: 'a reply to gus' });
  await reply.locator('blockquote', { hasText: 'the first message' }).waitFor();
  assert.doesNotMatch(await reply.locator('.text').textContent(), /^>/);
  // Reaction (XEP-0444).
  const onGuest = guest.locator('#log article', { hasText: 'a reply to gus' });
  await onGuest.hover();
  await onGuest.getByRole('button', { name: 'React' }).click();
  await guest.getByRole('menuitem', { name: 'React with 👍' }).click();
  await owner.locator('#log article', { hasText: 'a reply to gus' }).locator('.chip', { hasText: '1' }).waitFor();
  // Moderator retraction (XEP-0425): the owner is a moderator.
  await send(guest, 'spam spam spam');
  const spam = owner.locator('#log article', { hasText: 'spam spam spam' });
  await spam.waitFor();
  owner.once('dialog', (d) => d.accept());
  await spam.hover();
  await spam.getByRole('button', { name: 'Remove message from gus' }).click();
  await guest.locator('#log article.retracted', { hasText: 'removed' }).waitFor();
  await shot(owner, 'features');
  // Kick.
  owner.once('dialog', (d) => d.accept('bye'));
  await owner.getByRole('button', { name: 'Kick gus' }).click();
  await guest.locator('#log .notice', { hasText: 'You were kicked' }).waitFor();
  await owner.locator('#log .notice', { hasText: 'gus was kicked' }).waitFor();
  assert.deepEqual(owner.errors, []);
});

test('reloading the page resumes the session: same nick, no leave/join seen by others', async (t) => {
  const probe = await open('/');
  if (!(await salon.offersStreamManagement(probe))) {
    t.skip('the server does not offer XEP-0198 stream management (urn:xmpp:sm:3) after anonymous login yet; resumption on reload needs it');
    return;
  }
  const r = room('reload');
  const bot = await new Bot(salon, `${r}@rooms.localhost`, 'watcher').start();
  try {
    const page = await join(`/join/${r}?nick=rita`);
    await bot.waitFor((e) => e.event === 'online' && e.nick === 'rita');
    await send(page, 'before reload');
    await bot.waitFor((e) => e.event === 'message' && e.body === 'before reload');
    bot.say('while you were here');
    await messageIn(page, 'while you were here');
    await page.reload();
    await page.waitForFunction(() => window.salon && window.salon.events.includes('resumed'), null, { timeout: 20000 });
    assert.equal(await page.evaluate(() => window.salon.nick), 'rita');
    await messageIn(page, 'before reload'); // the page kept what it showed
    bot.say('after your reload');
    await messageIn(page, 'after your reload');
    await send(page, 'after reload');
    await bot.waitFor((e) => e.event === 'message' && e.body === 'after reload');
    const noise = bot.events.filter((e) => (e.event === 'offline' || e.event === 'online') && e.nick === 'rita');
    assert.deepEqual(noise.map((e) => e.event), ['online'], 'the others saw rita leave or join again');
  } finally {
    await bot.stop();
  }
});

test('Converse.js at /converse/ joins anonymously and talks with the built-in client', async () => {
  const r = room('converse');
  const native = await join(`/join/${r}?nick=nina`);
  const conv = await open(`/converse/?nick=conny#${r}`);
  await native.locator('#occupant-list .occupant', { hasText: 'conny' }).waitFor({ timeout: 60000 });
  const textarea = conv.locator('textarea.chat-textarea');
  await textarea.waitFor({ timeout: 30000 });
  await textarea.fill('hello from converse');
  await textarea.press('Enter');
  await messageIn(native, 'hello from converse');
  await send(native, 'hello converse, from salon');
  await conv.locator('.chat-msg__text', { hasText: 'hello converse, from salon' }).waitFor({ timeout: 15000 });
  await shot(conv, 'converse');
});

// A 1×1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');

test('a visitor shares files (XEP-0363 upload, XEP-0066 link): an image shows inline on the other page, too large is refused', async () => {
  const r = room('files');
  const ann = await join(`/join/${r}?nick=ann`);
  const ben = await join(`/join/${r}?nick=ben`);
  const attach = ann.getByRole('button', { name: 'Share a file' });
  await attach.waitFor();
  assert.ok(await attach.isVisible());
  await ann.setInputFiles('#file-input', { name: 'cat.png', mimeType: 'image/png', buffer: PNG });
  const img = ben.locator('#log article a.attachment img[alt="cat.png"]');
  await img.waitFor({ timeout: 15000 });
  const src = await img.getAttribute('src');
  assert.match(src, /^http:\/\/127\.0\.0\.1:\d+\/upload\/.+\/cat\.png$/);
  assert.equal(await img.getAttribute('loading'), 'lazy');
  assert.equal(await img.evaluate((i) => i.closest('a').getAttribute('href')), src);
  const res = await fetch(src);
  assert.equal(res.status, 200);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), PNG);
  await ben.waitForFunction(() => { const i = document.querySelector('#log article img'); return i && i.complete && i.naturalWidth === 1; });
  // The message is the GET URL, with the same URL in <x xmlns='jabber:x:oob'>.
  assert.deepEqual(await ben.evaluate(() => { const m = window.salon.messages.at(-1); return [m.body, m.oob]; }), [src, src]);
  await ann.locator('#log article.own img[alt="cat.png"]').waitFor();
  assert.equal(await ann.locator('#uploads .upload').count(), 0);
  await shot(ben, 'shared-image');

  // Other files are links with the file name.
  await ann.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('some notes\n') });
  const link = ben.locator('#log article .file a', { hasText: 'notes.txt' });
  await link.waitFor({ timeout: 15000 });
  assert.match(await link.getAttribute('href'), /^http:\/\/127\.0\.0\.1:\d+\/upload\/.+\/notes\.txt$/);

  // An image pasted into the message box is shared too.
  await ann.evaluate((b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'image.png', { type: 'image/png' }));
    document.getElementById('input').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, PNG.toString('base64'));
  await ben.locator('#log article a.attachment img[alt="image.png"]').waitFor({ timeout: 15000 });
  assert.equal(await ann.inputValue('#input'), '');

  // Over the visitors' limit (10 MiB): the server refuses the slot and the page says why.
  await ann.setInputFiles('#file-input', { name: 'huge.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(11 * 1024 * 1024) });
  await ann.locator('#uploads .upload.bad', { hasText: 'huge.bin: file too large: max 10 MB' }).waitFor({ timeout: 15000 });
  await shot(ann, 'upload-too-large');
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(ben.errors, []);
});

const inRoomLog = (page, re) => page.locator('#log', { hasText: re }).count();
const pmLog = (page, nick) => page.locator(`section.log[aria-label="Private conversation with ${nick}"]`);
const pmTab = (page, nick) => page.locator('#convs .tab', { hasText: nick });

test('private conversations (XEP-0045 §7.5): both ways, unseen by the room, kept across a reload and a nick change, closed when the other leaves', async () => {
  const r = room('pm');
  // The slixmpp client creates the room allowing private messages between guests, and watches.
  const bot = await new Bot(salon, `${r}@rooms.localhost`, 'warden', null, { 'salon#roomconfig_guestpm': '1' }).start();
  try {
    const ann = await join(`/join/${r}?nick=ann`);
    const ben = await join(`/join/${r}?nick=ben`, { viewport: { width: 390, height: 760 } });
    await bot.waitFor((e) => e.event === 'online' && e.nick === 'ben');
    assert.equal(await ann.locator('#convs').isVisible(), false);

    // ann opens a conversation with ben from the occupant list and writes.
    await ann.getByRole('button', { name: 'Private message to ben' }).click();
    await pmTab(ann, 'ben').and(ann.locator('[aria-current=true]')).waitFor();
    assert.equal(await ann.getAttribute('#input', 'placeholder'), 'Private message to ben');
    assert.equal(await ann.locator('#log').isVisible(), false);
    await send(ann, 'psst ben, just between us');
    await pmLog(ann, 'ben').locator('article.own .text', { hasText: 'just between us' }).waitFor();

    // ben, on a phone, stays in the room; the conversation appears with an unread count.
    await pmTab(ben, 'ann').locator('.unread', { hasText: '1' }).waitFor();
    assert.equal(await ben.locator('#log').isVisible(), true);
    assert.equal(await pmLog(ben, 'ann').isVisible(), false);
    await pmTab(ben, 'ann').click();
    await pmLog(ben, 'ann').locator('article', { hasText: 'just between us' }).locator('.meta .nick', { hasText: 'ann' }).waitFor();
    assert.equal(await ben.locator('#log').isVisible(), false);
    assert.equal(await pmTab(ben, 'ann').locator('.unread').count(), 0);
    assert.equal(await ben.locator('#status').isVisible(), false); // the "Private message from ann" line went
    await shot(ben, 'pm-phone');
    await send(ben, 'got it, ann');
    await pmLog(ann, 'ben').locator('article:not(.own) .text', { hasText: 'got it, ann' }).waitFor();
    assert.equal(await pmTab(ann, 'ben').locator('.unread').count(), 0); // in view: nothing unread

    // Back to the room, then /msg from there; ann's room tab counts what she has not seen.
    await pmTab(ben, `#${r}`).click();
    assert.equal(await ben.locator('#log').isVisible(), true);
    assert.equal(await ben.getAttribute('#input', 'placeholder'), 'Message');
    await send(ben, '/msg ann and one more, by command');
    await pmLog(ann, 'ben').locator('article .text', { hasText: 'one more, by command' }).waitFor();
    assert.equal(await pmLog(ben, 'ann').isVisible(), true); // the command shows the conversation
    await pmTab(ben, `#${r}`).click();
    await send(ben, 'back in the room');
    await pmTab(ann, `#${r}`).locator('.unread', { hasText: '1' }).waitFor();
    await shot(ann, 'pm-desktop');

    // Nobody else saw any of it: the slixmpp client got the room message but no private one,
    // and the private lines are in neither page's room log.
    await bot.waitFor((e) => e.event === 'message' && e.nick === 'ben' && e.body === 'back in the room');
    const secret = /just between us|got it, ann|by command/;
    assert.deepEqual(bot.events.filter((e) => secret.test(e.body || '') || e.event === 'private'), []);
    assert.equal(await inRoomLog(ann, secret), 0);
    assert.equal(await inRoomLog(ben, secret), 0);

    // A phone opens a conversation from the people drawer, which then gets out of the way.
    await ben.click('#toggle-occupants');
    await ben.getByRole('button', { name: 'Private message to ann' }).click();
    assert.equal(await ben.getAttribute('#toggle-occupants', 'aria-expanded'), 'false');
    assert.equal(await pmLog(ben, 'ann').isVisible(), true);

    // A reload keeps the conversation.
    await ben.reload();
    await ben.waitForFunction(() => window.salon && window.salon.joined, null, { timeout: 20000 });
    await pmLog(ben, 'ann').locator('article', { hasText: 'got it, ann' }).waitFor();
    assert.equal(await pmLog(ben, 'ann').isVisible(), true);
    assert.deepEqual(ben.errors, []);

    // The slixmpp client writes privately, then changes nick: the conversation follows it.
    bot.pm('ann', 'warden here, privately');
    await pmTab(ann, 'warden').locator('.unread', { hasText: '1' }).waitFor();
    await pmTab(ann, 'warden').click();
    await pmLog(ann, 'warden').locator('article .text', { hasText: 'warden here, privately' }).waitFor();
    await send(ann, 'hello warden');
    await bot.waitFor((e) => e.event === 'private' && e.nick === 'ann' && e.body === 'hello warden');
    bot.changeNick('keeper');
    await pmLog(ann, 'keeper').locator('.notice', { hasText: 'warden is now known as keeper' }).waitFor();
    assert.equal(await pmLog(ann, 'keeper').locator('article', { hasText: 'warden here, privately' }).count(), 1);
    assert.equal(await pmTab(ann, 'warden').count(), 0);
    assert.equal(await ann.getAttribute('#input', 'placeholder'), 'Private message to keeper');
    await send(ann, 'still with you, keeper');
    await bot.waitFor((e) => e.event === 'private' && e.nick === 'ann' && e.body === 'still with you, keeper');

    // ben leaves: ann's conversation with him says so, and she can no longer write there.
    await pmTab(ann, 'ben').click();
    assert.equal(await ann.locator('#input').isDisabled(), false);
    await ben.click('#leave');
    await pmLog(ann, 'ben').locator('.notice', { hasText: 'ben left the room' }).waitFor();
    assert.equal(await ann.locator('#input').isDisabled(), true);
    assert.equal(await ann.getAttribute('#input', 'placeholder'), 'ben has left the room');
    assert.equal(await ann.locator('#convs .pm-tab.gone', { hasText: 'ben' }).count(), 1);
    await shot(ann, 'pm-gone');
    // Closing the conversation returns to the room.
    await ann.getByRole('button', { name: 'Close the conversation with ben' }).click();
    assert.equal(await pmTab(ann, 'ben').count(), 0);
    assert.equal(await ann.locator('#log').isVisible(), true);
    assert.equal(await ann.locator('#input').isDisabled(), false);
    assert.deepEqual(ann.errors, []);
  } finally {
    await bot.stop();
  }
});

test('a private message the room refuses (none between guests by default) shows as not delivered, and why', async () => {
  const r = room('nopm');
  const dee = await join(`/join/${r}?nick=dee`); // creates the room with the default configuration
  const eve = await join(`/join/${r}?nick=eve`);
  await dee.locator('#occupant-list .occupant', { hasText: 'eve' }).waitFor();
  // /msg to someone who is not there is caught before sending, and the text is kept.
  await send(dee, '/msg nobody hello?');
  await dee.locator('#log .notice.bad', { hasText: 'No one else called “nobody” is in the room.' }).waitFor();
  assert.equal(await dee.inputValue('#input'), '/msg nobody hello?');
  await send(dee, '/msg eve are you there?');
  const sent = pmLog(dee, 'eve').locator('article.failed', { hasText: 'are you there?' });
  await sent.locator('.why', { hasText: 'Not delivered: private messages are not allowed in this room.' }).waitFor();
  assert.equal(await inRoomLog(dee, 'are you there?'), 0);
  await shot(dee, 'pm-refused');
  // The room itself still works, and nothing reached eve, neither privately nor in the room.
  await pmTab(dee, `#${r}`).click();
  await send(dee, 'room still fine');
  await messageIn(eve, 'room still fine');
  assert.equal(await eve.locator('body', { hasText: 'are you there?' }).count(), 0);
  assert.equal(await eve.locator('#convs').isVisible(), false);
  assert.deepEqual(dee.errors, []);
  assert.deepEqual(eve.errors, []);
});

test('client files are gzipped, carry ETags (304 on revalidation), fit the 100 KB budget; missing Converse files 404', async () => {
  const res = await fetch(`${salon.url}/converse/dist/no-such-file.js`);
  assert.equal(res.status, 404);
  const get = (path, headers = {}) => new Promise((resolve, reject) => {
    http.get(`${salon.url}${path}`, { headers }, (r) => {
      let n = 0;
      r.on('data', (c) => { n += c.length; });
      r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, bytes: n }));
    }).on('error', reject);
  });
  // The first load: the page, its stylesheet, modules and icon, and config.json; the modules
  // for private conversations, files, BOSH, moderation and the landing page come only when used.
  const paths = await firstLoad(browser, salon);
  for (const want of ['/join/x', '/assets/style.css', '/assets/app.js', '/assets/xmpp.js', '/assets/colors.js', '/config.json']) assert.ok(paths.includes(want), `${want} in ${paths}`);
  for (const lazy of ['pm', 'upload', 'bosh', 'tools', 'landing']) assert.ok(!paths.includes(`/assets/${lazy}.js`), `${lazy}.js in the first load`);
  let total = 0;
  for (const p of paths) {
    const r = await get(p, { 'accept-encoding': 'gzip' });
    assert.equal(r.status, 200, p);
    if (p.endsWith('.js')) assert.match(r.headers['content-type'], /javascript/);
    if (p !== '/config.json') {
      assert.ok(r.headers.etag, p);
      const again = await get(p, { 'accept-encoding': 'gzip', 'if-none-match': r.headers.etag });
      assert.equal(again.status, 304, p);
    }
    total += r.bytes;
  }
  console.log(`first load, gzipped bodies: ${total} bytes`);
  assert.ok(total < 100 * 1024, `first load is ${total} bytes compressed`);
  const cfg = await (await fetch(`${salon.url}/config.json`)).json();
  assert.equal(cfg.anonymous_domain, 'anon.localhost');
  assert.equal(cfg.muc_domain, 'rooms.localhost');
});

test('nick colours follow XEP-0392 (test vectors of §11)', async () => {
  const page = await open('/');
  const angles = await page.evaluate(async () => {
    const { hueAngle } = await import('/assets/colors.js');
    return Promise.all(['Romeo', 'juliet@capulet.lit', '😺', 'council'].map(hueAngle));
  });
  const want = [327.255249, 209.410400, 331.199341, 359.994507];
  angles.forEach((a, i) => assert.ok(Math.abs(a - want[i]) < 1e-4, `${a} vs ${want[i]}`));
});
