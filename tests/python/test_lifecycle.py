"""Process lifecycle and CLI: `salon user add/list/del` against a running server, and SIGTERM
(clients get <system-shutdown/>, exit code 0)."""

import asyncio
import subprocess

import pytest

from conftest import start_server
from helpers import Client, Clients, async_test, uid
from salon_server import SALON_BIN, SalonServer


@pytest.fixture
def fresh_server(tmp_path_factory):
    srv = start_server(tmp_path_factory, "lifecycle")
    try:
        yield srv
    finally:
        srv.stop()


async def login_works(srv, jid, password) -> bool:
    async with Clients() as cs:
        c = cs.add(Client(srv, f"{jid}/cli", password, mech="SCRAM-SHA-256"))
        c.start_connect()
        await c.wait_until(lambda: c.session_started.done() or c.auth_failures,
                           what="login outcome")
        return c.session_started.done()


def test_user_cli_add_list_del(fresh_server):
    srv = fresh_server
    jid = srv.add_user("dave" + uid(), "dave-pw")
    listed = srv.cli("user", "list").stdout.split()
    assert jid in listed, f"{jid} not in `salon user list`: {listed}"
    assert asyncio.run(login_works(srv, jid, "dave-pw")), "login with the CLI-created account failed"

    srv.cli("user", "del", jid)
    listed = srv.cli("user", "list").stdout.split()
    assert jid not in listed, f"{jid} still listed after `salon user del`: {listed}"
    assert not asyncio.run(login_works(srv, jid, "dave-pw")), "deleted account can still log in"

    first = srv.cli("user", "add", "eve@localhost", "--password", "x1", check=False)
    assert first.returncode == 0, first.stderr
    again = srv.cli("user", "add", "eve@localhost", "--password", "x2", check=False)
    assert again.returncode != 0, "adding an existing account again succeeded silently"
    assert asyncio.run(login_works(srv, "eve@localhost", "x1")), "re-adding changed the password"


def test_sigterm_sends_system_shutdown_and_exits_zero(fresh_server):
    srv = fresh_server
    jid = srv.add_user("frank", "frank-pw")

    @async_test
    async def scenario():
        async with Clients() as cs:
            c = await cs.login(srv, f"{jid}/bye", "frank-pw", mech="SCRAM-SHA-256")
            await c.ping_server()
            loop = asyncio.get_running_loop()
            code_future = loop.run_in_executor(None, srv.terminate, 15.0)
            await c.wait_until(lambda: c.stream_errors, what="<system-shutdown/> stream error")
            assert c.stream_errors[0]["condition"] == "system-shutdown", str(c.stream_errors[0])
            await c.wait_until(lambda: c.is_disconnected.is_set(), what="disconnect")
            return await code_future

    code = scenario()
    assert code == 0, f"salon exited with {code} on SIGTERM (None = it had to be killed)"


@pytest.mark.parametrize("threads", [1, 2])
def test_worker_threads_setting_sets_the_runtime_threads(tmp_path_factory, threads):
    srv = start_server(tmp_path_factory, f"threads{threads}", worker_threads=threads)
    try:
        jid = srv.add_user("gina", "gina-pw")

        @async_test
        async def scenario():
            async with Clients() as cs:
                a = await cs.login(srv, f"{jid}/a", "gina-pw", mech="SCRAM-SHA-256")
                b = await cs.login(srv, f"{jid}/b", "gina-pw", mech="SCRAM-SHA-256")
                a.send_message(f"{jid}/b", "over the configured threads")
                await b.wait_message(lambda m: m["body"] == "over the configured threads",
                                     what="message between the two sessions")

        scenario()
        # What the runtime reports of itself (tokio's metrics), logged at start.
        started = [line for line in srv.log_path.read_text().splitlines() if "starting" in line]
        assert started and f"worker_threads={threads}" in started[0], started
    finally:
        srv.stop()


def salon_check(tmp_path, text: str) -> subprocess.CompletedProcess:
    config = tmp_path / "check.toml"
    config.write_text(text)
    return subprocess.run([str(SALON_BIN), "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=30)


def test_check_reads_the_configured_certificate_and_key(tmp_path, fresh_server):
    # Two self-signed pairs Salon made for itself: one from the running server, one from a
    # second data_dir (made by serving briefly).
    first = fresh_server.data_dir
    cert, key = first / "self-signed-cert.pem", first / "self-signed-key.pem"
    assert cert.exists() and key.exists()
    good = salon_check(tmp_path, f'domain = "localhost"\n[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    assert good.returncode == 0, good.stderr
    assert "key in" in good.stdout and "matches" in good.stdout, good.stdout

    missing = salon_check(tmp_path, f'[tls]\ncert = "{cert}"\nkey = "{tmp_path}/none.pem"\n')
    assert missing.returncode == 1, missing
    assert "tls.key" in missing.stderr, missing.stderr

    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    bad_cert = salon_check(tmp_path, f'[tls]\ncert = "{not_pem}"\nkey = "{key}"\n')
    assert bad_cert.returncode == 1 and "tls.cert" in bad_cert.stderr, bad_cert

    other = SalonServer(tmp_path / "other", "othercert").start()
    try:
        other_key = other.data_dir / "self-signed-key.pem"
        mixed = salon_check(tmp_path, f'[tls]\ncert = "{cert}"\nkey = "{other_key}"\n')
        assert mixed.returncode == 1, mixed
        assert "does not match" in mixed.stderr, mixed.stderr
    finally:
        other.stop()


def test_self_signed_certificate_is_kept_until_the_host_names_change(tmp_path):
    srv = SalonServer(tmp_path / "selfsigned", "selfsigned").start()
    try:
        cert = srv.data_dir / "self-signed-cert.pem"
        first = cert.read_bytes()
        srv.restart()
        assert cert.read_bytes() == first, "the certificate changed on a plain restart"

        text = srv.config_path.read_text()
        assert 'domain = "rooms.localhost"' in text
        srv.config_path.write_text(text.replace('domain = "rooms.localhost"',
                                                'domain = "chat.localhost"'))
        srv.restart()
        assert cert.read_bytes() != first, "same certificate after the MUC host was renamed"
        names = (srv.data_dir / "self-signed-names").read_text().split()
        assert "chat.localhost" in names and "rooms.localhost" not in names, names
        assert "host names changed" in srv.log_text(), srv.log_tail()
    finally:
        srv.stop()


# -- the operator's first run (issue 15, items 9 and 10) ------------------------------------------

def test_start_log_says_which_host_serves_what_and_where_the_web_client_is(fresh_server):
    srv = fresh_server
    log = srv.log_text()
    hosts = [line for line in log.splitlines() if " hosts " in line or line.endswith(" hosts")]
    assert hosts, log
    assert "accounts=localhost" in hosts[0] and f"guests={srv.anon_domain}" in hosts[0], hosts[0]
    assert f"rooms={srv.muc_domain}" in hosts[0], hosts[0]
    assert f"web client: open http://127.0.0.1:{srv.http_port}/join/ROOM" in log, log
    # And each listener's address, with what it is for.
    assert f"127.0.0.1:{srv.c2s_port}" in log and f"127.0.0.1:{srv.http_port}" in log


@pytest.mark.parametrize("key", ["c2s", "c2s_direct_tls", "http"])
def test_a_listener_that_cannot_be_bound_stops_the_start_with_its_key(tmp_path, key):
    import socket

    # Another program (a Prosody, say) already holds the port, on every address.
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        listen = {"c2s": '"127.0.0.1:0"', "c2s_direct_tls": '"off"', "http": '"127.0.0.1:0"'}
        listen[key] = f'"127.0.0.1:{port}"'
        config = tmp_path / "busy.toml"
        config.write_text(f'domain = "localhost"\ndata_dir = "{tmp_path}/data"\n[listen]\n'
                          + "".join(f"{k} = {v}\n" for k, v in listen.items()))
        run = subprocess.run([str(SALON_BIN), "serve", "--config", str(config)],
                             capture_output=True, text=True, timeout=30)
        assert run.returncode != 0, run.stderr
        assert f"listen.{key}: cannot listen on 127.0.0.1:{port}" in run.stderr, run.stderr
        assert "in use" in run.stderr, run.stderr
    finally:
        busy.close()


def test_check_refuses_two_listeners_on_one_address_and_a_port_out_of_range(tmp_path):
    same = salon_check(tmp_path, '[listen]\nc2s = "127.0.0.1:5222"\nhttp = "127.0.0.1:5222"\n')
    assert same.returncode != 0
    assert "listen.http" in same.stderr and "same address as listen.c2s" in same.stderr, same.stderr
    # An unspecified address takes the port on every address, the loopback one included.
    wide = salon_check(tmp_path, '[listen]\nc2s = "0.0.0.0:5290"\nmetrics = "127.0.0.1:5290"\n')
    assert wide.returncode != 0 and "listen.metrics" in wide.stderr, wide.stderr
    far = salon_check(tmp_path, '[listen]\nc2s = "127.0.0.1:70000"\n')
    assert far.returncode != 0
    assert "port 70000 is out of range" in far.stderr, far.stderr
    assert "listen.c2s" in far.stderr, far.stderr
    fine = salon_check(tmp_path, '[listen]\nc2s = "127.0.0.1:5222"\nhttp = "127.0.0.1:5280"\n')
    assert fine.returncode == 0, fine.stderr
