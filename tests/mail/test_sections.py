"""IMAP section numbers and byte ranges (RFC 9051 §6.4.5), on the RFC's own example tree."""

from __future__ import annotations

from postbote.mail.message import parse_message

from .checks import assert_sane

# The structure of the example in RFC 9051 §6.4.5:
#   1 TEXT/PLAIN, 2 APPLICATION/OCTET-STREAM, 3 MESSAGE/RFC822 (3.1 TEXT/PLAIN,
#   3.2 APPLICATION/OCTET-STREAM), 4 MULTIPART/MIXED (4.1 IMAGE/GIF, 4.2 MESSAGE/RFC822
#   (4.2.1 TEXT/PLAIN, 4.2.2 MULTIPART/ALTERNATIVE (4.2.2.1 TEXT/PLAIN, 4.2.2.2 TEXT/RICHTEXT)))
RFC_EXAMPLE = (
    (
        """From: top@example.com
Subject: top
Content-Type: multipart/mixed; boundary=top

--top
Content-Type: text/plain

part 1
--top
Content-Type: application/octet-stream

part 2
--top
Content-Type: message/rfc822

Subject: three
Content-Type: multipart/mixed; boundary=three

--three
Content-Type: text/plain

part 3.1
--three
Content-Type: application/octet-stream

part 3.2
--three--
--top
Content-Type: multipart/mixed; boundary=four

--four
Content-Type: image/gif

part 4.1
--four
Content-Type: message/rfc822

Subject: four-two
Content-Type: multipart/mixed; boundary=fourtwo

--fourtwo
Content-Type: text/plain

part 4.2.1
--fourtwo
Content-Type: multipart/alternative; boundary=alt

--alt
Content-Type: text/plain

part 4.2.2.1
--alt
Content-Type: text/richtext

part 4.2.2.2
--alt--
--fourtwo--
--four--
--top--
"""
    )
    .replace("\n", "\r\n")
    .encode()
)

MSG = parse_message(RFC_EXAMPLE)


def media(path: tuple[int, ...]) -> str:
    part = MSG.part(path)
    assert part is not None, path
    return f"{part.type}/{part.subtype}"


def text(span: tuple[int, int] | None) -> bytes:
    assert span is not None
    return RFC_EXAMPLE[span[0] : span[1]]


def test_the_example_parses_sanely():
    assert_sane(MSG, RFC_EXAMPLE)


def test_every_section_of_the_rfc_example():
    assert {path: media(path) for path in [
        (1,), (2,), (3,), (3, 1), (3, 2), (4,), (4, 1), (4, 2), (4, 2, 1), (4, 2, 2),
        (4, 2, 2, 1), (4, 2, 2, 2),
    ]} == {
        (1,): "text/plain",
        (2,): "application/octet-stream",
        (3,): "message/rfc822",
        (3, 1): "text/plain",
        (3, 2): "application/octet-stream",
        (4,): "multipart/mixed",
        (4, 1): "image/gif",
        (4, 2): "message/rfc822",
        (4, 2, 1): "text/plain",
        (4, 2, 2): "multipart/alternative",
        (4, 2, 2, 1): "text/plain",
        (4, 2, 2, 2): "text/richtext",
    }  # fmt: skip


def test_leaf_section_bodies():
    assert text(MSG.section_range((1,))) == b"part 1"
    assert text(MSG.section_range((3, 2))) == b"part 3.2"
    assert text(MSG.section_range((4, 2, 2, 2))) == b"part 4.2.2.2"


def test_whole_message_and_nonexistent_sections():
    assert MSG.section_range(()) == (0, len(RFC_EXAMPLE))
    for path in [(0,), (5,), (1, 1), (3, 3), (4, 2, 3), (4, 1, 1), (-1,)]:
        assert MSG.part(path) is None, path
        assert MSG.section_range(path) is None


def test_header_and_text_of_the_top_level_message():
    assert (
        text(MSG.header_range()) == b"From: top@example.com\r\nSubject: top\r\n"
        b"Content-Type: multipart/mixed; boundary=top\r\n\r\n"
    )
    assert text(MSG.text_range()).startswith(b"--top\r\n")
    assert MSG.text_range()[1] == len(RFC_EXAMPLE)


def test_header_and_text_of_an_embedded_message():
    assert text(MSG.header_range((4, 2))).startswith(b"Subject: four-two\r\n")
    assert text(MSG.header_range((4, 2))).endswith(b"\r\n\r\n")
    assert text(MSG.text_range((4, 2))).startswith(b"--fourtwo\r\n")
    assert text(MSG.text_range((4, 2))).endswith(b"--fourtwo--")


def test_header_and_text_exist_only_for_message_parts():
    assert MSG.header_range((1,)) is None
    assert MSG.text_range((4,)) is None
    assert MSG.header_range((9,)) is None


def test_mime_header_of_a_part():
    assert text(MSG.mime_header_range((4, 1))) == b"Content-Type: image/gif\r\n\r\n"
    assert text(MSG.mime_header_range((4, 2))) == b"Content-Type: message/rfc822\r\n\r\n"
    assert MSG.mime_header_range(()) is None


def test_single_part_message_has_only_part_one_which_is_its_body():
    raw = b"Subject: s\r\n\r\nthe body"
    parsed = parse_message(raw)
    assert parsed.part((1,)) is parsed.root
    assert parsed.section_range((1,)) == (14, len(raw))
    assert parsed.part((2,)) is None and parsed.part((1, 1)) is None


def test_single_part_embedded_message_has_part_one():
    raw = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner body"
    parsed = parse_message(raw)

    def cut(span: tuple[int, int] | None) -> bytes:
        assert span is not None
        return raw[span[0] : span[1]]

    assert cut(parsed.section_range((1,))) == b"Subject: in\r\n\r\ninner body"
    assert cut(parsed.section_range((1, 1))) == b"inner body"
    assert cut(parsed.header_range((1,))) == b"Subject: in\r\n\r\n"
    assert parsed.part((1, 2)) is None
