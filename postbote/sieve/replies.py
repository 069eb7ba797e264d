"""The messages Sieve makes: the vacation auto-reply (RFC 5230 §5, RFC 3834) and the refusal
that ``reject`` sends back (RFC 5429 §2.1.1, an MDN per RFC 8098). Pure builders: bytes out.
"""

from __future__ import annotations

import email.utils
import secrets

from postbote.mail.headers import scan_header

from .interpreter import Vacation


def _encode_header(text: str) -> str:
    """RFC 2047 B-encoding for non-ASCII header text; ASCII stays readable."""
    text = " ".join(text.split())  # no line breaks may reach a header
    if text.isascii():
        return text
    import base64
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8", "replace")).decode() + "?="


def _body_lines(text: str) -> bytes:
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def vacation_reply(action: Vacation, from_address: str, hostname: str, now: float) -> bytes:
    """The auto-reply: To the envelope sender, Auto-Submitted (RFC 3834 §5), threaded by
    In-Reply-To and References (RFC 5230 §5.6–5.8)."""
    head = [
        f"From: {_encode_header(action.from_ or from_address)}",
        f"To: <{action.recipient}>",
        f"Subject: {_encode_header(action.subject)}",
        f"Date: {email.utils.formatdate(now, localtime=True)}",
        f"Message-ID: <{secrets.token_hex(12)}.vacation@{hostname}>",
        "Auto-Submitted: auto-replied (vacation)",
        "Precedence: bulk",
    ]
    if action.in_reply_to:
        head.append(f"In-Reply-To: {action.in_reply_to}")
    if action.references:
        head.append(f"References: {action.references}")
    head.append("MIME-Version: 1.0")
    if action.mime:
        # RFC 5230 §4.4: with :mime the reason is a whole MIME entity, header included
        return ("\r\n".join(head) + "\r\n").encode() + _body_lines(action.reason)
    head += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", ""]
    return ("\r\n".join(head) + "\r\n").encode() + _body_lines(action.reason)


def reject_notice(reason: str, original: bytes, sender: str, recipient: str, hostname: str,
                  now: float) -> bytes:
    """RFC 5429 §2.1.1: an MDN with disposition "deleted", the reason as human text, and the
    original header so the sender can tell which message it was."""
    boundary = f"{secrets.token_hex(12)}/{hostname}"
    fields, body_start = scan_header(original, 0, len(original))
    message_id = next((v for k, v in fields if k.lower() == "message-id"), None)
    subject = next((v for k, v in fields if k.lower() == "subject"), "")
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{sender}>",
        f"Subject: Rejected: {subject}" if subject else "Subject: Message rejected",
        f"Date: {email.utils.formatdate(now, localtime=True)}",
        f"Message-ID: <{secrets.token_hex(12)}.reject@{hostname}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=disposition-notification; '
        f'boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"Your message to <{recipient}> was rejected by the recipient's mail filter.",
        "",
    ]
    human = _body_lines(reason)
    mdn = [
        f"--{boundary}",
        "Content-Type: message/disposition-notification",
        "",
        f"Reporting-UA: {hostname}; postbote Sieve",
        f"Final-Recipient: rfc822; {recipient}",
    ]
    if message_id:
        mdn.append(f"Original-Message-ID: {message_id}")
    mdn += ["Disposition: automatic-action/MDN-sent-automatically; deleted", "",
            f"--{boundary}", "Content-Type: text/rfc822-headers", "", ""]
    header = original[:body_start].rstrip(b"\r\n") + b"\r\n"
    return ("\r\n".join(head) + "\r\n").encode() + human + b"\r\n" + \
        "\r\n".join(mdn).encode() + header + f"\r\n--{boundary}--\r\n".encode()
