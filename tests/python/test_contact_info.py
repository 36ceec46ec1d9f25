"""XEP-0157 contact addresses from `[contact]`, published in the server's disco#info as a
XEP-0128 form, and part of the XEP-0115 verification string clients cache."""

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

server = server_fixture("contact", require_encryption=False, contact={
    "abuse": ["mailto:abuse@example.org", "xmpp:abuse@example.org"],
    "admin": ["xmpp:admin@example.org"],
})


@async_test()
async def test_contact_addresses_in_disco_info(server):
    server.add_user("asker", "pw")
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("localhost")
    await raw.login_plain("asker", "pw", "r")
    await raw.send("<iq type='get' to='localhost' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "info")
    forms = info.findall(".//{jabber:x:data}x")
    fields = {}
    for form in forms:
        values = {f.get("var"): [v.text for v in f.findall("{jabber:x:data}value")]
                  for f in form.findall("{jabber:x:data}field")}
        if values.get("FORM_TYPE") == ["http://jabber.org/network/serverinfo"]:
            fields = values
    assert fields.get("abuse-addresses") == ["mailto:abuse@example.org", "xmpp:abuse@example.org"], tostr(info)
    assert fields.get("admin-addresses") == ["xmpp:admin@example.org"], tostr(info)
    assert "support-addresses" not in fields, "empty lists are not published"
    raw.close()
