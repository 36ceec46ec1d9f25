// Converse.js logged in with an account: a room it bookmarks is stored in the account's PEP
// (XEP-0402, which Salon announces with #compat) and is back after a reload and after logging in
// again in a fresh browser; nothing on the console about PEP, bookmarks, avatars or OMEMO.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep, converseFixture, converseLogin, converseReady } from './salon.js';

const env = converseFixture();


/** The bookmarks Converse holds once it has fetched them from the server. */
async function bookmarks(p) {
  await converseReady(p, 'bookmarksInitialized');
  return p.evaluate(() => window.cstate.bookmarks.models.map((b) => [b.get('jid'), b.get('name'), b.get('nick')]));
}

test('Converse.js keeps a bookmarked room across a reload and a new login, without PEP errors', async () => {
  const jid = env.salon.addUser('reader', 'secret words');
  const room = `books${Date.now() % 100000}@rooms.localhost`;
  const login = converseLogin(env.salon, jid, 'secret words');
  const first = await env.browser.newContext();
  let p = await env.site.open(login, first);
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

    const second = await env.browser.newContext();
    p = await env.site.open(login, second);
    assert.deepEqual(await bookmarks(p), [[room, 'Book club', 'reader']], `server log:\n${env.salon.log()}`);
    await sleep(1000);
    const pepErrors = [...errorsBefore, ...p.errors].filter((e) => /pubsub|pep\b|omemo|bookmark|vcard|avatar|item-not-found|service-unavailable|feature-not-implemented/i.test(e));
    assert.deepEqual(pepErrors, [], 'console errors about PEP');
    await second.close();
  } catch (e) {
    throw new Error(`${e.message}\npage errors: ${p.errors.join(' | ')}`);
  }
});
