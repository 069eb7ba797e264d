"""Turning bytes in a declared (or undeclared) charset into text without ever failing.

Mail names charsets the sender's software invented, misspelled or never declared. Search and
display both need *some* text, so every path here ends in a decoded string: a known charset
with replacement characters, else UTF-8, else latin-1 (which maps every byte).
"""

from __future__ import annotations

import codecs
import re

# Names that real mail uses but Python does not know, or knows as something narrower.
_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode20utf8": "utf-8",
    "utf8": "utf-8",
    "ascii": "us-ascii",
    "x-user-defined": "latin-1",
}

# Codecs that exist in Python but are not charsets a mail could carry: decoding through them
# either fails on any error handler or turns data into something else.
_REFUSED = {"idna", "punycode", "undefined", "unicode_escape", "raw_unicode_escape"}

_NAME_OK = re.compile(r"[A-Za-z0-9._:+\-]{1,40}\Z")


def codec_for(charset: str | None) -> str | None:
    """The Python codec name for a MIME charset, or None when it is unknown or unsafe."""
    if not charset:
        return None
    name = charset.strip().strip('"').lower()
    # RFC 2231 §5: a language may follow the charset as "charset*lang".
    name = name.split("*", 1)[0]
    name = _ALIASES.get(name, name)
    if not _NAME_OK.match(name):
        return None
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    return info.name


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode body or encoded-word bytes; unknown charsets fall back to UTF-8, then latin-1."""
    codec = codec_for(charset)
    if codec is not None and codec not in ("ascii", "utf-8"):
        try:
            return data.decode(codec, "replace")
        except (LookupError, ValueError):
            pass
    # us-ascii declared over 8-bit data is a common lie; UTF-8 is the likeliest truth.
    return decode_unknown(data)


def decode_unknown(data: bytes) -> str:
    """RFC 6532: header bytes are UTF-8 if they validate; older 8-bit mail is mostly latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
