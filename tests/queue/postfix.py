"""A private Postfix instance for queue tests and bench/outbound.py, never the system's.

Its own config folder (``postfix -c DIR``), queue and Maildirs under a temp
folder, and one smtpd on ``ADDRESS:PORT`` on loopback. As an MX it delivers
the test domains' users into Maildirs (``virtual``) and refuses unknown ones
with 550 5.1.1; as a relay it sends everything to ``relayhost``. Services run
unchrooted so the private queue folder needs no copies of /etc.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

# name, type, private, unpriv, chroot, wakeup, maxproc, command (postfix master.cf(5)).
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available() -> bool:
    return shutil.which("postfix") is not None and os.geteuid() == 0


class Postfix:
    def __init__(self, root: Path, address: str, port: int, hostname: str = "mx.remote.test",
                 domains: dict[str, list[str]] | None = None, relayhost: str = "",
                 extra: str = "") -> None:
        self.root = root
        self.address = address
        self.port = port
        self.hostname = hostname
        self.domains = domains or {}
        self.relayhost = relayhost
        self.extra = extra
        self.config = root / "etc"
        self.mail = root / "mail"

    def main_cf(self, owner: pwd.struct_passwd) -> str:
        boxes = ", ".join(f"{u}@{d}={d}/{u}/" for d, users in self.domains.items() for u in users)
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.root / 'queue'}",
            f"data_directory = {self.root / 'data'}",
            "mail_owner = postfix",
            f"myhostname = {self.hostname}",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "mydestination =",
            "mynetworks = 127.0.0.0/8",
            "alias_maps =",
            "alias_database =",
            "smtputf8_enable = yes",
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination",
            f"maillog_file = {self.root / 'maillog'}",
            f"maillog_file_prefixes = {self.root}",
            "default_process_limit = 100",
            "smtpd_client_connection_count_limit = 0",
            "smtpd_client_connection_rate_limit = 0",
            "smtp_dns_support_level = disabled",
        ]
        if self.domains:
            lines += [f"virtual_mailbox_domains = {' '.join(self.domains)}",
                      f"virtual_mailbox_base = {self.mail}",
                      f"virtual_mailbox_maps = inline:{{ {boxes} }}",
                      f"virtual_uid_maps = static:{owner.pw_uid}",
                      f"virtual_gid_maps = static:{owner.pw_gid}"]
        if self.relayhost:
            lines += [f"relayhost = {self.relayhost}", "relay_domains = static:ALL"]
        return "\n".join(lines) + "\n" + self.extra + "\n"

    def start(self) -> "Postfix":
        owner = pwd.getpwnam("postfix")
        # Postfix's daemons run as "postfix" and open these paths by name: every parent must be searchable.
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for parent in self.root.parents:
            if not parent.stat().st_mode & 0o001:
                raise RuntimeError(f"{parent} is not searchable by user postfix: put the instance elsewhere")
        for d in (self.config, self.root / "queue", self.root / "data", self.mail):
            d.mkdir(parents=True, exist_ok=True)
        for d in (self.root / "data", self.mail):
            os.chown(d, owner.pw_uid, owner.pw_gid)
        (self.config / "main.cf").write_text(self.main_cf(owner))
        (self.config / "master.cf").write_text(
            f"{self.address}:{self.port} inet n - n - - smtpd\n" + _SERVICES)
        subprocess.run(["postfix", "-c", str(self.config), "set-permissions"], capture_output=True)
        r = subprocess.run(["postfix", "-c", str(self.config), "start"], capture_output=True, text=True)
        if r.returncode != 0:
            # Postfix reports fatal start errors only to syslog or a terminal: ask "check" for them.
            raise RuntimeError(f"postfix start failed: {r.stderr.strip()} {self.log()[-1000:]}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postfix did not start listening; log: {self.log()[-2000:]}")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True)
        subprocess.run(["postfix", "-c", str(self.config), "abort"], capture_output=True)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def maildir(self, address: str) -> list[bytes]:
        """Every message delivered to ``address``, oldest first."""
        user, _, domain = address.partition("@")
        new = self.mail / domain / user / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime)]
