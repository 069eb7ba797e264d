"""One structured line per transaction, tied together by the queue ID."""

from __future__ import annotations

import json
import logging
import smtplib

from postbote.log import JsonFormatter, LogfmtFormatter


def test_smtp_refusal_and_delivery_lines_share_the_queue_id(server, caplog):
    server.add_user("bob@example.org")
    caplog.set_level(logging.INFO, logger="postbote")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("alice@sender.test")
        assert smtp.rcpt("nobody@example.org")[0] == 550
        assert smtp.rcpt("bob@example.org")[0] == 250
        code, reply = smtp.data(b"Subject: hi\r\n\r\nhello\r\n")
        assert code == 250
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if getattr(r, "fields", None)]
    [message] = [line for line in lines if line["msg"] == "message"]
    queue_id = message["queue_id"]
    assert queue_id in reply.decode()  # the 250 reply names it too, for the sender's logs
    assert message["session"] and message["accepted"] == 1
    [delivered] = [line for line in lines if line["msg"] == "delivered"]
    [refused] = [line for line in lines if line["msg"] == "rcpt refused: unknown"]
    assert delivered["queue_id"] == refused["queue_id"] == queue_id
    assert refused["session"] == message["session"]
    logfmt = LogfmtFormatter().format(next(r for r in caplog.records if r.getMessage() == "delivered"))
    assert f"queue_id={queue_id}" in logfmt and logfmt.startswith("time=")
