"""The offset-based MIME scanner: structure, offsets, defaults, broken input and bounds."""

from __future__ import annotations

import time

from postbote.mail.message import parse_message
from postbote.mail.mime import MAX_DEPTH, MAX_PARTS, Part

from .checks import assert_sane


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def body(raw: bytes, part: Part | None) -> bytes:
    assert part is not None
    return raw[part.bstart : part.bend]


def shape(part: Part) -> list[object] | str:
    """Media types of the tree, nested like the tree, embedded messages included."""
    name = f"{part.type}/{part.subtype}"
    if part.children:
        return [name, *[shape(child) for child in part.children]]
    if part.message is not None:
        return [name, shape(part.message)]
    return name


NESTED = crlf(
    """From: a@example.com
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is the preamble.
--outer
Content-Type: multipart/alternative; boundary="outer-alt"

--outer-alt
Content-Type: text/plain; charset=utf-8

plain text
--outer-alt
Content-Type: text/html; charset=utf-8

<p>html text</p>
--outer-alt--
--outer
Content-Type: message/rfc822
Content-Disposition: attachment

From: inner@example.com
Subject: forwarded
Content-Type: multipart/mixed; boundary=in

--in

inner first
--in
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

AAEC
--in--
--outer
Content-Type: image/png; name=x.png
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--outer--
This is the epilogue.
"""
)


def test_nested_tree_shape():
    parsed = parse_message(NESTED)
    assert shape(parsed.root) == [
        "multipart/mixed",
        ["multipart/alternative", "text/plain", "text/html"],
        ["message/rfc822", ["multipart/mixed", "text/plain", "application/octet-stream"]],
        "image/png",
    ]
    assert_sane(parsed, NESTED)


def test_line_break_before_delimiter_belongs_to_the_delimiter():
    parsed = parse_message(NESTED)
    alt = parsed.root.children[0]
    assert body(NESTED, alt.children[0]) == b"plain text"
    assert body(NESTED, alt.children[1]) == b"<p>html text</p>"
    assert body(NESTED, parsed.root.children[2]) == b"iVBORw0KGgo="


def test_boundary_that_prefixes_an_inner_boundary_does_not_split_the_inner_part():
    parsed = parse_message(NESTED)
    assert len(parsed.root.children) == 3  # "--outer-alt" lines are not "--outer" delimiters


def test_part_header_offsets_cover_the_mime_header_and_empty_line():
    parsed = parse_message(NESTED)
    png = parsed.root.children[2]
    assert NESTED[png.hstart : png.bstart] == crlf(
        "Content-Type: image/png; name=x.png\nContent-Transfer-Encoding: base64\n\n"
    )


def test_embedded_message_root_starts_at_the_part_body():
    parsed = parse_message(NESTED)
    forwarded = parsed.root.children[1]
    assert forwarded.message is not None
    assert forwarded.message.hstart == forwarded.bstart
    assert NESTED[forwarded.message.hstart :].startswith(b"From: inner@example.com")
    assert forwarded.envelope is not None and forwarded.envelope[1] == "forwarded"
    assert forwarded.disposition == "attachment"


def test_part_without_header_is_default_text_plain():
    parsed = parse_message(NESTED)
    inner_first = parsed.root.children[1].message.children[0]
    assert (inner_first.type, inner_first.subtype, inner_first.params) == (
        "text",
        "plain",
        {"charset": "us-ascii"},
    )
    assert inner_first.hstart + 2 == inner_first.bstart  # only the empty line
    assert body(NESTED, inner_first) == b"inner first"


def test_missing_content_type_defaults_to_text_plain_us_ascii():
    root = parse_message(b"Subject: x\n\nhello\n").root
    assert (root.type, root.subtype, root.params, root.encoding) == (
        "text",
        "plain",
        {"charset": "us-ascii"},
        "7bit",
    )


def test_invalid_content_type_defaults_to_text_plain():
    root = parse_message(b"Content-Type: garbage\n\nhello\n").root
    assert (root.type, root.subtype, root.params) == ("text", "plain", {"charset": "us-ascii"})


def test_digest_parts_default_to_message_rfc822():
    raw = crlf(
        """Content-Type: multipart/digest; boundary=d

--d

From: one@example.com
Subject: one

first
--d
Content-Type: text/plain

explicit
--d--
"""
    )
    parsed = parse_message(raw)
    assert shape(parsed.root) == [
        "multipart/digest",
        ["message/rfc822", "text/plain"],
        "text/plain",
    ]
    assert parsed.root.children[0].envelope[1] == "one"
    assert_sane(parsed, raw)


def test_bare_lf_multipart():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\none\n--b\n\ntwo\n--b--\n"
    )
    parsed = parse_message(raw)
    assert [body(raw, c) for c in parsed.root.children] == [b"one", b"two"]
    assert_sane(parsed, raw)


def test_multipart_without_boundary_parameter_is_text_plain():
    raw = b"Content-Type: multipart/mixed\n\n--b\n\nbody\n"
    root = parse_message(raw).root
    assert (root.type, root.subtype, root.children) == ("text", "plain", ())


def test_multipart_whose_boundary_never_appears_has_one_opaque_text_part():
    raw = b"Content-Type: multipart/alternative; boundary=nowhere\n\njust some text\n"
    parsed = parse_message(raw)
    assert shape(parsed.root) == ["multipart/alternative", "text/plain"]
    assert body(raw, parsed.root.children[0]) == b"just some text\n"
    assert_sane(parsed, raw)


def test_unterminated_multipart_last_part_runs_to_the_end():
    raw = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo, cut off")
    parsed = parse_message(raw)
    assert [body(raw, c) for c in parsed.root.children] == [b"one", b"two, cut off"]
    assert_sane(parsed, raw)


def test_inner_multipart_missing_its_close_ends_at_outer_delimiter():
    raw = crlf(
        """Content-Type: multipart/mixed; boundary=out

--out
Content-Type: multipart/alternative; boundary=in

--in

inner
--out

second
--out--
"""
    )
    parsed = parse_message(raw)
    assert shape(parsed.root) == [
        "multipart/mixed",
        ["multipart/alternative", "text/plain"],
        "text/plain",
    ]
    assert body(raw, parsed.root.children[0].children[0]) == b"inner"
    assert body(raw, parsed.root.children[1]) == b"second"


def test_delimiter_must_start_a_line_and_be_followed_only_by_whitespace():
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b\n\nx --b\n--bnot\n--b \t\n\ny\n--b--junk\n"
    )
    parsed = parse_message(raw)
    assert [body(raw, c) for c in parsed.root.children] == [b"x --b\r\n--bnot", b"y"]


def test_empty_parts_between_adjacent_delimiters():
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n--b--\n"
    parsed = parse_message(raw)
    assert [c.size for c in parsed.root.children] == [0, 0]
    assert_sane(parsed, raw)


def test_text_line_counts():
    root = parse_message(b"Subject: x\n\none\ntwo\nthree").root
    assert root.lines == 3
    assert parse_message(b"Subject: x\n\none\r\ntwo\r\n").root.lines == 2
    assert parse_message(b"Subject: x\n\n").root.lines == 0


def test_mime_fields_of_a_part():
    raw = crlf(
        """Content-Type: text/plain; charset=ISO-8859-1; format=flowed
Content-ID: <part1@example.com>
Content-Description: a note
Content-Transfer-Encoding: Quoted-Printable
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: inline; filename*=utf-8''caf%C3%A9.txt
Content-Language: en, de
Content-Location: http://example.com/
 a/b

caf=E9
"""
    )
    root = parse_message(raw).root
    assert root.params == {"charset": "ISO-8859-1", "format": "flowed"}
    assert root.content_id == "<part1@example.com>"
    assert root.description == "a note"
    assert root.encoding == "quoted-printable"
    assert root.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert (root.disposition, root.disposition_params) == ("inline", {"filename": "café.txt"})
    assert root.language == ("en", "de")
    assert root.location == "http://example.com/a/b"


def nested_multiparts(depth: int) -> bytes:
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth)
    )
    return ("Subject: bomb\n" + head + "\ncore\n").encode()


def test_depth_bomb_is_fast_and_capped():
    raw = nested_multiparts(10_000)
    start = time.perf_counter()
    parsed = parse_message(raw)
    elapsed = time.perf_counter() - start
    assert elapsed < 3, elapsed
    depth, node = 0, parsed.root
    while node.children:
        node, depth = node.children[0], depth + 1
    assert depth <= MAX_DEPTH + 1
    assert_sane(parsed, raw)


def test_nested_message_rfc822_bomb_is_capped():
    raw = b"Subject: s\nContent-Type: message/rfc822\n\n" * 5_000 + b"end\n"
    start = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - start < 3
    assert len(parsed.root.walk()) <= 2 * MAX_DEPTH + 2
    assert_sane(parsed, raw)


def test_part_count_is_capped():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        + b"--b\n\nx\n" * (MAX_PARTS + 5_000)
        + b"--b--\n"
    )
    start = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - start < 10
    assert len(parsed.root.walk()) <= MAX_PARTS + 1


def test_five_megabyte_message_parses_quickly():
    attachment = (
        b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n" * 70_000
    )
    raw = (
        crlf(
            "From: a@example.com\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\nhello\n--x\n"
        )
        + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"--x--\r\n"
    )
    assert len(raw) > 5_000_000
    start = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - start < 1.5
    assert parsed.root.children[1].size == len(attachment) - 2
    assert_sane(parsed, raw)


def test_five_megabyte_of_short_header_lines_is_bounded():
    raw = b"X: y\n" * 1_000_000
    start = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - start < 5
    assert parsed.root.bstart == len(raw)
