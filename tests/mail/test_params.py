"""Content-Type / Content-Disposition values with RFC 2231 parameters."""

from __future__ import annotations

from postbote.mail.params import parse_content_type, parse_mime_value


def test_type_and_subtype_are_lowercased_and_params_named_in_lowercase():
    assert parse_content_type('Text/HTML; CharSet="UTF-8"') == (
        "text",
        "html",
        {"charset": "UTF-8"},
    )


def test_quoted_value_with_semicolon_and_escapes():
    assert parse_content_type(r'multipart/mixed; boundary="a;b\"c"') == (
        "multipart",
        "mixed",
        {"boundary": 'a;b"c'},
    )


def test_comments_are_dropped():
    assert parse_content_type("text/plain (body) ; charset=us-ascii (Plain text)") == (
        "text",
        "plain",
        {"charset": "us-ascii"},
    )


def test_rfc2231_charset_and_language():
    _, _, params = parse_content_type(
        "application/x-stuff; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A"
    )
    assert params == {"title": "This is ***fun***"}


def test_rfc2231_continuations_mixing_encoded_and_plain_segments():
    value = (
        "application/x-stuff; title*0*=us-ascii'en'This%20is%20even%20more%20; "
        'title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2="isn\'t it!"'
    )
    assert parse_content_type(value)[2] == {"title": "This is even more ***fun*** isn't it!"}


def test_rfc2231_continuations_out_of_order_are_sorted():
    value = 'attachment; filename*1="part2.txt"; filename*0="part1-"'
    assert parse_mime_value(value).params == {"filename": "part1-part2.txt"}


def test_rfc2231_utf8_filename_wins_over_plain_twin():
    value = "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt"
    result = parse_mime_value(value)
    assert result.value == "attachment"
    assert result.params == {"filename": "€ rates.txt"}


def test_rfc2231_unknown_charset_does_not_raise():
    assert parse_mime_value("a; x*=bogus''%E9t%E9").params == {"x": "été"}


def test_rfc2231_huge_segment_number_is_ignored():
    assert parse_mime_value("a; x*99999999999999999999=1; y=2").params == {"y": "2"}


def test_first_of_duplicate_parameters_wins():
    assert parse_mime_value("a; x=1; X=2").params == {"x": "1"}


def test_unquoted_value_with_spaces_is_kept_whole():
    assert parse_mime_value("attachment; filename=my file.txt").params == {
        "filename": "my file.txt"
    }


def test_invalid_media_types_are_none():
    for value in ["text", "/plain", "text/", "text/pl ain", "té/xt", "", ";charset=x"]:
        assert parse_content_type(value) is None, value


def test_parameter_without_value_is_skipped():
    assert parse_content_type("text/plain; flowed; charset=utf-8")[2] == {"charset": "utf-8"}


def test_unclosed_quote_runs_to_the_end():
    assert parse_content_type('text/plain; name="abc; def')[2] == {"name": "abc; def"}
