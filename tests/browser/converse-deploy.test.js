// Converse.js configured the way the original webchat deployments configure it: anonymous
// login, auto_login, auto_join_rooms, singleton, fullscreen, over BOSH (as those deployments
// do) and over WebSocket. Each join must reach the room, every time, and a reload must come back
// to the room without leaving a ghost occupant behind. The page is the deployment's own, not
// Salon's /converse/ page (which turns off Converse's nick registration for guests): the test
// serves it, with Converse.js, from a web server of its own, as a site embedding a chat does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bot, sleep, converseFixture } from './salon.js';

const env = converseFixture({ testApi: false });


const JOINS = Number(process.env.JOINS || 5);

/** Wait for the message box, then say `body` and check the room got it. */
async function talk(page, bot, nick, body) {
  const textarea = page.locator('textarea.chat-textarea');
  try {
    await bot.waitFor((e) => e.event === 'online' && e.nick === nick, 20000);
    await textarea.waitFor({ timeout: 20000 });
  } catch (e) {
    throw new Error(`${nick}: the message box did not get into the room; page errors: ${page.errors.join(' | ')}\nserver log:\n${env.salon.log()}`);
  }
  // A page restored from a cached session renders the room at once and renders it again as the
  // session comes back: text typed into the first rendering is lost. Type until the message
  // shows in the page's own log (which Converse only does as it sends it).
  for (let attempt = 0; ; attempt++) {
    await textarea.fill(body);
    await textarea.press('Enter');
    try {
      await page.locator('.chat-msg__text', { hasText: body }).first().waitFor({ timeout: 3000 });
      break;
    } catch (e) {
      if (attempt === 3) throw new Error(`${nick}: the message never showed on the page`);
    }
  }
  await bot.waitFor((e) => e.event === 'message' && e.nick === nick && e.body === body, 15000);
}

/** The occupants the watcher sees now, from the presences it got. */
function present(bot) {
  const now = new Set();
  for (const e of bot.events) {
    if (e.event === 'online') now.add(e.nick);
    if (e.event === 'offline') now.delete(e.nick);
  }
  return [...now].sort();
}

for (const transport of (process.env.TRANSPORTS || 'bosh,websocket').split(',')) {
  test(`Converse.js as the webchat deployments set it up, over ${transport}: ${JOINS} joins${transport === 'bosh' ? ' and a reload' : ''}, no ghost`, async () => {
    const r = `deploy${transport}${Date.now() % 100000}@rooms.localhost`;
    const bot = await new Bot(env.salon, r, 'watcher').start();
    const endpoint = transport === 'bosh'
      ? { bosh_service_url: `${env.salon.url}/http-bind` }
      : { websocket_url: `${env.salon.url.replace('http', 'ws')}/xmpp-websocket` };
    try {
      for (let i = 1; i <= JOINS; i++) {
        const nick = `guest${i}`;
        const page = await env.site.open({
          ...endpoint,
          authentication: 'anonymous',
          jid: 'anon.localhost',
          auto_login: true,
          auto_join_rooms: [r],
          singleton: true,
          view_mode: 'fullscreen',
          nickname: nick,
          discover_connection_methods: false,
          loglevel: process.env.CONVERSE_LOGLEVEL || 'warn',
        });
        await talk(page, bot, nick, `hello ${i} over ${transport}`);
        // The reload is checked over BOSH, the transport these deployments use: Converse keeps
        // the BOSH session and comes back as the same occupant. Over WebSocket, Converse 14
        // with anonymous login starts a new session with a new JID after a reload and does not
        // resume the old one (XEP-0198), so the old occupant keeps the nick for its resumption
        // window and the new JID asking for it gets <conflict/> (XEP-0045 §7.2.9). Handing the
        // nick over by IP address is what a hostile visitor behind the same NAT would use to
        // take an occupant over (and its affiliation), so the server does not do it; the
        // built-in client resumes instead (webchat.test.js, "reloading the page resumes").
        if (i === JOINS && transport === 'bosh') {
          // The reload: the same page comes back to the room, and the room does not keep the
          // occupant of the page that went away.
          const inRoom = present(bot);
          const seen = bot.events.length;
          await page.reload();
          await talk(page, bot, nick, `back after reload over ${transport}`);
          await sleep(1000);
          // The same occupants as before the reload: no second occupant from the reloaded
          // page's new session, and the old one did not leave a ghost under another nick.
          assert.deepEqual(present(bot), inRoom, `presences since the reload: ${JSON.stringify(bot.events.slice(seen))}`);
        }
        await page.context().close();
        // No uncaught error (Converse used to throw an uncaught not-allowed after submitting the
        // nick registration form the room had handed a guest), and nothing on the console but
        // Converse's own log of the registration refusal it handles (XEP-0045 §7.10): its PEP
        // requests (bookmarks, avatars, OMEMO) get proper answers, which it logs as no error.
        // Converse 14's own UI sometimes throws while a room view is drawn a second time after a
        // reload and the test types into it (its message-box auto-complete is not set up yet:
        // "reading 'onKeyDown'" / "'auto_completing'"). That is Converse's bug, not a protocol
        // error, and not what this test guards against, so only those two are let through.
        const converseUiBug = /Cannot read properties of undefined \(reading '(onKeyDown|auto_completing)'\)/;
        const uncaught = page.uncaught.filter((e) => !converseUiBug.test(e));
        assert.deepEqual(uncaught, [], `${nick}: uncaught errors`);
        const unexpected = page.errors.filter((e) => !converseUiBug.test(e)
          && !/^<iq [^>]*type="error"><query xmlns="jabber:iq:register"\/><error type="cancel"><not-allowed /.test(e));
        assert.deepEqual(unexpected, [], `${nick}: console errors`);
      }
    } finally {
      await bot.stop();
    }
  });
}
