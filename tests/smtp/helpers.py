"""Shared helpers for SMTP tests: TLS without verification, reading mailboxes."""

from __future__ import annotations

import smtplib
import ssl


def insecure_context() -> ssl.SSLContext:
    """The dev certificate is self-signed; the tests check TLS is used, not trusted."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def submit(server, user: str, password: str = "password123", port_name: str = "submission") -> smtplib.SMTP:
    if port_name == "submissions":
        client: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"),
                                               context=insecure_context(), timeout=30)
    else:
        client = smtplib.SMTP("127.0.0.1", server.port(port_name), timeout=30)
        client.starttls(context=insecure_context())
    client.login(user, password)
    return client


def mailbox_messages(server, address: str, mailbox: str = "INBOX") -> list[bytes]:
    """Every message in a mailbox, as stored, in UID order."""
    store = server.app.store

    async def read() -> list[bytes]:
        account = await store.get_account(address)
        box = await store.get_mailbox(account.id, mailbox)
        return [await store.read_blob(m.blob_id) for m in await store.list_messages(box.id)]

    return server.run(read())

