"""A real ManageSieve client against the server: Debian's sieve-connect uploads, activates,
lists and downloads a script over STARTTLS. scripts/install-test-deps.sh installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require

USER, PASSWORD = "alice@localhost", "password123"
SCRIPT = ('require ["fileinto", "vacation"];\n'
          'if header :contains "subject" "invoice" {\n  fileinto "Bills";\n  stop;\n}\n'
          'vacation :days 3 "I am away.";\n')


@pytest.fixture
def alice(server):
    return server.add_user(USER, PASSWORD)


def sieve_connect(server, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One sieve-connect run; the password goes through a pipe, never the command line."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, PASSWORD.encode() + b"\n")
    os.close(write_fd)
    try:
        return subprocess.run(
            ["sieve-connect", "--server", "127.0.0.1", "--port", str(server.port("managesieve")),
             "--user", USER, "--passwordfd", str(read_fd), "--notlsverify", *args],
            pass_fds=(read_fd,), env={**os.environ, "HOME": str(home)}, capture_output=True,
            text=True, timeout=60, check=False)
    finally:
        os.close(read_fd)


def test_sieve_connect_uploads_activates_lists_and_downloads(server, alice, tmp_path):
    require(shutil.which("sieve-connect") is not None, "sieve-connect is not installed")
    local = tmp_path / "vacation.sieve"
    local.write_text(SCRIPT)

    upload = sieve_connect(server, tmp_path, "--upload", "--localsieve", str(local), "--remotesieve", "away")
    assert upload.returncode == 0, upload.stderr
    assert server.run(server.app.store.sieve_get(alice.id, "away")) == SCRIPT

    activate = sieve_connect(server, tmp_path, "--activate", "--remotesieve", "away")
    assert activate.returncode == 0, activate.stderr
    assert server.run(server.app.store.sieve_active(alice.id)) == ("away", SCRIPT)

    listing = sieve_connect(server, tmp_path, "--list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines() == ['"away" ACTIVE']

    downloaded = tmp_path / "downloaded.sieve"
    download = sieve_connect(server, tmp_path, "--download", "--remotesieve", "away",
                             "--localsieve", str(downloaded))
    assert download.returncode == 0, download.stderr
    assert downloaded.read_bytes() == SCRIPT.encode()


def test_sieve_connect_reports_an_invalid_script_with_its_line(server, alice, tmp_path):
    require(shutil.which("sieve-connect") is not None, "sieve-connect is not installed")
    local = tmp_path / "broken.sieve"
    local.write_text('keep;\nfileinto "x";\n')  # fileinto without require

    upload = sieve_connect(server, tmp_path, "--upload", "--localsieve", str(local), "--remotesieve", "broken")
    assert upload.returncode != 0
    assert "line 2" in upload.stdout + upload.stderr
    assert server.run(server.app.store.sieve_list(alice.id)) == []
