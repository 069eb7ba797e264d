"""ESMTP parameters of MAIL FROM and RCPT TO: their syntax, decoding and validation.

RFC 5321 §4.1.2 gives the ``KEYWORD[=value]`` grammar; each extension adds its keywords:
SIZE (RFC 1870), BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531), RET, ENVID, NOTIFY and ORCPT
(RFC 3461 DSN, with its xtext encoding), AUTH (RFC 4954 §5). These rules are many, stateless
and each tied to an RFC, so they sit here rather than in the state machine: the core hands
over the tokens after the path and gets back ``MailParams`` or ``RcptParams``, or a
``Refusal`` carrying the reply to give.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from postbote.smtp import replies as R
from postbote.smtp.addresses import NON_ASCII
from postbote.smtp.replies import Refusal

if TYPE_CHECKING:
    from postbote.smtp.protocol import SmtpConfig  # protocol imports this module at run time

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_VALUE = re.compile(rf"[\x21-\x3c\x3e-\x7e{NON_ASCII}]+")  # RFC 5321 §4.1.2 esmtp-value
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+")
_UNICODE_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_ENVID_MAX = 100  # RFC 3461 §4.4
_ORCPT_MAX = 500  # RFC 3461 §4.2


@dataclass(frozen=True)
class MailParams:
    """ESMTP parameters of MAIL FROM, decoded. ``None`` means "not given"."""

    size: int | None = None  # RFC 1870: the client's estimate, in octets
    body: str | None = None  # RFC 6152 / 3030: "7BIT", "8BITMIME" or "BINARYMIME"
    smtputf8: bool = False  # RFC 6531: UTF-8 addresses and headers in this transaction
    ret: str | None = None  # RFC 3461 §4.3: "FULL" or "HDRS"
    envid: str | None = None  # RFC 3461 §4.4, xtext-decoded
    auth: str | None = None  # RFC 4954 §5, xtext-decoded; "<>" when the client vouches none


@dataclass(frozen=True)
class RcptParams:
    """ESMTP parameters of RCPT TO, decoded (RFC 3461 §4.1, §4.2)."""

    notify: tuple[str, ...] | None = None  # ("NEVER",) or some of SUCCESS, FAILURE, DELAY
    orcpt_type: str | None = None  # the addr-type, e.g. "rfc822" or "utf-8"
    orcpt: str | None = None  # the original recipient, decoded


def mail_params(tokens: list[str], cfg: SmtpConfig) -> MailParams:
    """MAIL FROM's parameters, decoded; only those of the extensions ``cfg`` offers."""
    values: dict[str, object] = {}
    for keyword, value in _parameters(tokens):
        if keyword == "SIZE" and cfg.size:
            digits = _required(value)
            if not digits.isdigit() or not digits.isascii() or len(digits) > 20:
                raise Refusal(R.BAD_PARAMETER)
            values["size"] = int(digits)
        elif keyword == "BODY" and cfg.eightbitmime:
            body = _choice(value, ("7BIT", "8BITMIME", "BINARYMIME"))
            if body == "BINARYMIME" and not (cfg.binarymime and cfg.chunking):
                raise Refusal(R.UNKNOWN_PARAMETER)
            values["body"] = body
        elif keyword == "SMTPUTF8" and cfg.smtputf8:
            if value is not None:
                raise Refusal(R.BAD_PARAMETER)
            values["smtputf8"] = True
        elif keyword == "RET" and cfg.dsn:
            values["ret"] = _choice(value, ("FULL", "HDRS"))
        elif keyword == "ENVID" and cfg.dsn:
            if len(_required(value)) > _ENVID_MAX:
                raise Refusal(R.BAD_PARAMETER)
            values["envid"] = _xtext(_required(value))
        elif keyword == "AUTH" and cfg.auth_mechanisms:
            raw = _required(value)
            values["auth"] = raw if raw == "<>" else _xtext(raw)
        else:
            raise Refusal(R.UNKNOWN_PARAMETER)  # RFC 5321 §4.1.1.11
    result = MailParams(**values)  # type: ignore[arg-type]
    if result.size is not None and cfg.max_message_size and result.size > cfg.max_message_size:
        raise Refusal(R.SIZE_EXCEEDED)  # RFC 1870 §6.1
    return result


def rcpt_params(tokens: list[str], cfg: SmtpConfig) -> RcptParams:
    """RCPT TO's parameters, decoded; only those of the extensions ``cfg`` offers."""
    values: dict[str, object] = {}
    for keyword, value in _parameters(tokens):
        if keyword == "NOTIFY" and cfg.dsn:
            values["notify"] = _notify(value)
        elif keyword == "ORCPT" and cfg.dsn:
            values["orcpt_type"], values["orcpt"] = _orcpt(value)
        else:
            raise Refusal(R.UNKNOWN_PARAMETER)
    return RcptParams(**values)  # type: ignore[arg-type]


def _xtext(value: str) -> str:
    """RFC 3461 §4: "+" and two hex digits stand for one octet; the octets are UTF-8."""
    out = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "+":
            digits = value[i + 1 : i + 3]
            if len(digits) != 2 or not all(c in "0123456789ABCDEFabcdef" for c in digits):
                raise Refusal(R.BAD_PARAMETER)
            out.append(int(digits, 16))
            i += 3
            continue
        if not ("!" <= char <= "~") or char == "=":
            raise Refusal(R.BAD_PARAMETER)
        out.append(ord(char))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(R.BAD_PARAMETER) from None


def _utf8_xtext(value: str) -> str:
    """RFC 6533 §3: utf-8-addr-xtext/unitext, where ``\\x{HEX}`` stands for one character."""

    def character(match: re.Match[str]) -> str:
        point = int(match.group(1), 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            raise Refusal(R.BAD_PARAMETER)
        return chr(point)

    return _UNICODE_ESCAPE.sub(character, value)


def _parameters(tokens: list[str]) -> list[tuple[str, str | None]]:
    """``KEYWORD[=value]`` pairs, keywords upper-cased; syntax and duplicates refused."""
    seen: set[str] = set()
    params: list[tuple[str, str | None]] = []
    for token in tokens:
        keyword, equals, value = token.partition("=")
        if not _KEYWORD.fullmatch(keyword) or (equals and not _VALUE.fullmatch(value)):
            raise Refusal(R.BAD_PARAMETER)
        keyword = keyword.upper()
        if keyword in seen:
            raise Refusal(R.DUPLICATE_PARAMETER)
        seen.add(keyword)
        params.append((keyword, value if equals else None))
    return params


def _required(value: str | None) -> str:
    if value is None:
        raise Refusal(R.BAD_PARAMETER)
    return value


def _choice(value: str | None, allowed: Sequence[str]) -> str:
    upper = _required(value).upper()
    if upper not in allowed:
        raise Refusal(R.BAD_PARAMETER)
    return upper


def _notify(value: str | None) -> tuple[str, ...]:
    words = _required(value).upper().split(",")
    if words == ["NEVER"]:
        return ("NEVER",)
    if len(set(words)) != len(words) or not set(words) <= _NOTIFY:
        raise Refusal(R.BAD_PARAMETER)
    return tuple(words)


def _orcpt(value: str | None) -> tuple[str, str]:
    addr_type, semicolon, original = _required(value).partition(";")
    if not semicolon or not _ADDR_TYPE.fullmatch(addr_type) or not original:
        raise Refusal(R.BAD_PARAMETER)
    if len(original) > _ORCPT_MAX:
        raise Refusal(R.BAD_PARAMETER)
    if addr_type.lower() == "utf-8":
        return addr_type, _utf8_xtext(original)
    return addr_type, _xtext(original)

