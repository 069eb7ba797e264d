"""Authentication-Results (RFC 8601): what this server found, for the reader's client.

One field per message, named by our authserv-id (``settings.hostname``).
Fields already in the message that claim our authserv-id are forged or
stale and must go (RFC 8601 §5); ``forged_fields`` finds them so the
filter can ask the pipeline to drop them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dkim_verify import DkimResult
from .dmarc import DmarcOutcome
from .spf import SpfOutcome


@dataclass(frozen=True)
class ArcOutcome:
    result: str  # none, pass, fail (RFC 8617 §4.4)
    sealer: str = ""  # d= of the newest ARC-Seal: who vouches for the earlier results
    instance: int = 0
    reason: str = ""


def authentication_results(authserv_id: str, *, spf: SpfOutcome | None, helo_spf: SpfOutcome | None,
                           dkim: list[DkimResult], dmarc: DmarcOutcome | None,
                           arc: ArcOutcome | None, remote_ip: str = "") -> bytes:
    """The complete header field, folded one result per line, ending in CRLF."""
    parts = []
    if spf is not None:
        parts.append(_spf(spf))
    if helo_spf is not None and (spf is None or spf.identity != "helo"):
        parts.append(f"spf={helo_spf.result.value} smtp.helo={_value(helo_spf.domain)}")
    parts += [_dkim(r) for r in dkim] or ["dkim=none"]
    if dmarc is not None:
        parts.append(_dmarc(dmarc))
    if arc is not None:
        detail = f" (i={arc.instance} d={_value(arc.sealer)})" if arc.instance else ""
        parts.append(f"arc={arc.result}{detail}" + (f" smtp.remote-ip={remote_ip}" if remote_ip else ""))
    return ("Authentication-Results: " + _ascii(authserv_id) + ";\r\n\t"
            + ";\r\n\t".join(_ascii(p) for p in parts) + "\r\n").encode("ascii")


def _spf(o: SpfOutcome) -> str:
    prop = "smtp.mailfrom" if o.identity == "mailfrom" else "smtp.helo"
    value = o.sender if o.identity == "mailfrom" else o.domain
    return f"spf={o.result.value}{_comment(o.reason)} {prop}={_value(value)}"


def _dkim(r: DkimResult) -> str:
    return (f"dkim={r.result}{_comment(r.reason)} header.d={_value(r.domain)} header.i={_value(r.identity)}"
            f" header.s={_value(r.selector)} header.a={_value(r.algorithm)} header.b={_value(r.signature_b)}")


def _dmarc(o: DmarcOutcome) -> str:
    detail = f"p={o.policy} dis={o.disposition}" if o.record else o.reason
    return f"dmarc={o.result}{_comment(detail)} header.from={_value(o.from_domain)}"


def _comment(text: str) -> str:
    text = re.sub(r"[()\\\r\n]", "", text)[:120].strip()
    return f" ({text})" if text else ""


def _value(text: str) -> str:
    """A property value: a token, or a quoted string when it has specials (RFC 8601 §2.2)."""
    if text and re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+", text):
        return text
    return '"' + re.sub(r'["\\\r\n]', "", text) + '"'


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)", re.S)


def authserv_id(field_value: bytes) -> str:
    """The authserv-id of an Authentication-Results value: its first token, comments removed."""
    text = field_value.decode("utf-8", "replace")
    for _ in range(3):  # nested comments
        text = _COMMENT.sub(" ", text)
    return text.strip().split(";", 1)[0].strip().split()[0].lower() if text.strip() else ""


def forged_fields(fields: list[bytes], our_id: str) -> tuple[int, ...]:
    """Indices of the Authentication-Results fields that claim our authserv-id (RFC 8601 §5)."""
    our_id = our_id.lower().rstrip(".")
    found = []
    for i, raw in enumerate(fields):
        name, colon, value = raw.partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            if authserv_id(value).rstrip(".") == our_id:
                found.append(i)
    return tuple(found)
