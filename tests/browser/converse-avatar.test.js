// Converse.js logged in with an account sets the user's avatar through its own profile dialog
// (it stores a vCard with a PHOTO, XEP-0054); a slixmpp client of another account subscribed to
// the first sees the new avatar (a XEP-0084 metadata notification or the XEP-0153 hash in
// presence) and fetches the same PNG bytes from the XEP-0084 data node and from the vCard:
// Salon's vCard -> PEP conversion (XEP-0398) seen by two clients we did not write.
//
// Salon's own /converse/ page logs in anonymously only, so, like converse-pep.test.js, the test
// serves a page of its own starting Converse.js from the same dist/ directory Salon serves.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Bot, converseFixture, converseLogin, converseReady } from './salon.js';

const env = converseFixture();

// A valid 1x1 PNG: small enough that Converse stores it as it is (it only recompresses >100 KB).
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
const PNG_SHA1 = createHash('sha1').update(PNG).digest('hex');

/** avatar_watcher.py: a slixmpp client of account `jid` subscribing to `contact`. */
class Watcher extends Bot {
  constructor(salon, jid, password, contact) {
    super(salon, contact, jid.split('@')[0], password);
    this.args = [String(salon.c2s), jid, password, contact];
  }
  start() {
    return this.run('avatar_watcher.py', this.args, 'session');
  }
}

test('an avatar set in Converse.js reaches a second client as XEP-0084 and vCard with the same bytes', async () => {
  const alice = env.salon.addUser('alice', 'secret words');
  const bob = env.salon.addUser('bob', 'other words');
  // Accept bob's subscription request and subscribe back, without a click.
  const p = await env.site.open(converseLogin(env.salon, alice, 'secret words', { auto_subscribe: true }));
  let watcher;
  try {
    await converseReady(p, 'rosterContactsFetched');

    watcher = await new Watcher(env.salon, bob, 'other words', alice).start();
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
    throw new Error(`${e.message}\nwatcher events: ${JSON.stringify(watcher?.events)}\npage errors: ${p.errors.join(' | ')}\nserver log:\n${env.salon.log()}`);
  } finally {
    if (watcher) await watcher.stop();
    await p.context().close();
  }
});
