"""`report-pipelines api-keys` and `serve` as a user runs them: the key shown once, one-line refusals,
revocation, and the real server answering over loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CLI = str(Path(sys.executable).with_name("report-pipelines"))


@pytest.fixture
def run(tmp_path: Path):
    env = {**os.environ, "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    env.pop("REPORT_PIPELINES_DATABASE_URL", None)

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300)

    _run.env = env
    return _run


def test_api_keys_create_list_revoke_and_serve(run) -> None:
    assert run("db", "upgrade").returncode == 0
    assert run("clients", "add", "acme", "--name", "Acme", "--timezone", "Europe/Lisbon").returncode == 0
    neither = run("api-keys", "create")
    assert (neither.returncode, neither.stderr.strip()) == (
        2, "error: client: give either --client SLUG or --role operator|sales")
    bad_role = run("api-keys", "create", "--role", "admin")
    assert bad_role.returncode == 2 and bad_role.stderr.startswith("error: role: 'admin' is not one of sales, operator")
    unknown = run("api-keys", "create", "--client", "nobody")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    created = run("api-keys", "create", "--client", "acme", "--label", "reporting tool")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    prefix = token.split("_")[1]
    assert created.stdout.startswith(f"created API key {prefix} (client acme); it is shown once")
    listed = run("api-keys", "list")
    assert prefix in listed.stdout and "acme" in listed.stdout and "active" in listed.stdout
    assert token not in listed.stdout and token.split("_", 2)[2] not in listed.stdout

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([CLI, "serve", "--port", str(port)], env=run.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json() == {"prefix": prefix, "role": "client", "client": "acme"}
        httpx.get(f"{base}/v1/schedules", params={"client": token},  # a key pasted where it does not belong
                  headers={"Authorization": f"Bearer {token}"})
        revoked = run("api-keys", "revoke", prefix)
        assert revoked.returncode == 0 and revoked.stdout.strip() == f"revoked API key {prefix} (acme)"
        assert httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    finally:
        server.terminate()
        stderr, _ = server.communicate(timeout=30)  # uvicorn's logs, its access log (on stdout) included
    assert "GET /v1/schedules?client=rp_" in stderr  # uvicorn's access log is on...
    assert token not in stderr and token.split("_", 2)[2] not in stderr  # ...and never holds a key
    again = run("api-keys", "revoke", prefix)
    assert again.returncode == 2 and again.stderr.startswith(f"error: key: key {prefix} is already revoked")
