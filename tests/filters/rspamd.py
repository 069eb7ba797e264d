"""A private rspamd for tests: its own minimal config, port, and two test rules.

No system config is included, so no plugin runs (none fetches maps or asks fuzzy
servers on the network); its DNS points at a closed loopback port.
"""

from __future__ import annotations

import grp
import http.client
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from tests.peers import wait_until_ready

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"

RULES = """
local function subject_has(text)
  return function(task)
    local subject = task:get_subject() or ''
    return subject:find(text, 1, true) ~= nil
  end
end
rspamd_config:register_symbol({name = 'POSTBOTE_TEST_REJECT', score = 20.0,
                               callback = subject_has('POSTBOTE-TEST-REJECT')})
rspamd_config:register_symbol({name = 'POSTBOTE_TEST_JUNK', score = 7.0,
                               callback = subject_has('POSTBOTE-TEST-JUNK')})
rspamd_config:register_symbol({name = 'POSTBOTE_TEST_SOFT', score = 11.0,
                               callback = subject_has('POSTBOTE-TEST-SOFT')})
"""


def available() -> bool:
    return Path(RSPAMD).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rspamd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Rspamd":
        (self.folder / "rules.lua").write_text(RULES)
        config = self.folder / "rspamd.conf"
        config.write_text(f"""
options {{
  pidfile = "{self.folder / 'rspamd.pid'}";
  dns {{ nameserver = ["127.0.0.1:{free_port()}"]; timeout = 1s; retransmits = 1; }}
  filters = "";
  tempdir = "{self.folder}";
}}
logging {{ type = "file"; filename = "{self.folder / 'rspamd.log'}"; level = "notice"; }}
worker "normal" {{ bind_socket = "127.0.0.1:{self.port}"; count = 1; }}
actions {{ reject = 15; "soft reject" = 10; "add_header" = 6; greylist = 4; }}
lua = "{self.folder / 'rules.lua'}";
""")
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        self.proc = subprocess.Popen([RSPAMD, "-f", "-u", user, "-g", group, "--insecure", "-c", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.folder)
        try:
            wait_until_ready(self.proc, self._ping, "rspamd", timeout, interval=0.2)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _ping(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)  # no proxy, unlike urllib
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
