"""A private Dovecot on a loopback port, for the IMAP and POP3 benchmarks.

Its own config, Maildirs and passwd-file under a temp dir; the system's
Dovecot service and configuration are never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from common import free_port, wait_for_port


def start_dovecot(root: Path, protocol: str, mailboxes: dict[str, list[bytes]],
                  password_hash: str) -> tuple[subprocess.Popen, int]:
    """Serve ``mailboxes`` (address -> messages) over ``protocol`` ("imap" or "pop3").

    ``password_hash`` is an argon2id hash every account shares, as in postbote's run.
    """
    if shutil.which("dovecot") is None or not Path(f"/usr/lib/dovecot/{protocol}").exists():
        raise SystemExit(f"Dovecot's {protocol} server is missing: apt-get install dovecot-{protocol}d")
    top = root / "dovecot"
    for i, (address, messages) in enumerate(mailboxes.items()):
        cur = top / "mail" / address / "cur"
        cur.mkdir(parents=True)
        for sub in ("new", "tmp"):
            (cur.parent / sub).mkdir()
        for n, raw in enumerate(messages):
            (cur / f"{1700000000 + n}.M{n}P{i}.bench:2,").write_bytes(raw)
    (top / "passwd").write_text("".join(f"{a}:{{ARGON2ID}}{password_hash}\n" for a in mailboxes))
    for sub in ("run", "state"):
        (top / sub).mkdir()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(top / "mail")], check=True)
    port = free_port()
    conf = top / "dovecot.conf"
    # mail_fsync = always: the same durability postbote gives every change.
    conf.write_text(f"""\
base_dir = {top}/run
state_dir = {top}/state
log_path = {top}/dovecot.log
protocols = {protocol}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{top}/mail/%u
mail_fsync = always
passdb {{
  driver = passwd-file
  args = {top}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={top}/mail/%u
}}
service {protocol}-login {{
  inet_listener {protocol} {{
    port = {port}
  }}
  inet_listener {protocol}s {{
    port = 0
  }}
  process_limit = 2000
}}
service {protocol} {{
  process_limit = 2000
}}
""")
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(top / "stderr.log", "w"))
    wait_for_port(port, proc, "dovecot")
    return proc, port
