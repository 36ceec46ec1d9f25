"""A deleted account leaves no avatar behind: the avatar hash the server puts in an account's
presence (XEP-0153, from its XEP-0084 metadata) is cached in memory, and deleting the account
in-band (XEP-0077) forgets it, so a new account of the same name does not announce the old
one's face."""

import hashlib

from conftest import server_fixture
from helpers import Clients, async_test
from test_pep import subscribe
from test_pep_avatars import PNG, login, photo_hash

server = server_fixture("deleted-avatar", require_encryption=True)


@async_test
async def test_a_new_account_of_a_deleted_name_has_no_avatar_hash(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("face"), server.new_user("friend")
    digest = hashlib.sha1(PNG).hexdigest()
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, plugins=("xep_0084",))
        bob = await login(cs, server, b_jid, b_pw)
        await alice.x.plugin["xep_0084"].publish_avatar(PNG)
        await alice.x.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": digest, "type": "image/png", "bytes": len(PNG)}])
        await subscribe(bob, alice)
        alice.x.send_presence(pstatus="old face")
        p = await bob.wait_presence(
            lambda p: p["from"].bare == a_jid and p["status"] == "old face", what="presence")
        assert photo_hash(p) == digest, p

        resp = await alice.iq("set", None, "<query xmlns='jabber:iq:register'><remove/></query>")
        assert resp["type"] == "result", str(resp)
        await alice.wait_until(lambda: alice.is_disconnected.is_set(), what="account removed")
        server.add_user(a_jid.split("@")[0], a_pw)
        again = await login(cs, server, a_jid, a_pw)
        await subscribe(bob, again)
        again.x.send_presence(pstatus="new account")
        p = await bob.wait_presence(
            lambda p: p["from"].bare == a_jid and p["status"] == "new account", what="presence")
        assert photo_hash(p) in ("", None), p
