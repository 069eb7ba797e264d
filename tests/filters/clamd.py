"""A private clamd for tests: its own config, socket and a signature database written here.

The database is one ``.hdb`` line (MD5:size:name) for the EICAR test file, so
no signatures are ever downloaded and freshclam never runs.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
from pathlib import Path

from tests.peers import wait_until_ready

# The EICAR anti-virus test file, assembled at run time so this source file itself is not "infected".
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "Postbote-Test-Eicar"
CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"


def available() -> bool:
    return Path(CLAMD).exists()


class Clamd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "clamd.sock"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Clamd":
        db = self.folder / "db"
        db.mkdir(parents=True, exist_ok=True)
        (db / "postbote-test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{SIGNATURE}\n")
        config = self.folder / "clamd.conf"
        config.write_text(
            f"LocalSocket {self.socket}\nDatabaseDirectory {db}\nForeground yes\n"
            f"LogFile {self.folder / 'clamd.log'}\nPidFile {self.folder / 'clamd.pid'}\n"
            f"TemporaryDirectory {self.folder}\nStreamMaxLength 10M\n")
        self.proc = subprocess.Popen([CLAMD, "--config-file", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_ready(self.proc, self._ping, "clamd", timeout, interval=0.1)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
