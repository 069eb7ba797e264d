"""Framing: chunking, pipelining, literals and their limits, overlong lines, IDLE, SASL."""

from __future__ import annotations

import pytest

from postbote.imap import commands as c
from postbote.imap.grammar import (
    AuthenticateResponse,
    ContinuationNeeded,
    IdleDone,
    ImapCommandParser,
    ImapUsageError,
    ParseError,
)


def drain(parser: ImapCommandParser) -> list[object]:
    return list(parser.events())


def test_commands_split_at_every_byte_give_the_same_events() -> None:
    data = b"a1 NOOP\r\na2 LOGIN {3+}\r\nbob {2+}\r\npw\r\na3 SELECT INBOX\r\n"
    parser = ImapCommandParser()
    found = []
    for index in range(len(data)):
        parser.receive(data[index : index + 1])
        found += drain(parser)
    assert found == [c.Noop("a1"), c.Login("a2", "bob", "pw"), c.Select("a3", "INBOX")]


def test_pipelined_commands_in_one_chunk() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a NOOP\r\nb CHECK\r\nc LOGOUT\r\n")
    assert drain(parser) == [c.Noop("a"), c.Check("b"), c.Logout("c")]


def test_bare_lf_ends_a_line() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a NOOP\nb LOGIN {2}\nab x\n")
    first, continuation = drain(parser)
    assert first == c.Noop("a") and continuation == ContinuationNeeded("b", 2)
    parser.accept_literal()
    assert drain(parser) == [c.Login("b", "ab", "x")]


def test_empty_lines_between_commands_are_ignored() -> None:
    parser = ImapCommandParser()
    parser.receive(b"\r\n\r\na NOOP\r\n\r\n")
    assert drain(parser) == [c.Noop("a")]


def test_incomplete_line_waits_without_events() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a NOO")
    assert drain(parser) == []
    parser.receive(b"P\r\n")
    assert drain(parser) == [c.Noop("a")]


# --- synchronizing literals ----------------------------------------------------------------------


def test_synchronizing_literal_waits_for_the_adapter() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a LOGIN {3}\r\n")
    assert drain(parser) == [ContinuationNeeded("a", 3)]
    assert parser.awaiting_literal
    assert drain(parser) == []  # nothing more until the adapter decides
    parser.accept_literal()
    parser.receive(b"bob pw\r\n")
    assert drain(parser) == [c.Login("a", "bob", "pw")]


def test_decision_can_be_made_while_iterating() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a LOGIN {3}\r\nbob {2}\r\npw\r\nb NOOP\r\n")
    found = []
    for event in parser.events():
        found.append(event)
        if isinstance(event, ContinuationNeeded):
            parser.accept_literal()
    assert found == [
        ContinuationNeeded("a", 3),
        ContinuationNeeded("a", 2),
        c.Login("a", "bob", "pw"),
        c.Noop("b"),
    ]


def test_rejected_literal_drops_the_command_and_the_connection_goes_on() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a APPEND INBOX {500000}\r\n")
    assert drain(parser) == [ContinuationNeeded("a", 500000)]
    parser.reject_literal()  # e.g. "a NO [OVERQUOTA]": the client then does not send it
    parser.receive(b"b NOOP\r\n")
    assert drain(parser) == [c.Noop("b")]


def test_accept_or_reject_without_a_pending_literal_is_a_usage_error() -> None:
    parser = ImapCommandParser()
    with pytest.raises(ImapUsageError):
        parser.accept_literal()
    with pytest.raises(ImapUsageError):
        parser.reject_literal()


def test_command_already_wrong_is_refused_before_asking_for_the_literal() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a FROBNICATE {5}\r\n")
    assert drain(parser) == [ParseError("a", "unknown command FROBNICATE")]
    assert not parser.awaiting_literal
    parser.receive(b"b NOOP\r\n")
    assert drain(parser) == [c.Noop("b")]


def test_bad_mailbox_name_is_refused_before_the_append_upload() -> None:
    parser = ImapCommandParser()
    parser.receive(b'a APPEND "&Jjo" {10000}\r\n')
    [error] = drain(parser)
    assert isinstance(error, ParseError) and "mailbox name" in error.text


def test_literal_marker_inside_a_quoted_string_is_not_a_literal() -> None:
    parser = ImapCommandParser()
    parser.receive(b'a LOGIN "x {3}\r\n')  # unterminated quote: must not wait for 3 octets
    [error] = drain(parser)
    assert isinstance(error, ParseError) and error.tag == "a"
    parser.receive(b'b LOGIN "{3}" pw\r\n')
    assert drain(parser) == [c.Login("b", "{3}", "pw")]


def test_escaped_quote_does_not_end_the_quoted_string() -> None:
    parser = ImapCommandParser()
    parser.receive(b'a LOGIN "x\\" {3}\r\n')
    [error] = drain(parser)
    assert isinstance(error, ParseError)  # still inside the quotes, so no literal


def test_zero_length_literal() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a LOGIN {0+}\r\n {0}\r\n")
    assert drain(parser) == [ContinuationNeeded("a", 0)]
    parser.accept_literal()
    parser.receive(b"\r\n")
    assert drain(parser) == [c.Login("a", "", "")]


# --- literal limits ------------------------------------------------------------------------------


def test_huge_synchronizing_literal_is_refused_when_announced() -> None:
    parser = ImapCommandParser(max_literal=1 << 20)
    parser.receive(b"a APPEND INBOX {1073741824}\r\n")
    [error] = drain(parser)
    assert error == ParseError("a", error.text, "TOOBIG")  # type: ignore[union-attr]
    assert not parser.awaiting_literal
    parser.receive(b"b NOOP\r\n")
    assert drain(parser) == [c.Noop("b")]


def test_absurd_literal_size_is_refused() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a APPEND INBOX {99999999999999999999999999999}\r\nb NOOP\r\n")
    error, noop = drain(parser)
    assert isinstance(error, ParseError) and error.code == "TOOBIG" and noop == c.Noop("b")


def test_oversized_non_synchronizing_literal_is_discarded_as_it_arrives() -> None:
    parser = ImapCommandParser(max_literal=1000)
    parser.receive(b"a APPEND INBOX {3000000+}\r\n")
    [error] = drain(parser)
    assert isinstance(error, ParseError) and error.code == "TOOBIG"
    chunk = b"b NOOP\r\n" * 8192  # looks like commands, but it is literal data
    for _ in range(3000000 // len(chunk)):
        parser.receive(chunk)
        assert drain(parser) == []
        assert parser.buffered == 0  # never buffered
    parser.receive(chunk[: 3000000 % len(chunk)] + b" rest of the line\r\nc NOOP\r\n")
    assert drain(parser) == [c.Noop("c")]


def test_literal_minus_limits_non_synchronizing_literals_to_4096() -> None:
    parser = ImapCommandParser(literal_minus=True)
    parser.receive(b"a LOGIN {4096+}\r\n" + b"u" * 4096 + b" pw\r\n")
    [login] = drain(parser)
    assert isinstance(login, c.Login) and len(login.user) == 4096
    parser.receive(b"b LOGIN {4097+}\r\n" + b"u" * 4097 + b" pw\r\nc NOOP\r\n")
    error, noop = drain(parser)
    assert isinstance(error, ParseError) and error.code == "TOOBIG" and noop == c.Noop("c")


def test_literals_of_one_command_are_bounded_together() -> None:
    parser = ImapCommandParser(max_literal=100, max_command=150)
    parser.receive(b"a APPEND INBOX {100+}\r\n" + b"x" * 100 + b" {100+}\r\n")
    [error] = drain(parser)
    assert isinstance(error, ParseError) and error.code == "TOOBIG" and error.tag == "a"
    parser.receive(b"y" * 100 + b"\r\nb NOOP\r\n")
    assert drain(parser) == [c.Noop("b")]


def test_literal8_is_recognised() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a APPEND INBOX ~{2}\r\n")
    assert drain(parser) == [ContinuationNeeded("a", 2)]


# --- line length ---------------------------------------------------------------------------------


def test_overlong_line_is_refused_while_arriving_then_resynchronised() -> None:
    parser = ImapCommandParser(max_line=1024)
    parser.receive(b"a1 LOGIN ")
    parser.receive(b"x" * 2000)
    [error] = drain(parser)
    assert isinstance(error, ParseError) and error.tag == "a1" and "longer" in error.text
    assert parser.buffered == 0
    for _ in range(100):  # the rest of the line keeps coming and is dropped unbuffered
        parser.receive(b"y" * 10000)
        assert drain(parser) == [] and parser.buffered == 0
    parser.receive(b"y\r\na2 NOOP\r\n")
    assert drain(parser) == [c.Noop("a2")]


def test_overlong_line_received_whole_is_refused() -> None:
    parser = ImapCommandParser(max_line=100)
    parser.receive(b"a1 LOGIN " + b"x" * 200 + b" y\r\na2 NOOP\r\n")
    error, noop = drain(parser)
    assert isinstance(error, ParseError) and error.tag == "a1" and noop == c.Noop("a2")


def test_line_length_counts_all_lines_of_a_command_but_not_literals() -> None:
    parser = ImapCommandParser(max_line=40)
    parser.receive(b"a LOGIN {50+}\r\n" + b"u" * 50 + b" pw\r\n")
    [login] = drain(parser)
    assert isinstance(login, c.Login) and len(login.user) == 50
    parser.receive(b"b SEARCH TEXT {1+}\r\nx TEXT {1+}\r\nx TEXT {1+}\r\nx TEXT y\r\nc NOOP\r\n")
    error, noop = drain(parser)
    assert isinstance(error, ParseError) and error.tag == "b" and noop == c.Noop("c")


def test_refused_overlong_line_that_announced_a_literal_skips_it_too() -> None:
    parser = ImapCommandParser(max_line=64)
    parser.receive(b"a LOGIN " + b"x" * 100 + b" {8+}\r\nb NOOP\r\n rest\r\nc NOOP\r\n")
    error, noop = drain(parser)
    assert isinstance(error, ParseError) and noop == c.Noop("c")


# --- IDLE and SASL -------------------------------------------------------------------------------


def test_idle_done_is_recognised_once_the_adapter_starts_idle() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a IDLE\r\nDONE\r\nb NOOP\r\n")
    found = []
    for event in parser.events():
        found.append(event)
        if isinstance(event, c.Idle):
            parser.start_idle(event.tag)
    assert found == [c.Idle("a"), IdleDone("a"), c.Noop("b")]


def test_done_is_case_insensitive() -> None:
    parser = ImapCommandParser()
    parser.start_idle("x")
    parser.receive(b"done\r\n")
    assert drain(parser) == [IdleDone("x")]


def test_other_line_during_idle_is_answered_with_the_idle_tag() -> None:
    parser = ImapCommandParser()
    parser.start_idle("a")
    parser.receive(b"b NOOP\r\nc NOOP\r\n")
    error, noop = drain(parser)
    assert isinstance(error, ParseError) and error.tag == "a" and noop == c.Noop("c")


def test_done_without_idle_is_an_unknown_command() -> None:
    parser = ImapCommandParser()
    parser.receive(b"DONE\r\n")
    [error] = drain(parser)
    assert isinstance(error, ParseError) and error.tag == "DONE"


def test_sasl_response_lines() -> None:
    parser = ImapCommandParser()
    parser.receive(b"a AUTHENTICATE PLAIN\r\nAGJvYgBzZWNyZXQ=\r\n")
    found = []
    for event in parser.events():
        found.append(event)
        if isinstance(event, c.Authenticate):
            parser.expect_authenticate_response(event.tag)
    assert found == [
        c.Authenticate("a", "PLAIN"),
        AuthenticateResponse("a", b"AGJvYgBzZWNyZXQ="),
    ]


def test_sasl_cancel() -> None:
    parser = ImapCommandParser()
    parser.expect_authenticate_response("a")
    parser.receive(b"*\r\n")
    [response] = drain(parser)
    assert isinstance(response, AuthenticateResponse) and response.cancelled


def test_take_buffered_returns_pipelined_bytes_after_starttls() -> None:
    # RFC 9051 §6.2.1: bytes sent after STARTTLS in the clear must not become commands
    parser = ImapCommandParser()
    parser.receive(b"a STARTTLS\r\nb LOGIN bob pw\r\n")
    events = parser.events()
    assert next(events) == c.StartTls("a")
    assert parser.take_buffered() == b"b LOGIN bob pw\r\n"
    assert list(events) == []


def test_utf8_names_can_be_switched_on_between_commands() -> None:
    parser = ImapCommandParser()
    parser.receive(b'a ENABLE UTF8=ACCEPT\r\nb SELECT "Entw\xc3\xbcrfe"\r\n')
    found = []
    for event in parser.events():
        found.append(event)
        if isinstance(event, c.Enable):
            parser.utf8_names = True
    assert found[1] == c.Select("b", "Entwürfe")
