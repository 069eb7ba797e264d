"""Property tests: no input makes the parser raise, and every offset stays inside the input."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbote.mail.encodedwords import decode_words
from postbote.mail.headers import parse_address_list
from postbote.mail.message import parse_message
from postbote.mail.params import parse_mime_value
from postbote.mail.transfer import decode_transfer

from .checks import assert_sane

# Fragments that steer random messages into the interesting corners of the scanner.
FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b" ", b"\t", b"--", b"--b", b"--b--", b"--c", b"b", b":", b";", b"=",
    b'"', b"(", b")", b"<", b">", b"@", b",", b"\xff", b"\xc3\xa9", b"=?", b"?=", b"*0*", b"'",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/alternative; boundary=\"c\"\n",
    b"Content-Type: multipart/digest; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1=x\r\n",
    b"From: \"A, B\" <a@b>, G: c@d;\r\n", b"Subject: =?utf-8?q?x=C3?= =?utf-8?b?qQ==?=\r\n",
    b"Date: Mon, 1 Jan 2024 10:00:00 +0100\r\n", b"<p>x</p><script>", b"=C3=A9=\r\n",
]  # fmt: skip

mime_like = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=8)), max_size=60).map(
    b"".join
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_and_offsets_are_in_range(raw: bytes):
    parsed = parse_message(raw)
    assert_sane(parsed, raw)
    parsed.search_text(limit=500)


@FAST
@given(mime_like)
def test_mime_like_input_never_raises_and_offsets_are_in_range(raw: bytes):
    parsed = parse_message(raw)
    assert_sane(parsed, raw)
    parsed.search_text(limit=500)
    for part in parsed.root.walk():
        assert raw[part.bstart : part.bend] == raw[part.bstart : part.bstart + part.size]


@FAST
@given(st.text(max_size=300))
def test_header_value_parsers_are_total(text: str):
    parse_address_list(text)
    parse_mime_value(text)
    decode_words(text)


@FAST
@given(st.binary(max_size=500), st.sampled_from(["base64", "quoted-printable", "7bit", "x-junk"]))
def test_transfer_decoding_is_total(body: bytes, encoding: str):
    decode_transfer(body, encoding)


@FAST
@given(mime_like)
def test_every_section_range_lies_inside_the_message(raw: bytes):
    parsed = parse_message(raw)
    paths = [(1,), (1, 1), (2,), (1, 2), (2, 1), (1, 1, 1), (3,)]
    for path in paths:
        for span in (
            parsed.section_range(path),
            parsed.header_range(path),
            parsed.text_range(path),
            parsed.mime_header_range(path),
        ):
            if span is not None:
                assert 0 <= span[0] <= span[1] <= len(raw)
