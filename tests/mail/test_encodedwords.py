"""RFC 2047 encoded words and charset fallbacks."""

from __future__ import annotations

from postbote.mail.charsets import codec_for, decode_text
from postbote.mail.encodedwords import decode_words


def test_b_encoded_word():
    assert decode_words("=?UTF-8?B?R3LDvMOfZQ==?=") == "Grüße"


def test_q_encoded_word_with_underscore_as_space():
    assert decode_words("=?iso-8859-1?q?Gr=FC=DFe_aus_Bonn?=") == "Grüße aus Bonn"


def test_adjacent_words_are_joined_without_the_whitespace_between():
    assert decode_words("=?utf-8?q?a?= =?utf-8?q?b?=\r\n =?utf-8?q?c?=") == "abc"


def test_multibyte_character_split_across_words_is_rejoined():
    # "ü" is C3 BC in UTF-8; a sender cut it between two words.
    assert decode_words("=?utf-8?q?Gr=C3?= =?utf-8?q?=BC=C3=9Fe?=") == "Grüße"


def test_text_between_words_is_kept():
    assert (
        decode_words("Re: =?utf-8?q?caf=C3=A9?= and =?utf-8?q?th=C3=A9?=!") == "Re: café and thé!"
    )


def test_words_in_different_charsets_decode_separately():
    assert decode_words("=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=") == "éé"


def test_language_suffix_on_charset_is_ignored():
    assert decode_words("=?us-ascii*en?q?hello?=") == "hello"


def test_unknown_charset_falls_back_to_utf8_then_latin1():
    assert decode_words("=?x-nonsense?q?caf=C3=A9?=") == "café"
    assert decode_words("=?x-nonsense?q?caf=E9?=") == "café"


def test_bad_base64_padding_is_tolerated():
    assert decode_words("=?utf-8?b?R3LDvMOfZQ?=") == "Grüße"


def test_malformed_words_stay_literal():
    for text in ["=?utf-8?x?abc?=", "=?utf-8?q?unterminated", "=??q?x?=", "plain text"]:
        assert decode_words(text) == text


def test_common_misnamed_charsets_are_mapped():
    assert codec_for("ks_c_5601-1987") == "cp949"
    assert codec_for("GB2312") == "gb18030"
    assert decode_text("日本".encode("shift_jis"), "x-sjis") == "日本"


def test_non_text_codecs_are_not_charsets():
    for name in ["base64", "zlib", "rot13", "idna", "undefined", "hex", "a\x00b", "x" * 100]:
        assert codec_for(name) is None
    assert decode_text(b"abc", "zlib") == "abc"


def test_declared_charset_with_invalid_bytes_uses_replacement():
    assert decode_text(b"\xff\xfe", "shift_jis") != ""
