"""Delivery status notifications (RFC 3464): the bounce, the delay notice, the relay notice.

A DSN goes to the envelope sender of the original message, from the null
reverse-path, so that a DSN that cannot be delivered is dropped rather than
bounced again (RFC 5321 §4.5.5: no bounce loops). There is never a DSN for a
message whose sender was null. Which recipients appear follows their RFC 3461
NOTIFY: the default (none given) is failures and delays; NEVER is never.
"""

from __future__ import annotations

import email.utils
import secrets
from dataclasses import dataclass

from postbote.store import QueuedEntry, QueuedRecipient

# RET unspecified: return the whole message up to this size, only its header above.
FULL_RETURN_LIMIT = 1 << 20


@dataclass(frozen=True)
class RecipientReport:
    recipient: QueuedRecipient
    action: str  # "failed", "delayed", "relayed", "delivered"
    status: str  # RFC 3463, e.g. "5.1.1"
    diagnostic: str = ""  # the remote reply, "550 5.1.1 No such user"
    remote_mta: str = ""


def wants(recipient: QueuedRecipient, action: str) -> bool:
    """RFC 3461 §4.1: NOTIFY=NEVER, or a list of SUCCESS, FAILURE, DELAY."""
    notify = {n.strip().upper() for n in (recipient.notify or "").split(",") if n.strip()}
    if "NEVER" in notify:
        return False
    if not notify:
        return action in ("failed", "delayed")
    kind = {"failed": "FAILURE", "delayed": "DELAY", "relayed": "SUCCESS", "delivered": "SUCCESS"}[action]
    return kind in notify


def strip_return_path(raw: bytes) -> bytes:
    """The spool begins with our own Return-Path line (added for local delivery); it must not travel."""
    if raw[:12].lower() == b"return-path:":
        end = raw.find(b"\n")
        while end >= 0 and raw[end + 1:end + 2] in (b" ", b"\t"):
            end = raw.find(b"\n", end + 1)
        return raw[end + 1:] if end >= 0 else b""
    return raw


def build_dsn(entry: QueuedEntry, reports: list[RecipientReport], original: bytes, hostname: str,
              now: float, retry_until: float | None = None) -> bytes:
    """The complete DSN message (RFC 3464 §2, RFC 3462 multipart/report), CRLF line ends."""
    boundary = f"{entry.queue_id}/{secrets.token_hex(8)}"
    kind = reports[0].action
    subject = {"failed": "Undelivered Mail Returned to Sender", "delayed": "Delayed Mail (still being retried)",
               "relayed": "Successful Mail Delivery Report", "delivered": "Successful Mail Delivery Report"}[kind]
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{entry.sender}>",
        f"Subject: {subject}",
        f"Date: {email.utils.formatdate(now, localtime=True)}",
        f"Message-ID: <{entry.queue_id}.dsn.{secrets.token_hex(4)}@{hostname}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Description: Notification",
        "",
        *_human_text(kind, reports, hostname),
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        *_status_fields(entry, reports, hostname, now, retry_until),
        f"--{boundary}",
    ]
    full = entry.ret != "HDRS" and (entry.ret == "FULL" or len(original) <= FULL_RETURN_LIMIT)
    if full:
        part = [("message/rfc822", "Undelivered Message"), original]
    else:
        header = original.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        part = [("text/rfc822-headers", "Undelivered Message Headers"), header]
    head += [f"Content-Type: {part[0][0]}", f"Content-Description: {part[0][1]}", "", ""]
    body = part[1]
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return "\r\n".join(head).encode("utf-8") + body + f"\r\n--{boundary}--\r\n".encode()


def _human_text(kind: str, reports: list[RecipientReport], hostname: str) -> list[str]:
    intro = {
        "failed": "Your message could not be delivered to one or more recipients.\r\n"
                  "It has been returned with this report. The error from the remote server:",
        "delayed": "Your message could not be delivered yet. It is still in the queue and\r\n"
                   "delivery will be retried; you do not need to send it again.",
        "relayed": "Your message was relayed to a server that does not report delivery status.",
        "delivered": "Your message was delivered.",
    }[kind]
    lines = [f"This is the mail system at {hostname}.", "", intro, ""]
    for r in reports:
        lines.append(f"<{r.recipient.address}>: {r.diagnostic or r.status}")
    return lines


def _status_fields(entry: QueuedEntry, reports: list[RecipientReport], hostname: str, now: float,
                   retry_until: float | None) -> list[str]:
    # RFC 3464 §2.2: per-message fields, a blank line, then one block per recipient.
    out = [f"Reporting-MTA: dns; {hostname}"]
    if entry.envid:
        out.append(f"Original-Envelope-Id: {entry.envid}")
    out += [f"X-Postbote-Queue-ID: {entry.queue_id}",
            f"Arrival-Date: {email.utils.formatdate(entry.created, localtime=True)}", ""]
    for r in reports:
        if r.recipient.orcpt:
            kind, _, addr = r.recipient.orcpt.partition(";")
            out.append(f"Original-Recipient: {kind};{addr}")
        out += [f"Final-Recipient: rfc822; {r.recipient.address}", f"Action: {r.action}", f"Status: {r.status}"]
        if r.remote_mta:
            out.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            out.append(f"Diagnostic-Code: smtp; {r.diagnostic}")
        out.append(f"Last-Attempt-Date: {email.utils.formatdate(now, localtime=True)}")
        if retry_until is not None and r.action == "delayed":
            out.append(f"Will-Retry-Until: {email.utils.formatdate(retry_until, localtime=True)}")
        out.append("")
    return out


def status_of(reply: str, permanent: bool) -> str:
    """The RFC 3463 code of a reply text ("550 5.1.1 …"), or a generic one of the right class."""
    words = reply.split()
    if len(words) > 1 and len(words[1]) >= 5 and words[1][0] in "245" and words[1][1] == ".":
        return words[1]
    return "5.0.0" if permanent else "4.0.0"
