"""Admin sessions in signed cookies, and CSRF tokens bound to them.

The cookie holds ``{"uid", "pw", "csrf", "exp"}`` signed with HMAC-SHA256 under
a key kept in ``DATA/web/session.key``, so every worker process accepts it and
nothing is stored per session. ``pw`` is a fingerprint of the password hash:
changing an admin's password ends their sessions. Before login a session
without ``uid`` carries the login form's CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "postbote_session"


def load_key(data_dir: Path) -> bytes:
    """The signing key, made on first use (blocking: file I/O)."""
    path = data_dir / "web" / "session.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A temporary name of this process's own: two workers starting at once
    # must never write into (or remove) each other's file.
    tmp = path.with_name(f"session.key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # first writer wins: two processes starting at once agree on one key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: int
    uid: int = 0  # 0: not logged in
    pw: str = ""


class Sessions:
    def __init__(self, key: bytes, lifetime: int) -> None:
        self.key = key
        self.lifetime = lifetime

    def new(self, uid: int = 0, pw: str = "", now: float | None = None) -> Session:
        lifetime = self.lifetime if uid else 3600
        return Session(secrets.token_urlsafe(24), int((now or time.time()) + lifetime), uid, pw)

    def encode(self, session: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps(
            {"c": session.csrf, "e": session.expires, "u": session.uid, "p": session.pw}).encode()).decode()
        return body + "." + self._sign(body)

    def decode(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie; None when absent, forged or expired."""
        if not cookie or len(cookie) > 1024 or "." not in cookie:
            return None
        body, _, sig = cookie.rpartition(".")
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode()))
            session = Session(str(data["c"]), int(data["e"]), int(data["u"]), str(data["p"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > (now or time.time()) else None

    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()


def csrf_ok(session: Session | None, submitted: object) -> bool:
    return (session is not None and isinstance(submitted, str)
            and hmac.compare_digest(session.csrf.encode(), submitted.encode()))
