"""The built-in web client's guest meets Prosody and ejabberd users in a Salon room, through
federation (issue 13): headless Debian Chromium (`/usr/bin/chromium`, driven by the `playwright`
package; never a browser of its own) opens /join/ROOM on salon.test, and slixmpp clients logged
into a real Prosody and a real ejabberd (federation_peers.py) join the same room over s2s. They
see the guest's history, and groupchat and private messages (XEP-0045 §7.5) cross both ways
between the page and each remote user.

Shares the loopback topology and port 127.0.0.10:5269 with test_federation_peers.py: the
Python suite runs serially, so the two never run at once. Run:
`SALON_BIN=... bash tests/run-python.sh -k federation_webclient` (SALON_SCREENSHOTS=DIR keeps
a screenshot of the page).
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import async_playwright

# Fixtures (module-scoped: their own Prosody, ejabberd and Salon) and helpers of the peers' tests.
from test_federation_peers import (  # noqa: F401  (fixtures are used by name)
    S2S_WAIT,
    TEST_TIMEOUT,
    ejabberd,
    groupchat,
    groupchat_from,
    join_room,
    logs_on_failure,
    login,
    message_with_body,
    prosody,
    salon,
    world,
)
from helpers import Clients, async_test, uid

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PAGE_WAIT_MS = int(S2S_WAIT * 1000)


async def send(page, text: str):
    await page.fill("#input", text)
    await page.press("#input", "Enter")


def in_room_log(page, text: str):
    return page.locator("#log article .text", has_text=text).first


def pm_log(page, nick: str):
    return page.locator(f'section.log[aria-label="Private conversation with {nick}"]')


def pm_tab(page, nick: str):
    return page.locator("#convs .tab", has_text=nick)


async def shot(page, name: str):
    directory = os.environ.get("SALON_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(directory) / f"{name}.png"))


@async_test(timeout=TEST_TIMEOUT + 60)
async def test_web_guest_and_remote_users_in_a_salon_room(salon, prosody, ejabberd):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    local = f"webfed{uid()}"
    room = f"{local}@{salon.muc_domain}"
    async with async_playwright() as pw, Clients() as cs:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 720})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # The guest opens the room's link: a new room, made by the page (anyone may create).
            await page.goto(f"http://127.0.0.1:{salon.http_port}/join/{local}?nick=webguest")
            await page.wait_for_function("() => window.salon && window.salon.joined",
                                         timeout=20000)
            history = [f"before the peers {i} {uid()}" for i in range(2)]
            for text in history:
                await send(page, text)
                await page.locator("#log article.own .text", has_text=text).wait_for(
                    timeout=PAGE_WAIT_MS)

            # A Prosody user and an ejabberd user join over s2s and get the page's history.
            remotes = {}
            for peer, nick in ((prosody, "pros"), (ejabberd, "ejab")):
                c = await login(cs, peer)
                _, during = await join_room(c, room, nick)
                got = [m["body"] for m in during]
                assert got[-2:] == history, f"{nick}'s history: {got}, expected {history}"
                # The page lists them, with the button that opens a private conversation.
                await page.get_by_role("button", name=f"Private message to {nick}").wait_for(
                    timeout=PAGE_WAIT_MS)
                remotes[nick] = c

            # Groupchat: each remote user to the page (and to the other remote user) ...
            for nick, c in remotes.items():
                text = f"hello web from {nick} {uid()}"
                groupchat(c, room, text)
                await in_room_log(page, text).wait_for(timeout=PAGE_WAIT_MS)
                other = remotes["ejab" if nick == "pros" else "pros"]
                await other.wait_message(groupchat_from(room, nick, text), S2S_WAIT,
                                         what=f"{nick}'s groupchat at the other remote user")
            # ... and the page to both.
            text = f"hello remotes from the web {uid()}"
            await send(page, text)
            for nick, c in remotes.items():
                await c.wait_message(groupchat_from(room, "webguest", text), S2S_WAIT,
                                     what=f"the page's groupchat at {nick}")

            # Private messages: each remote user writes to the guest, who answers from the
            # conversation the page opened; the answer arrives from the guest's occupant JID.
            for nick, c in remotes.items():
                text = f"psst web, {nick} here {uid()}"
                c.send_message(f"{room}/webguest", text)
                await pm_tab(page, nick).locator(".unread", has_text="1").wait_for(
                    timeout=PAGE_WAIT_MS)
                await pm_tab(page, nick).click()
                await pm_log(page, nick).locator("article .text", has_text=text).wait_for(
                    timeout=PAGE_WAIT_MS)
                answer = f"hi {nick}, privately {uid()}"
                await send(page, answer)
                m = await c.wait_message(message_with_body(answer), S2S_WAIT,
                                         what=f"the page's private answer at {nick}")
                assert str(m["from"]) == f"{room}/webguest", m
                assert m["type"] in ("chat", "normal"), m
                assert not [x for x in remotes.values() if x is not c
                            and any(message_with_body(answer)(y) for y in x.messages)], \
                    "a private answer reached the other remote user"
                await pm_tab(page, f"#{local}").click()
            # The page opens a conversation from the occupant list, writing first.
            text = f"page writes first to pros {uid()}"
            await page.get_by_role("button", name="Private message to pros").click()
            await send(page, text)
            m = await remotes["pros"].wait_message(message_with_body(text), S2S_WAIT,
                                                   what="the page's first private message")
            assert str(m["from"]) == f"{room}/webguest", m
            # Nothing private landed in the room's log.
            assert await page.locator("#log", has_text="privately").count() == 0
            await shot(page, "federation-webclient")
            assert errors == [], errors
        finally:
            await browser.close()
