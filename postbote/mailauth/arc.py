"""ARC (RFC 8617): verify the chain of custody, and seal mail we forward.

Verification: the ARC sets a message carries are checked (dkimpy does the
cryptography, keys come through postbote's resolver as for DKIM). A passing
chain from a trusted forwarder lets local policy accept mail whose DMARC
broke on the way (RFC 7489 §6.7 "local policy override").

Sealing: when a local alias sends a message on to an outside address, SPF
and often DKIM will fail at the destination, so we add an ARC set (RFC 8617
§5.1) with our Authentication-Results, signed with the alias domain's RSA
DKIM key (RFC 8617 §4.1.4: rsa-sha256 only).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

import dkim

from postbote.dns import TempFailure

from .dkim_verify import MIN_RSA_BITS, fetch_keys, find_signatures, key_dnsfunc
from .keys import SigningKey
from .lookup import Lookup
from .results import ArcOutcome


async def verify_arc(message: bytes, dns: Lookup, executor: Executor | None = None) -> ArcOutcome:
    seals = await find_signatures(message, b"arc-seal", executor)
    if not seals:
        return ArcOutcome("none")
    signatures = await find_signatures(message, b"arc-message-signature", executor)
    names = {s.key_name for s in seals + signatures if s.tags is not None}
    keys = await fetch_keys(dns, names)
    failed = [n for n, k in keys.items() if isinstance(k, TempFailure)]
    if failed:
        # RFC 8617 has no temperror; a chain we could not check is not a pass.
        return ArcOutcome("fail", reason=f"key lookup failed: {failed[0]}")
    return await asyncio.get_running_loop().run_in_executor(executor, _verify, message, keys)


def _verify(message: bytes, keys: dict) -> ArcOutcome:
    try:
        cv, sets, reason = dkim.arc_verify(message, dnsfunc=key_dnsfunc(keys), minkey=MIN_RSA_BITS)
    except (dkim.DKIMException, ValueError, TypeError, IndexError) as exc:
        return ArcOutcome("fail", reason=f"malformed ARC set: {exc}")
    newest = sets[0] if sets else {}
    sealer = newest.get("as-domain", b"").decode("ascii", "replace")
    instance = int(newest.get("instance", 0) or 0)
    result = {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")
    return ArcOutcome(result, sealer.lower(), instance, str(reason))


class SealError(Exception):
    """dkimpy could not seal this message (malformed header, unparsable results)."""


def seal(message: bytes, key: SigningKey, authserv_id: str) -> bytes:
    """The next ARC set for ``message`` (which must carry our Authentication-Results,
    with an ``arc=`` result), as header fields to prepend; b"" if the chain ended.
    Blocking (RSA): run it in an executor."""
    if key.algorithm != "rsa-sha256":
        raise ValueError("ARC seals with an RSA key (RFC 8617 §4.1.4)")
    try:
        fields = dkim.arc_sign(message, key.selector.encode(), key.domain.encode(), key.private_pem,
                               authserv_id.encode(), include_headers=_SIGNED)
    except (dkim.DKIMException, ValueError, TypeError, IndexError, UnicodeError) as exc:
        raise SealError(str(exc)) from exc
    return b"".join(fields)


_SIGNED = [b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to",
           b"references", b"mime-version", b"content-type", b"content-transfer-encoding"]
