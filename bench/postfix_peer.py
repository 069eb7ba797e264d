"""A private Postfix instance on a loopback port, for benchmarks.

Its own config folder, queue and mail folders under a temp dir; virtual
mailbox delivery into Maildirs for the benchmark domain. It never touches
the system's Postfix configuration.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path


def ensure_installed() -> None:
    if shutil.which("postfix") and shutil.which("smtp-source"):
        return
    if os.geteuid() != 0:
        raise SystemExit("Postfix is missing: apt-get install postfix (as root)")
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type select No configuration\n",
                   check=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq",
                    "--no-install-recommends", "postfix"], check=True, env=env)


class PostfixInstance:
    def __init__(self, root: Path, port: int, domain: str, users: list[str]) -> None:
        self.root = root
        self.port = port
        self.domain = domain
        self.users = users
        self.config = root / "etc"
        self.mail = root / "mail"

    def start(self) -> "PostfixInstance":
        ensure_installed()
        pw = pwd.getpwnam("postfix")
        for d in (self.config, self.root / "queue", self.root / "data", self.mail):
            d.mkdir(parents=True, exist_ok=True)
        os.chown(self.mail, pw.pw_uid, pw.pw_gid)
        os.chown(self.root / "data", pw.pw_uid, pw.pw_gid)
        mailboxes = ", ".join(f"{u}@{self.domain}={self.domain}/{u}/" for u in self.users)
        (self.config / "main.cf").write_text(f"""
compatibility_level = 3.6
queue_directory = {self.root / 'queue'}
data_directory = {self.root / 'data'}
mail_owner = postfix
myhostname = postfix.bench.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = inline:{{ {mailboxes} }}
virtual_uid_maps = static:{pw.pw_uid}
virtual_gid_maps = static:{pw.pw_gid}
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = {self.root / 'maillog'}
maillog_file_prefixes = /
message_size_limit = 52428800
virtual_mailbox_limit = 0
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
""")
        master = Path("/etc/postfix/master.cf").read_text()
        lines = [ln for ln in master.splitlines() if not ln.startswith("smtp      inet")]
        lines.insert(0, f"127.0.0.1:{self.port} inet n - n - - smtpd")
        lines.append("postlog   unix-dgram n  -       n       -       1       postlogd")
        (self.config / "master.cf").write_text("\n".join(dict.fromkeys(lines)) + "\n")
        subprocess.run(["postfix", "-c", str(self.config), "set-permissions"], capture_output=True)
        subprocess.run(["postfix", "-c", str(self.config), "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{self.port}"],
                              capture_output=True).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError("Postfix did not start: " + (self.root / "maillog").read_text()[-2000:])

    def delivered(self) -> int:
        """Messages that reached a Maildir (new/ or cur/)."""
        total = 0
        for user in self.users:
            for sub in ("new", "cur"):
                folder = self.mail / self.domain / user / sub
                if folder.is_dir():
                    total += len(os.listdir(folder))
        return total

    def pids(self) -> list[int]:
        """Every process of this instance (master and its children), for CPU accounting."""
        pid_file = self.root / "queue" / "pid" / "master.pid"
        try:
            master = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return process_tree(master)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config), "stop"], capture_output=True)


def process_tree(pid: int) -> list[int]:
    """A process and its direct children."""
    out = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of live processes (children that exited are not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / tick
