"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbote.imap.utf7 import Mutf7Error, decode_mutf7, encode_mutf7


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", "INBOX"),
        ("&", "&-"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("☺", "&Jjo-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("Entwürfe", "Entw&APw-rfe"),
        ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
        ("📧", "&2D3c5w-"),  # outside the BMP: a UTF-16 surrogate pair
        ("a\tb", "a&AAk-b"),  # a control character is not printable, so it is encoded
        ("", ""),
    ],
)
def test_known_names_encode_and_decode(name: str, wire: str) -> None:
    assert encode_mutf7(name) == wire
    assert decode_mutf7(wire) == name


@pytest.mark.parametrize(
    "wire",
    [
        "&Jjo",  # not terminated
        "&Jjo!-",  # "!" is not in the modified base64 alphabet
        "&AGE-",  # encodes "a", which must represent itself
        "&ACY-",  # encodes "&", which must be written "&-"
        "&2D0-",  # a lone high surrogate
        "&APw",  # unterminated again, at the end
        "&AP-",  # one byte: not a whole UTF-16 unit
        "&APx-",  # non-zero padding bits: not the canonical spelling
        "Entw\u00fcrfe",  # 8-bit text must be base64-encoded
        "a\tb",  # control characters too
        "&APw-&APw-",  # two adjacent sections must be one
        "&Jjo/-",  # "/" is standard base64 but not modified base64
    ],
)
def test_invalid_spellings_are_rejected(wire: str) -> None:
    with pytest.raises(Mutf7Error):
        decode_mutf7(wire)


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(names)
def test_any_name_round_trips(name: str) -> None:
    assert decode_mutf7(encode_mutf7(name)) == name


@given(names)
def test_encoding_is_printable_ascii(name: str) -> None:
    wire = encode_mutf7(name)
    assert all(" " <= char <= "~" for char in wire)


@given(st.text(alphabet="&-AZaz09+,/é ", max_size=12))
def test_decoding_either_fails_cleanly_or_is_canonical(wire: str) -> None:
    try:
        name = decode_mutf7(wire)
    except Mutf7Error:
        return
    assert encode_mutf7(name) == wire
