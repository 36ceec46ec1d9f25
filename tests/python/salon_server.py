"""Starting and stopping a Salon server process for the integration tests.

The server under test is `$SALON_BIN` or `<repo>/target/debug/salon`. Each SalonServer gets its
own temporary directory (config, data_dir and the captured stderr log) and its own free ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SALON_BIN = Path(os.environ.get("SALON_BIN", str(REPO / "target" / "debug" / "salon")))
if not SALON_BIN.is_absolute():
    SALON_BIN = (REPO / SALON_BIN).resolve()

STARTUP_TIMEOUT = 20.0
CLI_TIMEOUT = 30.0
LOG_LEVEL = os.environ.get("SALON_TEST_LOG_LEVEL", "info")


_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind to port 0, read it, close), never one this process
    handed out before: a port closed at once can come back from the next bind, and Salon
    refuses two listeners on one port."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class ServerError(AssertionError):
    pass


class SalonServer:
    def __init__(
        self,
        base_dir: Path,
        name: str = "salon",
        *,
        require_encryption: bool = True,
        max_stanza_bytes: int | None = None,
        login_failures_per_minute: int | None = 1000,
        extra_limits: dict | None = None,
        muc: dict | None = None,
        http: dict | None = None,
        upload: dict | None = None,
        contact: dict | None = None,
        archive: dict | None = None,
        pep: dict | None = None,
        worker_threads: int | None = None,
        metrics: bool = False,
        domain: str = "localhost",
        listen: dict | None = None,
        tls: dict | None = None,
        s2s: dict | None = None,
        extra_toml: str = "",
        top_toml: str = "",
    ):
        self.name = name
        self.dir = Path(base_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "salon.toml"
        self.log_path = self.dir / "salon-stderr.log"
        # The account host; the others are named after it (anon.D, rooms.D, upload.D).
        self.domain = domain
        self.anon_domain = f"anon.{domain}"
        self.muc_domain = f"rooms.{domain}"
        self.upload_domain = f"upload.{domain}"
        self.c2s_port = free_port()
        self.tls_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.metrics_port = free_port() if metrics else None
        self.require_encryption = require_encryption
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._users: dict[str, str] = {}

        limits = {
            # None leaves the failed-login limits at their defaults.
            "login_failures_per_minute": login_failures_per_minute,
            # The suite opens many connections from 127.0.0.1; only the rate-limit module
            # tests a per-IP limit.
            "connections_per_ip": 1000,
            # Likewise logins: the suite logs in hundreds of times a minute from 127.0.0.1.
            "logins_per_minute": 100000,
        }
        if login_failures_per_minute is None:
            del limits["login_failures_per_minute"]
        if max_stanza_bytes is not None:
            limits["max_stanza_bytes"] = max_stanza_bytes
        if extra_limits:
            limits.update(extra_limits)
        lines = [
            f'domain = "{self.domain}"',
            f'data_dir = "{self.data_dir}"',
        ]
        # Top-level keys (registration, admins) go before the first table.
        if top_toml:
            lines.append(top_toml)
        if worker_threads is not None:
            lines.append(f"worker_threads = {worker_threads}")
        lines += [
            "",
            "[listen]",
            f'c2s = "127.0.0.1:{self.c2s_port}"',
            f'c2s_direct_tls = "127.0.0.1:{self.tls_port}"',
            f'http = "127.0.0.1:{self.http_port}"',
            f'https = "127.0.0.1:{self.https_port}"',
        ]
        if self.metrics_port:
            lines.append(f'metrics = "127.0.0.1:{self.metrics_port}"')
        # Extra listeners (s2s, s2s_direct_tls, ...).
        lines += [f"{k} = {_toml_value(v)}" for k, v in (listen or {}).items()]
        if tls:
            lines += ["", "[tls]"] + [f"{k} = {_toml_value(v)}" for k, v in tls.items()]
        lines += [
            "",
            "[c2s]",
            f"require_encryption = {'true' if require_encryption else 'false'}",
            "",
            "[anonymous]",
            f'domain = "{self.anon_domain}"',
            "",
            "[muc]",
            f'domain = "{self.muc_domain}"',
        ]
        # Extra [muc] keys (create_rooms, max_history, archive_retention_days, max_occupants).
        lines += [f"{k} = {_toml_value(v)}" for k, v in (muc or {}).items()]
        lines += [
            "",
            "[limits]",
        ]
        lines += [f"{k} = {v}" for k, v in limits.items()]
        if http:
            lines += ["", "[http]"] + [f"{k} = {_toml_value(v)}" for k, v in http.items()]
        if contact:
            lines += ["", "[contact]"] + [f"{k} = {_toml_value(v)}" for k, v in contact.items()]
        if archive:
            lines += ["", "[archive]"] + [f"{k} = {_toml_value(v)}" for k, v in archive.items()]
        if pep:
            lines += ["", "[pep]"] + [f"{k} = {_toml_value(v)}" for k, v in pep.items()]
        if upload is not None:
            # An [upload] section (empty dict: all defaults); a nested "anonymous" dict becomes
            # [upload.anonymous]. Lists are written as TOML arrays of strings.
            def value(v) -> str:
                if isinstance(v, (list, tuple)):
                    return "[" + ", ".join(_toml_value(x) for x in v) + "]"
                return _toml_value(v)

            flat = {k: v for k, v in upload.items() if k != "anonymous"}
            lines += ["", "[upload]"] + [f"{k} = {value(v)}" for k, v in flat.items()]
            if "anonymous" in upload:
                lines += ["", "[upload.anonymous]"]
                lines += [f"{k} = {value(v)}" for k, v in upload["anonymous"].items()]
        if s2s is not None:
            # An [s2s] section; nested dicts become [s2s.NAME] tables (domain_policy, ...).
            flat = {k: v for k, v in s2s.items() if not isinstance(v, dict)}
            lines += ["", "[s2s]"] + [f"{k} = {_toml_value(v)}" for k, v in flat.items()]
            for table, entries in s2s.items():
                if isinstance(entries, dict):
                    lines += ["", f"[s2s.{table}]"]
                    lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in entries.items()]
        lines += ["", "[log]", f'level = "{LOG_LEVEL}"', ""]
        if extra_toml:
            lines += [extra_toml, ""]
        self.config_path.write_text("\n".join(lines))

    # -- process ---------------------------------------------------------------------------

    def start(self) -> "SalonServer":
        if not SALON_BIN.exists():
            raise ServerError(
                f"Salon binary not found at {SALON_BIN} (build it with `cargo build`, "
                "or set SALON_BIN)"
            )
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(SALON_BIN), "serve", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            cwd=str(self.dir),
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"salon serve exited with code {self.proc.returncode} during startup\n"
                    f"config:\n{self.config_path.read_text()}\nlog:\n{self.log_tail()}"
                )
            if self._port_open(self.c2s_port):
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerError(
            f"salon serve did not accept connections on 127.0.0.1:{self.c2s_port} within "
            f"{STARTUP_TIMEOUT}s\nlog:\n{self.log_tail()}"
        )

    @staticmethod
    def _port_open(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self) -> None:
        if not self.is_running():
            code = None if self.proc is None else self.proc.returncode
            raise ServerError(f"salon server is not running (exit code {code})\n{self.log_tail()}")

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                return None
        return self.proc.returncode

    def restart(self, timeout: float = 10.0) -> "SalonServer":
        """SIGTERM (waiting for a clean exit), then start again on the same config, ports and
        data_dir. Fails if the server did not exit by itself within `timeout`."""
        code = self.terminate(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if code is None:
            raise ServerError(f"salon serve did not exit within {timeout}s of SIGTERM")
        return self.start()

    def stop(self) -> None:
        try:
            self.terminate()
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def log_tail(self, lines: int = 150) -> str:
        text = self.log_text().splitlines()
        return "\n".join(text[-lines:])

    # -- CLI -------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(SALON_BIN), *args, "--config", str(self.config_path)]
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=str(self.dir),
            stdin=subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise ServerError(
                f"`{' '.join(cmd)}` exited {res.returncode}\nstdout:\n{res.stdout}\n"
                f"stderr:\n{res.stderr}"
            )
        return res

    def add_user(self, localpart: str, password: str) -> str:
        jid = f"{localpart}@{self.domain}"
        self.cli("user", "add", jid, "--password", password)
        self._users[jid] = password
        return jid

    def new_user(self, prefix: str = "u") -> tuple[str, str]:
        """Creates a fresh account with a unique localpart; returns (bare jid, password)."""
        local = f"{prefix}{uuid.uuid4().hex[:8]}"
        password = "pw-" + uuid.uuid4().hex[:12]
        return self.add_user(local, password), password
