"""Helpers for tests against scripted peers: submitting as Alice, starting peers, reading DSNs."""

from __future__ import annotations

import email
import email.policy

from tests.queue.conftest import LOCAL_DOMAIN, PEER_HOSTS
from tests.queue.peers import Peer
from tests.smtp.helpers import mailbox_messages, submit

ALICE = f"alice@{LOCAL_DOMAIN}"


def message(to: str, subject: str = "hello", body: str = "Hello there.\r\n") -> bytes:
    return (f"From: Alice <{ALICE}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\n{body}").encode()


def peer(peers: list, mx_port: int, n: int = 0, **kw) -> Peer:
    p = Peer(PEER_HOSTS[n], mx_port, **kw).start()
    peers.append(p)
    return p


def send(server, to: list[str], msg: bytes | None = None, **options) -> None:
    client = submit(server, ALICE)
    client.sendmail(ALICE, to, msg or message(to[0]), **options)
    client.quit()


def dsns(server) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default) for m in mailbox_messages(server, ALICE)
            if b"multipart/report" in m]


def status_fields(dsn: email.message.EmailMessage) -> str:
    part = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    return "\n".join(str(block) for block in part.get_payload())
