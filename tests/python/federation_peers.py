"""Real Prosody and ejabberd as federation peers on loopback, for the s2s tests (issue 13).

Topology (shared with the Salon-to-Salon federation tests): every server has its own loopback
address, named in /etc/hosts, and listens for s2s on port 5269 of it; client ports are free ports
on 127.0.0.1, so that `helpers.Client` reaches them as it reaches Salon.

    127.0.0.10  salon.test rooms.salon.test anon.salon.test upload.salon.test
    127.0.0.11  prosody.test conference.prosody.test
    127.0.0.12  ejabberd.test conference.ejabberd.test
    127.0.0.13  salon2.test rooms.salon2.test anon.salon2.test upload.salon2.test

A private CA made at test time issues every server's certificate and every server
trusts it, so certificate verification (XEP-0178) is real; `self_signed_cert` makes a certificate
no one trusts, for the dialback cases (XEP-0220).

Prosody (Debian 12: 0.12) and ejabberd (23.01) run from the Debian packages as unprivileged child
processes (users `prosody` and `ejabberd` when the tests run as root), each with its own config and
data directory in a temporary directory; the packaged services are never used. ejabberd gets its
own Erlang node name and cookie and runs without epmd (ERL_DIST_PORT), so that nothing outlives
the run.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from salon_server import free_port

HOSTS = {
    "127.0.0.10": ["salon.test", "rooms.salon.test", "anon.salon.test", "upload.salon.test"],
    "127.0.0.11": ["prosody.test", "conference.prosody.test"],
    "127.0.0.12": ["ejabberd.test", "conference.ejabberd.test"],
    "127.0.0.13": ["salon2.test", "rooms.salon2.test", "anon.salon2.test", "upload.salon2.test"],
}
SALON_ADDR = "127.0.0.10"
PROSODY_ADDR = "127.0.0.11"
EJABBERD_ADDR = "127.0.0.12"
SALON2_ADDR = "127.0.0.13"
S2S_PORT = 5269

PROSODY_STARTUP_TIMEOUT = 30.0
EJABBERD_STARTUP_TIMEOUT = 90.0  # an Erlang VM boots slowly on a busy 2-core machine
CLI_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class PeerError(AssertionError):
    pass


# ---------------------------------------------------------------------------------------------
# /etc/hosts
# ---------------------------------------------------------------------------------------------


def ensure_hosts(path: Path = Path("/etc/hosts")) -> None:
    """Adds the topology's names to /etc/hosts when missing (idempotent; needs root only when
    something is missing). Every server resolves the others through these lines."""
    text = path.read_text()
    known: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            known.setdefault(name, fields[0])
    missing = []
    for addr, names in HOSTS.items():
        wrong = [n for n in names if known.get(n, addr) != addr]
        if wrong:
            raise PeerError(f"/etc/hosts maps {wrong} elsewhere than {addr}; fix it by hand")
        if any(n not in known for n in names):
            missing.append(f"{addr} {' '.join(names)}")
    if not missing:
        return
    if os.geteuid() != 0:
        raise PeerError(
            "the federation tests need these lines in /etc/hosts (run as root to add them):\n"
            + "\n".join(missing)
        )
    sep = "" if text.endswith("\n") or not text else "\n"
    with path.open("a") as f:
        f.write(sep + "# Salon federation tests (tests/python/federation_peers.py)\n")
        f.write("\n".join(missing) + "\n")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------------------------


# ejabberd arms Erlang timers for its certificates' expiry, which fail for dates more than ~49
# days away (trustme's year-3000 CA crashed its PKI process): every certificate here is short-lived.
CERT_LIFETIME = datetime.timedelta(days=7)


def _new_key():
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + CERT_LIFETIME)
    )


def _leaf_extensions(builder: x509.CertificateBuilder, domains) -> x509.CertificateBuilder:
    return (
        builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )


class TestCA:
    """A private CA whose certificate every server in the test trusts. Made with cryptography
    (pinned in requirements.txt) rather than trustme, whose CA lives until the year 3000."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = _new_key()
        self.name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Salon federation tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Salon test CA {uuid.uuid4().hex[:8]}"),
        ])
        self.cert = (
            _cert_builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(self.ca_file, 0o644)

    def issue(self, name: str, *domains: str) -> dict[str, Path]:
        """A certificate for `domains` (SAN dNSNames): files cert (leaf then CA), key, and pem
        (chain followed by key, as ejabberd wants it)."""
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
        cert = (
            _leaf_extensions(_cert_builder(subject, self.name, key.public_key()), domains)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(
            serialization.Encoding.PEM
        )
        return write_cert_files(self.dir, name, chain, _key_pem(key))


def self_signed_cert(directory: Path, name: str, *domains: str) -> dict[str, Path]:
    """A certificate for `domains` signed by its own key: no one in the test trusts it."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    cert = _leaf_extensions(_cert_builder(subject, subject, key.public_key()), domains).sign(
        key, hashes.SHA256()
    )
    return write_cert_files(
        Path(directory), name, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
    )


def write_cert_files(directory: Path, name: str, chain: bytes, key: bytes) -> dict[str, Path]:
    files = {
        "cert": directory / f"{name}.crt",
        "key": directory / f"{name}.key",
        "pem": directory / f"{name}.pem",
    }
    files["cert"].write_bytes(chain)
    files["key"].write_bytes(key)
    files["pem"].write_bytes(chain + key)
    for path in files.values():
        # Readable by the peers' unprivileged users; the keys are throw-away test keys.
        os.chmod(path, 0o644)
    return files


# ---------------------------------------------------------------------------------------------
# running a peer as an unprivileged child process
# ---------------------------------------------------------------------------------------------


def make_base_dir() -> Path:
    """A temporary directory the peers' users can traverse (pytest's tmp_path is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="salon-fedpeers-"))
    os.chmod(base, 0o755)
    return base


def run_as(user: str) -> dict:
    """Popen arguments that drop to `user` when running as root (else: the current user)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return {}
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def give_to(path: Path, user: str) -> None:
    """Makes `path` (recursively) owned by `user` when running as root."""
    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


class Peer:
    """What Prosody and ejabberd have in common: a process group started with its own session,
    a log file, the attributes `helpers.Client` reads (domain, c2s_port, tls_port)."""

    kind = "peer"
    user = "nobody"
    startup_timeout = 30.0

    def __init__(self, base_dir: Path, domain: str, address: str, muc_domain: str):
        self.dir = Path(base_dir) / self.kind
        self.dir.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.address = address
        self.muc_domain = muc_domain
        self.c2s_port = free_port()
        self.tls_port = self.c2s_port  # no direct TLS listener; Client uses STARTTLS
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "stdout.log"
        self._log_file = None

    def __repr__(self) -> str:
        return f"<{self.kind} {self.domain} s2s {self.address}:{S2S_PORT} c2s {self.c2s_port}>"

    # -- process ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.dir), "LANG": "C.UTF-8"}

    def log_files(self) -> list[Path]:
        return [self.log_path]

    def start(self) -> "Peer":
        if port_open(self.address, S2S_PORT):
            raise PeerError(f"{self.address}:{S2S_PORT} is already taken: a stray server? ({self})")
        give_to(self.dir, self.user)
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(self.dir),
            env=self.env(),
            start_new_session=True,  # its own process group: stop() reaches every child
            preexec_fn=die_with_parent,
            **run_as(self.user),
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(
                    f"{self.kind} exited with code {self.proc.returncode} during startup\n"
                    f"{self.log_tail()}"
                )
            if port_open("127.0.0.1", self.c2s_port) and port_open(self.address, S2S_PORT):
                return self
            time.sleep(0.2)
        self.stop()
        raise PeerError(
            f"{self.kind} did not listen within {self.startup_timeout}s\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after STOP_TIMEOUT; no stray process."""
        proc = self.proc
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            # Children (ejabberd's beam, erl_child_setup) may outlive the shell that started them.
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and group_alive(proc.pid):
                time.sleep(0.1)
            if group_alive(proc.pid):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if proc.poll() is None:
                proc.wait(timeout=5)
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and port_open(self.address, S2S_PORT):
            time.sleep(0.1)

    def restart(self) -> "Peer":
        self.stop()
        return self.start()

    def log_text(self) -> str:
        out = []
        for path in self.log_files():
            try:
                out.append(f"--- {path.name}\n" + path.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "\n".join(out) or "(no log)"

    def log_tail(self, lines: int = 80) -> str:
        return f"[{self.kind} log]\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def run_cli(self, args: list[str]) -> subprocess.CompletedProcess:
        res = subprocess.run(
            args, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=str(self.dir),
            env=self.env(), stdin=subprocess.DEVNULL, **run_as(self.user),
        )
        if res.returncode != 0:
            raise PeerError(
                f"`{' '.join(args)}` exited {res.returncode}\nstdout:\n{res.stdout}\n"
                f"stderr:\n{res.stderr}"
            )
        return res

    def new_user(self, prefix: str = "u") -> tuple[str, str]:
        """A fresh account (bare JID, password), made with the server's own CLI."""
        local = f"{prefix}{uuid.uuid4().hex[:8]}"
        password = "pw-" + uuid.uuid4().hex[:12]
        self.add_user(local, password)
        return f"{local}@{self.domain}", password

    def add_user(self, local: str, password: str) -> None:
        raise NotImplementedError


def die_with_parent() -> None:
    """In the child before exec (after the switch of user, which would clear it): SIGTERM when
    the test process dies without its fixtures' teardown (killed, crashed)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


PR_SET_PDEATHSIG = 1


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ---------------------------------------------------------------------------------------------
# Prosody
# ---------------------------------------------------------------------------------------------


def lua_str(s) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prosody(Peer):
    kind = "prosody"
    user = "prosody"
    startup_timeout = PROSODY_STARTUP_TIMEOUT

    def __init__(self, base_dir: Path, ca: TestCA, *, domain: str = "prosody.test",
                 address: str = PROSODY_ADDR, cert: dict | None = None,
                 secure_auth: bool = True):
        super().__init__(base_dir, domain, address, f"conference.{domain}")
        self.ca = ca
        self.cert = cert or ca.issue(self.kind, domain, self.muc_domain)
        self.config_path = self.dir / "prosody.cfg.lua"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.prosody_log = self.dir / "prosody.log"
        self.secure_auth = secure_auth
        self.write_config()

    def write_config(self) -> None:
        d = self.dir
        cfg = f"""-- Written by tests/python/federation_peers.py for one test run.
pidfile = {lua_str(d / "prosody.pid")}
data_path = {lua_str(self.data_dir)}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = {lua_str(self.prosody_log)} }} }}
admins = {{ }}
network_backend = "epoll"
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "vcard_legacy"; "offline";
    "private"; "version"; "time"; "uptime";
}}
modules_disabled = {{ "s2s_bidi" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ {S2S_PORT} }}
s2s_interfaces = {{ {lua_str(self.address)} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {"true" if self.secure_auth else "false"}
s2s_timeout = 10
authentication = "internal_hashed"
storage = "internal"
-- libunbound reads /etc/hosts only when asked: the test names live there.
unbound = {{ hoststxt = "/etc/hosts" }}
ssl = {{
    certificate = {lua_str(self.cert["cert"])};
    key = {lua_str(self.cert["key"])};
    cafile = {lua_str(self.ca.ca_file)};
}}

VirtualHost {lua_str(self.domain)}

Component {lua_str(self.muc_domain)} "muc"
    restrict_room_creation = false
    max_history_messages = 20
"""
        self.config_path.write_text(cfg)

    def command(self) -> list[str]:
        return ["prosody", "-F", "--config", str(self.config_path)]

    def log_files(self) -> list[Path]:
        return [self.log_path, self.prosody_log]

    def add_user(self, local: str, password: str) -> None:
        self.run_cli(
            ["prosodyctl", "--config", str(self.config_path), "register", local, self.domain,
             password]
        )


# ---------------------------------------------------------------------------------------------
# ejabberd
# ---------------------------------------------------------------------------------------------


class Ejabberd(Peer):
    kind = "ejabberd"
    user = "ejabberd"
    startup_timeout = EJABBERD_STARTUP_TIMEOUT

    def __init__(self, base_dir: Path, ca: TestCA, *, domain: str = "ejabberd.test",
                 address: str = EJABBERD_ADDR, cert: dict | None = None):
        super().__init__(base_dir, domain, address, f"conference.{domain}")
        self.ca = ca
        self.cert = cert or ca.issue(self.kind, domain, self.muc_domain)
        self.config_path = self.dir / "ejabberd.yml"
        self.ctl_config_path = self.dir / "ejabberdctl.cfg"
        self.spool_dir = self.dir / "spool"
        self.logs_dir = self.dir / "logs"
        self.spool_dir.mkdir(exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        # Its own node and cookie: never talks to another Erlang node on the machine. No epmd:
        # the node listens for ejabberdctl on a port of its own (ERL_DIST_PORT).
        self.node = f"salontest{uuid.uuid4().hex[:8]}@localhost"
        self.dist_port = free_port()
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        os.chmod(cookie, 0o400)
        self.write_config()

    def use_cert(self, cert: dict) -> None:
        """Another certificate from the next start on (e.g. a self-signed one)."""
        self.cert = cert
        self.write_config()

    def write_config(self) -> None:
        self.config_path.write_text(f"""# Written by tests/python/federation_peers.py for one run.
# The node stops cleanly on SIGTERM (OTP >= 19), which Peer.stop sends to its process group.
hosts:
  - "{self.domain}"
loglevel: info
log_rotate_count: 0
certfiles:
  - "{self.cert['pem']}"
ca_file: "{self.ca.ca_file}"
s2s_use_starttls: required
s2s_timeout: 30
negotiation_timeout: 10
listen:
  -
    port: {self.c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
  -
    port: {S2S_PORT}
    ip: "{self.address}"
    module: ejabberd_s2s_in
    max_stanza_size: 524288
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  muc_create:
    allow: all
  register:
    allow: all
shaper_rules: {{}}
auth_method: internal
default_db: mnesia
modules:
  mod_disco: {{}}
  mod_muc:
    host: "{self.muc_domain}"
    access: all
    access_create: all
    access_persistent: all
    history_size: 20
  mod_ping: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_vcard: {{}}
  mod_offline: {{}}
  mod_stream_mgmt: {{}}
""")
        self.ctl_config_path.write_text(f"""# Written by tests/python/federation_peers.py
ERLANG_NODE={self.node}
ERL_DIST_PORT={self.dist_port}
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_BYPASS_WARNINGS=true
""")
        # Name resolution of the Erlang VM: /etc/hosts first, then DNS.
        (self.dir / "inetrc").write_text('{file, hosts, "/etc/hosts"}.\n{lookup, [file, dns]}.\n')
        give_to(self.dir, self.user)

    def ctl(self, *args: str) -> list[str]:
        return [
            "ejabberdctl",
            "--config-dir", str(self.dir),
            "--config", str(self.config_path),
            "--ctl-config", str(self.ctl_config_path),
            "--logs", str(self.logs_dir),
            "--spool", str(self.spool_dir),
            *args,
        ]

    def command(self) -> list[str]:
        # ejabberdctl runs the Erlang VM as its child, not in its place, and a parent-death
        # signal is not inherited: this shell passes its SIGTERM on to the whole group.
        return [
            "sh", "-c", "trap 'trap - TERM; kill -TERM -$$' TERM; \"$@\" & wait",
            "ejabberd-foreground", *self.ctl("foreground"),
        ]

    def log_files(self) -> list[Path]:
        return [self.log_path, self.logs_dir / "ejabberd.log", self.logs_dir / "error.log"]

    def add_user(self, local: str, password: str) -> None:
        self.run_cli(self.ctl("register", local, self.domain, password))


def peers_installed() -> list[str]:
    return [b for b in ("prosody", "prosodyctl", "ejabberdctl") if shutil.which(b) is None]
