"""Idle authenticated TLS connections: open N direct-TLS (XEP-0368) sessions with SASL ANONYMOUS,
bind and presence, then report the server's resident memory per connection.

usage: python3 bench/tls_idle.py N SERVER_PID [PORT] [ANON_DOMAIN]
Only connects to 127.0.0.1; every step is bounded by asyncio timeouts.
"""
import asyncio, ssl, sys, re
N=int(sys.argv[1]); PID=sys.argv[2]
PORT=int(sys.argv[3]) if len(sys.argv)>3 else 36223
ANON=(sys.argv[4] if len(sys.argv)>4 else "anon.localhost").encode()
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{PID}/status").read()).group(1))
ctx=ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE; ctx.set_alpn_protocols(["xmpp-client"])
HDR=b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='"+ANON+b"' version='1.0'>"
async def readuntil(r, needle):
    buf=b""
    while needle not in buf:
        d=await r.read(4096)
        if not d: raise Exception("closed "+buf.decode()[-200:])
        buf+=d
    return buf
async def one(conns, sem):
    async with sem:
        r,w=await asyncio.wait_for(asyncio.open_connection("127.0.0.1",PORT,ssl=ctx,server_hostname=ANON.decode()), 20)
        w.write(HDR); await readuntil(r,b"features>")
        w.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>"); await readuntil(r,b"success")
        w.write(HDR); await readuntil(r,b"features>")
        w.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"); await readuntil(r,b"</iq>")
        w.write(b"<presence/>"); await w.drain()
        conns.append((r,w))
async def main():
    before=rss(); conns=[]; sem=asyncio.Semaphore(50)
    await asyncio.wait_for(asyncio.gather(*[one(conns,sem) for _ in range(N)]), 300)
    await asyncio.sleep(2)
    after=rss()
    print(f"{len(conns)} TLS sessions: RSS {before} -> {after} KiB = {(after-before)/len(conns):.1f} KiB each")
    for r,w in conns: w.close()
asyncio.run(main())
