"""ENVELOPE and BODY/BODYSTRUCTURE values (RFC 9051 §7.5.2)."""

from __future__ import annotations

from postbote.mail.message import parse_message


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def test_envelope_fields_in_order_with_raw_strings():
    raw = crlf(
        """Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)
From: Terry Gray <gray@cac.washington.edu>
Subject: =?utf-8?q?IMAP4rev2_WG_mtg?= summary
To: imap@cac.washington.edu
Cc: minutes@CNRI.Reston.VA.US, "John Klensin" <KLENSIN@MIT.EDU>
In-Reply-To: <prev@example.com>
Message-ID: <B27397-0100000@cac.washington.edu>

body
"""
    )
    gray = [["Terry Gray", None, "gray", "cac.washington.edu"]]
    assert parse_message(raw).envelope == [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "=?utf-8?q?IMAP4rev2_WG_mtg?= summary",  # clients decode RFC 2047 themselves
        gray,
        gray,  # Sender defaults to From
        gray,  # Reply-To defaults to From
        [[None, None, "imap", "cac.washington.edu"]],
        [
            [None, None, "minutes", "CNRI.Reston.VA.US"],
            ["John Klensin", None, "KLENSIN", "MIT.EDU"],
        ],
        None,
        "<prev@example.com>",
        "<B27397-0100000@cac.washington.edu>",
    ]


def test_envelope_of_message_without_headers_is_all_nil():
    assert parse_message(b"\r\njust a body").envelope == [None] * 10


def test_envelope_explicit_sender_and_reply_to():
    raw = crlf("From: a@x.example\nSender: s@x.example\nReply-To: r@x.example\n\n")
    envelope = parse_message(raw).envelope
    assert envelope[3] == [[None, None, "s", "x.example"]]
    assert envelope[4] == [[None, None, "r", "x.example"]]


def test_envelope_empty_reply_to_takes_from():
    envelope = parse_message(crlf("From: a@x.example\nReply-To:\n\n")).envelope
    assert envelope[4] == [[None, None, "a", "x.example"]]


def test_envelope_group_markers():
    envelope = parse_message(crlf("To: Team: a@x.example;, undisclosed-recipients:;\n\n")).envelope
    assert envelope[5] == [
        [None, None, "Team", None],
        [None, None, "a", "x.example"],
        [None, None, None, None],
        [None, None, "undisclosed-recipients", None],
        [None, None, None, None],
    ]


def test_envelope_subject_keeps_8bit_utf8_text():
    assert parse_message("Subject: Grüße\r\n\r\n".encode()).envelope[1] == "Grüße"


def test_body_and_bodystructure_of_a_plain_text_message():
    raw = crlf("Subject: x\n\nline one\nline two\n")
    parsed = parse_message(raw)
    basic = ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 20, 2]
    assert parsed.bodystructure(False) == basic
    assert parsed.bodystructure(True) == [*basic, None, None, None, None]


def test_bodystructure_extension_fields_of_a_single_part():
    raw = crlf(
        """Content-Type: application/pdf; name="a.pdf"
Content-ID: <id1>
Content-Description: the report
Content-Transfer-Encoding: BASE64
Content-MD5: bWQ1
Content-Disposition: attachment; filename="a.pdf"; size=3
Content-Language: en
Content-Location: a.pdf

QUJD
"""
    )
    assert parse_message(raw).bodystructure(True) == [
        "application", "pdf", ["name", "a.pdf"], "<id1>", "the report", "base64", 6,
        "bWQ1", ["attachment", ["filename", "a.pdf", "size", "3"]], "en", "a.pdf",
    ]  # fmt: skip


def test_several_languages_are_a_list():
    raw = crlf("Content-Language: en, de\n\nx")
    assert parse_message(raw).bodystructure(True)[-2] == ["en", "de"]


def test_disposition_without_parameters_has_nil_params():
    raw = crlf("Content-Disposition: inline\n\nx")
    assert parse_message(raw).bodystructure(True)[-3] == ["inline", None]


def test_multipart_body_and_bodystructure():
    raw = crlf(
        """Content-Type: multipart/alternative; boundary="b"
Content-Language: fr

--b
Content-Type: text/plain; charset=utf-8

hi
--b
Content-Type: text/html; charset=utf-8

<b>hi</b>
--b--
"""
    )
    parsed = parse_message(raw)
    plain = ["text", "plain", ["charset", "utf-8"], None, None, "7bit", 2, 1]
    html = ["text", "html", ["charset", "utf-8"], None, None, "7bit", 9, 1]
    assert parsed.bodystructure(False) == [plain, html, "alternative"]
    ext = [None, None, None, None]
    assert parsed.bodystructure(True) == [
        plain + ext,
        html + ext,
        "alternative",
        ["boundary", "b"],
        None,
        "fr",
        None,
    ]


def test_message_rfc822_has_envelope_body_and_lines():
    raw = crlf("Content-Type: message/rfc822\n\nSubject: inner\nFrom: i@x.example\n\nhello\n")
    parsed = parse_message(raw)
    inner_body = ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 7, 1]
    structure = parsed.bodystructure(False)
    assert structure[:7] == ["message", "rfc822", None, None, None, "7bit", len(raw) - 32]
    assert structure[7][1] == "inner"
    assert structure[7][2] == [[None, None, "i", "x.example"]]
    assert structure[8] == inner_body
    assert structure[9] == 4
    assert len(structure) == 10
    assert len(parsed.bodystructure(True)) == 14


def test_non_text_single_part_has_no_line_count():
    raw = crlf("Content-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lG\n")
    assert parse_message(raw).bodystructure(False) == [
        "image", "gif", None, None, None, "base64", 6
    ]  # fmt: skip


def test_message_global_is_treated_like_rfc822():
    raw = crlf("Content-Type: message/global\n\nSubject: ü\n\nx")
    structure = parse_message(raw).bodystructure(False)
    assert structure[1] == "global" and structure[7][1] == "ü"
