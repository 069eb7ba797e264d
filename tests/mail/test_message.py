"""ParsedMessage: convenience fields, the JSON cache form, and search text."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from postbote.mail.headers import Address
from postbote.mail.message import ParsedMessage, parse_message

from .checks import assert_sane


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


HEADERS = crlf(
    """Return-Path: <bounce@example.com>
From: =?iso-8859-1?q?J=F6rg?= <joerg@example.de>
Sender: list@example.org
Reply-To: replies@example.org
To: Team: a@example.com, "B, Bee" <b@example.com>;
Cc: c@example.com
Bcc: d@example.com
Subject: =?utf-8?b?R3LDvMOfZQ==?=
 =?utf-8?q?_aus_K=C3=B6ln?=
Date: Tue, 2 Jul 2002 09:01:02 -0700 (PDT)
Message-ID: <m1@example.de>
In-Reply-To: <m0@example.de> (the earlier one)
References: <a@x>
 <m0@example.de>

hello
"""
)


def test_convenience_fields_are_decoded_for_people():
    parsed = parse_message(HEADERS)
    assert parsed.subject == "Grüße aus Köln"
    assert parsed.from_ == [Address("Jörg", "joerg", "example.de")]
    assert parsed.sender == [Address(None, "list", "example.org")]
    assert parsed.reply_to == [Address(None, "replies", "example.org")]
    assert parsed.to == [
        Address(None, "Team", None),
        Address(None, "a", "example.com"),
        Address("B, Bee", "b", "example.com"),
        Address(None, None, None),
    ]
    assert parsed.cc == [Address(None, "c", "example.com")]
    assert parsed.bcc == [Address(None, "d", "example.com")]
    assert parsed.message_id == "<m1@example.de>"
    assert parsed.in_reply_to == "<m0@example.de>"
    assert parsed.references == ["<a@x>", "<m0@example.de>"]
    assert parsed.date == datetime(2002, 7, 2, 9, 1, 2, tzinfo=timezone(timedelta(hours=-7)))


def test_headers_are_unfolded_but_not_decoded_and_keep_order():
    parsed = parse_message(HEADERS)
    assert parsed.headers[0] == ("Return-Path", "<bounce@example.com>")
    assert ("Subject", "=?utf-8?b?R3LDvMOfZQ==?= =?utf-8?q?_aus_K=C3=B6ln?=") in parsed.headers
    assert [name for name, _ in parsed.headers][-2:] == ["In-Reply-To", "References"]


def test_absent_fields_are_none_or_empty():
    parsed = parse_message(b"\r\nno header at all")
    assert parsed.subject is None and parsed.date is None and parsed.message_id is None
    assert parsed.from_ == [] and parsed.references == [] and parsed.headers == []


def test_json_round_trip_is_exact_and_survives_json_text():
    parsed = parse_message(HEADERS)
    text = json.dumps(parsed.to_json(), separators=(",", ":"))
    reloaded = ParsedMessage.from_json(json.loads(text))
    assert reloaded == parsed
    assert reloaded.date is not None and reloaded.date.utcoffset() == timedelta(hours=-7)
    assert reloaded.raw is None
    assert_sane(parsed, HEADERS)


def test_json_is_compact_for_a_simple_message():
    raw = crlf("From: a@example.com\nSubject: hi\n\nhello\n")
    assert len(json.dumps(parse_message(raw).to_json(), separators=(",", ":"))) < 400


def test_json_of_another_version_is_refused():
    data = parse_message(HEADERS).to_json()
    data["v"] = 999
    with pytest.raises(ValueError, match="version"):
        ParsedMessage.from_json(data)


def test_accepts_bytearray_and_memoryview():
    for raw in (bytearray(HEADERS), memoryview(HEADERS)):
        assert parse_message(raw).subject == "Grüße aus Köln"  # type: ignore[arg-type]


MIXED_TEXT = crlf(
    """Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 cr=E8me=
 br=FBl=E9e
--b
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PGh0bWw+PGhlYWQ+PHRpdGxlPmhpZGRlbjwvdGl0bGU+PC9oZWFkPjxib2R5PjxzY3JpcHQ+
dmFyIHNlY3JldDs8L3NjcmlwdD48cD5Gw7xyICZhbXA7IGZyw7xoPC9wPjwvYm9keT48L2h0bWw+
--b
Content-Type: image/png
Content-Transfer-Encoding: base64

aW1hZ2VieXRlcw==
--b
Content-Type: message/rfc822

Subject: inner

forwarded words
--b--
"""
)


def test_search_text_decodes_transfer_encoding_and_charset():
    text = parse_message(MIXED_TEXT).search_text()
    assert "Café crème brûlée" in text
    assert "forwarded words" in text


def test_search_text_strips_html_and_hidden_elements():
    text = parse_message(MIXED_TEXT).search_text()
    assert "Für & früh" in text
    assert "<p>" not in text and "secret" not in text and "hidden" not in text


def test_search_text_skips_non_text_parts():
    assert "imagebytes" not in parse_message(MIXED_TEXT).search_text()


def test_search_text_is_bounded():
    raw = b"Subject: big\r\n\r\n" + b"word " * 1_000_000
    assert len(parse_message(raw).search_text(limit=1000)) == 1000


def test_search_text_after_json_needs_the_raw_bytes():
    reloaded = ParsedMessage.from_json(parse_message(MIXED_TEXT).to_json())
    with pytest.raises(ValueError, match="raw"):
        reloaded.search_text()
    assert "forwarded words" in reloaded.search_text(raw=MIXED_TEXT)
    assert (
        "forwarded words"
        in ParsedMessage.from_json(reloaded.to_json(), raw=MIXED_TEXT).search_text()
    )


def test_unclosed_script_in_html_hides_the_rest_without_blowing_up():
    raw = b"Content-Type: text/html\r\n\r\nvisible<script>" + b"<script>" * 100_000
    assert parse_message(raw).search_text().strip() == "visible"


NASTY = [
    b"",
    b"\r\n",
    b"\n\n\n",
    b":",
    b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n--\r\n',
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA",
    b'Content-Type: text/plain; charset="\\\r\n\r\nx',
    b"Content-Type: text/plain; charset*0*=zlib''%ff; charset*1*=%00\r\n\r\nx",
    b"Content-Type: text/plain; charset=idna\r\nContent-Transfer-Encoding: base64\r\n\r\n/w==",
    b"Date: 99999999999999999999999999 Jan 99999999999999 99:99:99 +9999\r\n\r\n",
    b'From: "\\\r\nTo: <<<<@@@>>>\r\nCc: (((\r\n\r\n',
    b"Subject: =?utf-8?b?====?= =?x?q?=ZZ?=\r\n\r\n",
    b"\xff\xfe\x00\x00Subject: \x80\x81\r\n\r\n\x00",
    b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n--d--\r\n",
]


@pytest.mark.parametrize("raw", NASTY)
def test_nasty_input_parses_sanely(raw: bytes):
    parsed = parse_message(raw)
    assert_sane(parsed, raw)
    parsed.search_text()
