"""Shared pytest fixtures: one Salon server per test module (see `server_fixture`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from salon_server import SalonServer  # noqa: E402


def start_server(tmp_path_factory, name: str, **options) -> SalonServer:
    base = tmp_path_factory.mktemp(name)
    return SalonServer(base, name, **options).start()


def server_fixture(name: str, **options):
    """Makes a module-scoped fixture that runs one server with the given config options."""

    @pytest.fixture(scope="module")
    def _server(tmp_path_factory):
        srv = start_server(tmp_path_factory, name, **options)
        try:
            yield srv
        finally:
            srv.stop()

    return _server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every involved server's stderr log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    seen = set()
    for value in funcargs.values():
        servers = value if isinstance(value, (list, tuple)) else [value]
        for srv in servers:
            if isinstance(srv, SalonServer) and id(srv) not in seen:
                seen.add(id(srv))
                status = "running" if srv.is_running() else (
                    f"NOT RUNNING (exit code {srv.proc.returncode if srv.proc else None})"
                )
                rep.sections.append(
                    (
                        f"salon server '{srv.name}' stderr ({status}; full log: {srv.log_path})",
                        srv.log_tail(),
                    )
                )
