"""Content-Transfer-Encoding decoding."""

from __future__ import annotations

import base64

from postbote.mail.transfer import decode_transfer


def test_base64_with_line_breaks():
    data = bytes(range(256)) * 4
    encoded = base64.encodebytes(data)
    assert decode_transfer(encoded, "base64") == data
    assert decode_transfer(encoded.replace(b"\n", b"\r\n"), "Base64") == data


def test_base64_missing_padding_and_garbage():
    assert decode_transfer(b"aGVsbG8", "base64") == b"hello"
    assert decode_transfer(b"aGV*sb!G8=\x00", "base64") == b"hello"


def test_base64_single_dangling_character_is_dropped():
    assert decode_transfer(b"aGVsbG8gA", "base64") == b"hello "


def test_base64_empty_and_all_garbage():
    assert decode_transfer(b"", "base64") == b""
    assert decode_transfer(b"!!!***", "base64") == b""


def test_quoted_printable_soft_breaks_with_crlf_and_lf():
    assert (
        decode_transfer(b"caf=C3=A9 =\r\nlong=\nline", "quoted-printable")
        == "café longline".encode()
    )


def test_quoted_printable_bad_escape_stays_literal():
    assert decode_transfer(b"100=ZZ% =4", "quoted-printable") == b"100=ZZ% =4"


def test_identity_and_unknown_encodings_pass_through():
    for encoding in ["7bit", "8bit", "binary", "x-uuencode", "", None]:
        assert decode_transfer(b"a=3Db", encoding) == b"a=3Db"
