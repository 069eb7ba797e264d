"""Real IMAP clients driven against the server: curl, mbsync (two-way sync of several folders
with flag changes in both directions) and fetchmail. Their Debian packages come from
scripts/install-test-deps.sh; under CI a missing one fails."""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.imap.conftest import PASSWORD, USER, deliver, message


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, timeout=60, **kwargs)


# --- curl ------------------------------------------------------------------------------------------


@pytest.fixture
def curl(server, user):
    require(shutil.which("curl") is not None, "curl is not installed (Debian curl)")
    base = f"imap://127.0.0.1:{server.port('imap')}"

    def run(path: str, *extra: str) -> subprocess.CompletedProcess:
        return _run(["curl", "-sS", "--user", f"{USER}:{PASSWORD}", base + path, *extra])

    return run


def test_curl_lists_mailboxes(curl):
    result = curl("/")
    assert result.returncode == 0, result.stderr
    assert b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"' in result.stdout


def test_curl_fetches_a_message_by_uid(server, curl):
    raw = message("for curl")
    uid = deliver(server, USER, raw)
    result = curl(f"/INBOX;UID={uid}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == raw


def test_curl_searches_and_appends(server, curl, tmp_path):
    deliver(server, USER, message("alpha"))
    deliver(server, USER, message("beta"))
    assert curl("/INBOX", "-X", "SEARCH SUBJECT beta").stdout == b"* SEARCH 2\r\n"
    upload = tmp_path / "up.eml"
    upload.write_bytes(b"Subject: uploaded\r\n\r\nfrom curl\r\n")
    assert curl("/Drafts", "-T", str(upload)).returncode == 0
    assert curl("/Drafts", "-X", "STATUS Drafts (MESSAGES)").stdout == b'* STATUS "Drafts" (MESSAGES 1)\r\n'


def test_curl_over_implicit_tls(server, user):
    require(shutil.which("curl") is not None, "curl is not installed (Debian curl)")
    deliver(server, USER, message("over tls"))
    result = _run(["curl", "-sS", "-k", "--user", f"{USER}:{PASSWORD}",
                   f"imaps://127.0.0.1:{server.port('imaps')}/INBOX", "-X", "SEARCH SUBJECT tls"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"* SEARCH 1\r\n"


# --- mbsync ---------------------------------------------------------------------------------------


def _mbsync_config(tmp: Path, port: int) -> Path:
    local = tmp / "mail"
    local.mkdir()
    config = tmp / "mbsyncrc"
    config.write_text(f"""IMAPAccount test
Host 127.0.0.1
Port {port}
User {USER}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    return config


def _mbsync(config: Path) -> None:
    result = _run(["mbsync", "-c", str(config), "sync"])
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()


def _maildir(folder: Path) -> dict[int, str]:
    """UID -> maildir flags of the files mbsync keeps in a folder."""
    found = {}
    for path in [*folder.glob("cur/*"), *folder.glob("new/*")]:
        match = re.search(r",U=(\d+)(?::2,([A-Z]*))?$", path.name)
        if match:
            found[int(match.group(1))] = match.group(2) or ""
    return found


def test_mbsync_two_way_sync_of_folders_and_flags(server, user, tmp_path):
    require(shutil.which("mbsync") is not None, "mbsync is not installed (Debian isync)")
    for n in range(3):
        deliver(server, USER, message(f"inbox {n}"))
    deliver(server, USER, message("kept"), mailbox="Archive")
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    imap.login(USER, PASSWORD)
    imap.create("Projects")
    imap.append("Projects", None, None, message("project"))
    config = _mbsync_config(tmp_path, server.port("imap"))
    local = tmp_path / "mail"

    _mbsync(config)
    assert sorted(_maildir(local / "INBOX")) == [1, 2, 3]
    assert len(_maildir(local / "Archive")) == 1 and len(_maildir(local / "Projects")) == 1

    # the server side: flag one, delete another
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Flagged)")
    imap.store("2", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    # the local side: mark uid 3 seen, add a message to Projects, make a new folder
    [three] = [p for p in (local / "INBOX").glob("*/*") if ",U=3" in p.name]
    seen = three.parent.parent / "cur" / (three.name.split(":2,")[0] + ":2,S")
    three.rename(seen)
    (local / "Projects" / "new" / "1700000000.1.local").write_bytes(message("written locally"))
    for sub in ("cur", "new", "tmp"):
        (local / "Local" / sub).mkdir(parents=True)
    (local / "Local" / "new" / "1700000000.2.local").write_bytes(message("local folder"))

    _mbsync(config)
    inbox = _maildir(local / "INBOX")
    assert sorted(inbox) == [1, 3] and "F" in inbox[1]
    imap.select("INBOX")
    assert b"\\Seen" in imap.uid("FETCH", "3", "(FLAGS)")[1][0]
    assert imap.status("Projects", "(MESSAGES)")[1][0] == b'"Projects" (MESSAGES 2)'
    assert imap.status("Local", "(MESSAGES)")[1][0] == b'"Local" (MESSAGES 1)'
    imap.logout()

    _mbsync(config)  # a third run with nothing new changes nothing
    assert sorted(_maildir(local / "INBOX")) == [1, 3]


# --- fetchmail -------------------------------------------------------------------------------------


def test_fetchmail_downloads_over_imap(server, user, tmp_path):
    require(shutil.which("fetchmail") is not None, "fetchmail is not installed (Debian fetchmail)")
    for n in range(3):
        deliver(server, USER, message(f"fetch {n}"))
    mbox = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 service {server.port("imap")} protocol IMAP auth password\n'
        f'    user "{USER}" there with password "{PASSWORD}" is "nobody" here\n'
        f"    keep fetchall sslproto '' mda \"cat >> {mbox}\"\n")
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(tmp_path)}
    result = _run(["fetchmail", "-f", str(rc), "--nodetach", "--pidfile", str(tmp_path / "pid")], env=env)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert mbox.read_bytes().count(b"Subject: fetch ") == 3
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    imap.login(USER, PASSWORD)
    imap.select("INBOX")
    assert imap.search(None, "SEEN")[1] == [b"1 2 3"]  # downloaded, kept, marked seen
    imap.logout()
