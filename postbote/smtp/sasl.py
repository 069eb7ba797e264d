"""The SASL exchanges behind AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN.

The core decides whether AUTH may be used at all (TLS, session state, policy) and switches
its reader to take the client's answers to 334 challenges; what those answers mean (base64,
the cancel marker, the PLAIN message, the two LOGIN prompts) is decoding with no state of
the session's, and lives here.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from postbote.smtp import replies as R
from postbote.smtp.events import AuthCredentials
from postbote.smtp.replies import Refusal

SASL_MECHANISMS = frozenset({"PLAIN", "LOGIN"})

_LOGIN_USERNAME = b"VXNlcm5hbWU6"  # base64 "Username:", the de-facto LOGIN challenge
_LOGIN_PASSWORD = b"UGFzc3dvcmQ6"  # base64 "Password:"


@dataclass
class SaslExchange:
    """One PLAIN or LOGIN exchange under way: the mechanism, and what LOGIN has learnt."""

    mechanism: str
    username: str | None = None

    def challenge(self) -> bytes:
        """The base64 text of the next 334 challenge."""
        if self.mechanism == "PLAIN":
            return b""  # RFC 4616 §2: the server sends an empty challenge
        return _LOGIN_USERNAME if self.username is None else _LOGIN_PASSWORD

    def step(self, response: bytes) -> AuthCredentials | None:
        """Take the client's decoded response: the credentials once complete, or None when
        another challenge is due."""
        if self.mechanism == "PLAIN":
            return _plain(response)
        if self.username is None:
            self.username = _utf8(response)
            return None
        return AuthCredentials("LOGIN", "", self.username, _utf8(response))


def initial_response(word: str) -> bytes:
    """The initial response given on the AUTH line, decoded."""
    # RFC 4954 §4: "=" is an initial response of zero length.
    return b"" if word == "=" else _base64(word.encode("ascii", "replace"))


def client_response(line: bytes) -> bytes:
    """A line answering a 334 challenge, decoded."""
    if line.strip() == b"*":
        raise Refusal(R.AUTH_CANCELLED)  # RFC 4954 §4
    return _base64(line.strip())


def _base64(data: bytes) -> bytes:
    if len(data) % 4:  # strict_mode still lets surplus "=" through
        raise Refusal(R.BAD_BASE64)
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise Refusal(R.BAD_BASE64) from None


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(R.BAD_SASL_MESSAGE) from None


def _plain(message: bytes) -> AuthCredentials:
    """RFC 4616 §2: [authzid] NUL authcid NUL passwd, UTF-8."""
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise Refusal(R.BAD_SASL_MESSAGE)
    authzid, authcid, password = (_utf8(part) for part in parts)
    return AuthCredentials("PLAIN", authzid, authcid, password)
