"""Header block scanning, address lists and msg-id lists (RFC 5322)."""

from __future__ import annotations

import time

from postbote.mail.headers import (
    GROUP_END,
    Address,
    decode_names,
    first,
    parse_address_list,
    parse_msg_ids,
    scan_header,
)


def scan(raw: bytes) -> tuple[list[tuple[str, str]], int]:
    return scan_header(raw, 0, len(raw))


def test_crlf_header_ends_after_empty_line():
    raw = b"Subject: hi\r\nTo: a@b\r\n\r\nbody\r\n"
    fields, body = scan(raw)
    assert fields == [("Subject", "hi"), ("To", "a@b")]
    assert raw[body:] == b"body\r\n"


def test_bare_lf_header_ends_after_empty_line():
    raw = b"Subject: hi\nTo: a@b\n\nbody\n"
    fields, body = scan(raw)
    assert fields == [("Subject", "hi"), ("To", "a@b")]
    assert raw[body:] == b"body\n"


def test_folded_field_is_unfolded_keeping_the_whitespace():
    fields, _ = scan(b"Subject: a long\r\n\tsubject\r\n  line\r\n\r\n")
    assert fields == [("Subject", "a long\tsubject  line")]


def test_header_without_empty_line_is_all_header():
    raw = b"Subject: hi\r\nTo: a@b"
    fields, body = scan(raw)
    assert body == len(raw)
    assert fields[-1] == ("To", "a@b")


def test_message_starting_with_empty_line_has_empty_header():
    fields, body = scan(b"\r\nbody")
    assert fields == [] and body == 2


def test_mbox_from_line_and_junk_lines_are_skipped():
    raw = b"From someone@example.com Thu Aug 22 13:17:22 2002\nX Bad: 1\n: novalue\nSubject: ok\n\n"
    fields, _ = scan(raw)
    assert fields == [("Subject", "ok")]


def test_whitespace_before_colon_is_accepted():
    fields, _ = scan(b"Subject : spaced\n\n")
    assert fields == [("Subject", "spaced")]


def test_continuation_without_a_field_is_ignored():
    fields, _ = scan(b" orphan\nSubject: x\n\n")
    assert fields == [("Subject", "x")]


def test_utf8_header_bytes_decode_as_utf8():
    fields, _ = scan("Subject: Grüße\n\n".encode())
    assert fields == [("Subject", "Grüße")]


def test_unknown_8bit_header_bytes_fall_back_to_latin1():
    fields, _ = scan(b"Subject: Gr\xfc\xdfe\n\n")
    assert fields == [("Subject", "Grüße")]


def test_first_is_case_insensitive_and_takes_the_first():
    fields = [("SUBJECT", "one"), ("subject", "two")]
    assert first(fields, "Subject") == "one"
    assert first(fields, "To") is None


def test_scan_respects_the_given_range():
    raw = b"junk" + b"A: 1\n\nbody" + b"tail"
    fields, body = scan_header(raw, 4, len(raw) - 4)
    assert fields == [("A", "1")] and raw[body : len(raw) - 4] == b"body"


# --- address lists -----------------------------------------------------------------------------


def test_display_name_with_quoted_comma():
    assert parse_address_list('"Doe, John" <john@example.com>') == [
        Address("Doe, John", "john", "example.com")
    ]


def test_plain_addr_spec_list():
    assert parse_address_list("a@b.example, c@d.example") == [
        Address(None, "a", "b.example"),
        Address(None, "c", "d.example"),
    ]


def test_trailing_comment_becomes_the_name():
    assert parse_address_list("jane@example.org (Jane Doe)") == [
        Address("Jane Doe", "jane", "example.org")
    ]


def test_comments_inside_angle_address_are_ignored():
    assert parse_address_list("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>") == [
        Address("Pete", "pete", "silly.test")
    ]


def test_obsolete_phrase_with_dots_keeps_spacing():
    assert parse_address_list("John Q. Public <jqp@example.com>")[0].name == "John Q. Public"


def test_group_is_bracketed_by_markers():
    assert parse_address_list("Friends: a@x.example, b@y.example;, c@z.example") == [
        Address(None, "Friends", None),
        Address(None, "a", "x.example"),
        Address(None, "b", "y.example"),
        GROUP_END,
        Address(None, "c", "z.example"),
    ]


def test_empty_group():
    result = parse_address_list("undisclosed-recipients:;")
    assert result == [Address(None, "undisclosed-recipients", None), GROUP_END]
    assert result[0].is_group_start and result[1].is_group_end


def test_unterminated_group_is_closed():
    assert parse_address_list("Team: a@x.example")[-1] == GROUP_END


def test_quoted_local_part_keeps_its_quotes():
    [addr] = parse_address_list('"john doe"@example.com')
    assert addr.mailbox == '"john doe"' and addr.host == "example.com"
    assert addr.addr_spec == '"john doe"@example.com'


def test_obsolete_route_goes_to_adl():
    [addr] = parse_address_list("<@relay1.example,@relay2.example:joe@example.com>")
    assert addr == Address(None, "joe", "example.com", "@relay1.example,@relay2.example")


def test_address_without_domain_has_empty_host_not_a_group_marker():
    [addr] = parse_address_list("postmaster")
    assert addr == Address(None, "postmaster", "")
    assert not addr.is_group_start


def test_empty_angle_address():
    assert parse_address_list("<>") == [Address(None, "", "")]


def test_empty_elements_are_dropped():
    assert parse_address_list(" , a@b.example,, ") == [Address(None, "a", "b.example")]


def test_unbalanced_quotes_and_brackets_do_not_raise():
    for value in ['"unclosed <a@b>', "<a@b", "(unclosed a@b", "a@[1.2.3.4", ">>>@@@", ";;::,,"]:
        parse_address_list(value)


def test_domain_literal_is_kept_with_brackets():
    assert parse_address_list("a@[192.0.2.1]") == [Address(None, "a", "[192.0.2.1]")]


def test_names_are_undecoded_until_decode_names():
    raw = parse_address_list("=?utf-8?q?J=C3=B6rg?= <j@example.com>, Team: ;")
    assert raw[0].name == "=?utf-8?q?J=C3=B6rg?="
    decoded = decode_names(raw + parse_address_list("=?utf-8?q?Gr=C3=BCppe?=: ;"))
    assert decoded[0].name == "Jörg"
    assert decoded[3].mailbox == "Grüppe"


def test_pathological_address_list_is_linear():
    start = time.perf_counter()
    parse_address_list("a@b" + ":" * 200_000)
    parse_address_list("(" * 50_000 + '"' * 50_000 + "<" * 50_000)
    assert time.perf_counter() - start < 3


# --- msg-ids ---------------------------------------------------------------------------------


def test_references_list_in_order():
    assert parse_msg_ids("<a@x>\r\n <b@y> <c@z>") == ["<a@x>", "<b@y>", "<c@z>"]


def test_msg_id_with_folded_whitespace_is_joined():
    assert parse_msg_ids("<abc\r\n @example.com>") == ["<abc@example.com>"]


def test_msg_ids_without_brackets_are_words():
    assert parse_msg_ids("abc@x def@y") == ["abc@x", "def@y"]
    assert parse_msg_ids(None) == []
