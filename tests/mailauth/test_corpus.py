"""Real, messy mail through the whole authentication chain: every message of the
SpamAssassin corpus goes through the mail authentication filter (SPF for MAIL FROM and
HELO, every DKIM signature, ARC, DMARC, Authentication-Results) without an exception.

The DNS server on loopback has no records at all, so every lookup is NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from postbote.config import DnsSettings, MailAuthSettings
from postbote.dns import Resolver
from postbote.filters.pipeline import Action, MessageContext, header_fields
from postbote.mailauth.filter import MailAuthFilter
from tests.mail.test_corpus import _corpus_files

BATCH = 64


def _envelope_sender(raw: bytes) -> str:
    for field in header_fields(raw[:65536]):
        name, _, value = field.partition(b":")
        if name.strip().lower() in (b"return-path", b"from"):
            addresses = email.utils.getaddresses([value.decode("utf-8", "replace")])
            if addresses and "@" in addresses[0][1]:
                return addresses[0][1]
    return ""


async def _check_all(paths: list[Path], dns_address: str, spool: Path) -> dict[Action, int]:
    resolver = Resolver(DnsSettings(nameservers=(dns_address,), timeout=2.0))
    counts: dict[Action, int] = {}
    with ThreadPoolExecutor(4) as executor:
        auth = MailAuthFilter("mx.test", MailAuthSettings(record_results=False), resolver, executor=executor)

        async def one(i: int, path: Path) -> None:
            ctx = MessageContext(queue_id=f"q{i}", service="smtp", peer_ip="192.0.2.7", helo="relay.example.net",
                                 sender=_envelope_sender(path.read_bytes()), recipients=("bob@example.net",),
                                 spool_path=path)
            try:
                result = await auth.check(ctx)
            except Exception as exc:  # the point of the test: report which message broke the chain
                raise AssertionError(f"{path}: {exc!r}") from exc
            counts[result.action] = counts.get(result.action, 0) + 1
            assert result.action in (Action.ACCEPT, Action.JUNK), (path, result)
            assert result.prepend.startswith(b"Authentication-Results: mx.test;")

        for start in range(0, len(paths), BATCH):
            await asyncio.gather(*(one(start + i, p) for i, p in enumerate(paths[start:start + BATCH])))
    return counts


def test_every_corpus_message_goes_through_mail_authentication(dns_server, tmp_path):
    corpus = _corpus_files()
    assert len(corpus) > 6000
    started = time.perf_counter()
    counts = asyncio.run(_check_all(corpus, dns_server.address, tmp_path))
    assert sum(counts.values()) == len(corpus)
    assert time.perf_counter() - started < 120
