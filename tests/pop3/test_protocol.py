"""The sans-I/O POP3 core, driven directly: byte-exact transcripts, every command in every
state, pipelining, bounds, dot-stuffing, and random input."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbote.pop3.protocol import (
    Answered,
    ApopCredentials,
    AuthCredentials,
    ConnectionClosed,
    DotStuffer,
    Err,
    Ok,
    Pop3Config,
    Pop3Core,
    Pop3State,
    Pop3UsageError,
    Quit,
    Retr,
    StartTls,
    Top,
    format_reply,
    stuff,
    top_bytes,
)

MESSAGES = [
    b"Subject: one\r\n\r\nhello\r\n",
    b"Subject: two\r\nFrom: a@example.org\r\n\r\n.dotted\r\nsecond\r\n..\r\nfourth\r\n",
    b"Subject: three\r\n\r\nlast\r\n",
]
SIZES = [len(m) for m in MESSAGES]
UIDS = ["u-1", "u-2", "u-3"]
DEV = Pop3Config(allow_plaintext_auth=True)
CHALLENGE = "<1896.697170952@dbc.mtview.ca.us>"
PLAIN_IR = base64.b64encode(b"\0alice\0secret").decode()


def answer(core: Pop3Core, event: object) -> bytes:
    """A scripted adapter: alice/secret logs in, everything else goes the happy way."""
    match event:
        case Answered(data=data):
            return data
        case AuthCredentials(password="secret"):
            return core.maildrop_opened(SIZES, UIDS)
        case ApopCredentials(digest=digest, challenge=challenge) if digest == hashlib.md5(
            (challenge + "secret").encode()
        ).hexdigest():
            return core.maildrop_opened(SIZES, UIDS)
        case AuthCredentials() | ApopCredentials():
            return core.auth_failed()
        case Retr(n=n) | Top(n=n):
            return core.send_message(MESSAGES[n - 1])
        case StartTls():
            out = core.send(Ok("begin TLS negotiation"))
            core.tls_established()
            return out
        case Quit():
            return core.send(Ok("bye"))
        case ConnectionClosed():
            return b""
    raise AssertionError(f"unexpected event {event!r}")


def converse(core: Pop3Core, *chunks: bytes) -> bytes:
    out = b""
    for chunk in chunks:
        core.receive(chunk)
        for event in core.events():
            out += answer(core, event)
    return out


def logged_in(config: Pop3Config = DEV) -> Pop3Core:
    core = Pop3Core(config)
    converse(core, b"USER alice\r\nPASS secret\r\n")
    assert core.state is Pop3State.TRANSACTION
    return core


def unstuff(wire: bytes) -> bytes:
    """What a strict client reads from a multi-line body: up to the first "." line."""
    lines = wire.split(b"\r\n")
    assert lines[-1] == b"", "a multi-line body ends with CRLF"
    lines = lines[:-1]
    end = lines.index(b".")
    assert end == len(lines) - 1, "the terminator appears only at the end"
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:end])


# --- greeting and transcripts --------------------------------------------------------------


def test_greeting_names_the_host():
    assert Pop3Core(Pop3Config(hostname="mx.example.org")).greeting() == (
        b"+OK mx.example.org POP3 server ready\r\n"
    )


def test_greeting_carries_apop_challenge_only_when_apop_enabled():
    assert Pop3Core(Pop3Config(apop=True)).greeting(CHALLENGE) == (
        b"+OK localhost POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
    )
    assert CHALLENGE.encode() not in Pop3Core().greeting(CHALLENGE)


def test_greeting_rejects_a_malformed_challenge():
    with pytest.raises(ValueError):
        Pop3Core(Pop3Config(apop=True)).greeting("no brackets")


SESSION = (
    b"USER alice\r\n"
    b"PASS secret\r\n"
    b"STAT\r\n"
    b"LIST\r\n"
    b"LIST 2\r\n"
    b"UIDL\r\n"
    b"UIDL 3\r\n"
    b"RETR 2\r\n"
    b"TOP 2 1\r\n"
    b"DELE 1\r\n"
    b"STAT\r\n"
    b"LIST\r\n"
    b"RETR 1\r\n"
    b"NOOP\r\n"
    b"QUIT\r\n"
)
TRANSCRIPT = (
    b"+OK send PASS\r\n"
    b"+OK maildrop has 3 messages (113 octets)\r\n"
    b"+OK 3 113\r\n"
    b"+OK maildrop has 3 messages (113 octets)\r\n1 23\r\n2 66\r\n3 24\r\n.\r\n"
    b"+OK 2 66\r\n"
    b"+OK unique-id listing follows\r\n1 u-1\r\n2 u-2\r\n3 u-3\r\n.\r\n"
    b"+OK 3 u-3\r\n"
    b"+OK 66 octets\r\n"
    b"Subject: two\r\nFrom: a@example.org\r\n\r\n..dotted\r\nsecond\r\n...\r\nfourth\r\n.\r\n"
    b"+OK top of message follows\r\n"
    b"Subject: two\r\nFrom: a@example.org\r\n\r\n..dotted\r\n.\r\n"
    b"+OK message 1 deleted\r\n"
    b"+OK 2 90\r\n"
    b"+OK maildrop has 2 messages (90 octets)\r\n2 66\r\n3 24\r\n.\r\n"
    b"-ERR message 1 already deleted\r\n"
    b"+OK\r\n"
    b"+OK bye\r\n"
)


def test_whole_session_transcript_is_byte_exact():
    assert converse(Pop3Core(DEV), SESSION) == TRANSCRIPT


def test_pipelined_session_gives_same_bytes_as_one_command_per_packet():
    per_line = [line + b"\n" for line in SESSION.split(b"\n")[:-1]]
    assert converse(Pop3Core(DEV), *per_line) == TRANSCRIPT


def test_session_split_into_single_bytes_gives_same_bytes():
    chunks = [SESSION[i : i + 1] for i in range(len(SESSION))]
    assert converse(Pop3Core(DEV), *chunks) == TRANSCRIPT


def test_pipelined_commands_wait_for_the_credentials_answer():
    core = Pop3Core(DEV)
    core.receive(b"USER alice\r\nPASS secret\r\nSTAT\r\n")
    events = list(core.events())
    assert events == [
        Answered(b"+OK send PASS\r\n", ok=True),
        AuthCredentials("", "alice", "secret", "USER"),
    ]
    assert core.maildrop_opened(SIZES, UIDS).startswith(b"+OK")
    assert list(core.events()) == [Answered(b"+OK 3 113\r\n", ok=True)]


def test_pipelined_commands_after_failed_login_are_refused_in_authorization():
    out = converse(Pop3Core(DEV), b"USER alice\r\nPASS wrong\r\nSTAT\r\nPASS secret\r\n")
    assert out == (
        b"+OK send PASS\r\n"
        b"-ERR [AUTH] authentication failed\r\n"
        b"-ERR STAT is only valid after login\r\n"
        b"-ERR send USER first\r\n"
    )


def test_quit_event_carries_deleted_marks_and_enters_update():
    core = logged_in()
    core.receive(b"DELE 3\r\nDELE 1\r\nQUIT\r\n")
    events = list(core.events())
    assert events[-1] == Quit(frozenset({1, 3}), update=True)
    assert core.state is Pop3State.UPDATE
    assert core.send(Err("some deleted messages not removed", "SYS/TEMP")) == (
        b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"
    )
    assert core.state is Pop3State.CLOSED


def test_rset_clears_deleted_marks():
    core = logged_in()
    out = converse(core, b"DELE 1\r\nRSET\r\nRETR 1\r\nQUIT\r\n")
    assert b"+OK maildrop has 3 messages (113 octets)\r\n+OK 23 octets\r\n" in out
    assert core.state is Pop3State.CLOSED


def test_quit_in_authorization_does_not_update():
    core = Pop3Core(DEV)
    core.receive(b"QUIT\r\n")
    assert list(core.events()) == [Quit(frozenset(), update=False)]
    assert core.send(Ok("bye")) == b"+OK bye\r\n"
    assert core.state is Pop3State.CLOSED


def test_input_after_quit_is_ignored():
    core = Pop3Core(DEV)
    assert converse(core, b"QUIT\r\nCAPA\r\n", b"NOOP\r\n") == b"+OK bye\r\n"


def test_connection_closed_after_queued_commands_and_without_update():
    core = logged_in()
    core.receive(b"DELE 1\r\n")
    core.receive(b"")
    assert list(core.events()) == [
        Answered(b"+OK message 1 deleted\r\n", ok=True),
        ConnectionClosed(),
    ]
    assert core.state is Pop3State.CLOSED


def test_commands_are_case_insensitive_and_bare_lf_is_accepted():
    out = converse(logged_in(), b"stat\nNoOp\r\n")
    assert out == b"+OK 3 113\r\n+OK\r\n"


# --- every command in every state -----------------------------------------------------------

TRANSACTION_ONLY = [b"STAT", b"LIST", b"UIDL", b"RETR 1", b"TOP 1 1", b"DELE 1", b"NOOP", b"RSET"]
AUTHORIZATION_ONLY = [b"USER alice", b"PASS secret", b"APOP alice " + b"0" * 32, b"AUTH", b"STLS"]


@pytest.mark.parametrize("command", TRANSACTION_ONLY)
def test_transaction_commands_are_refused_before_login(command):
    name = command.split()[0].decode()
    out = converse(Pop3Core(DEV), command + b"\r\n")
    assert out == f"-ERR {name} is only valid after login\r\n".encode()


@pytest.mark.parametrize("command", AUTHORIZATION_ONLY)
def test_authorization_commands_are_refused_after_login(command):
    name = command.split()[0].decode()
    out = converse(logged_in(), command + b"\r\n")
    assert out == f"-ERR {name} is only valid before login\r\n".encode()


@pytest.mark.parametrize("state", ["authorization", "transaction"])
def test_capa_works_in_both_states_with_the_same_list(state):
    config = Pop3Config(tls_active=True, expire="NEVER", login_delay=900)
    core = Pop3Core(config) if state == "authorization" else logged_in(config)
    assert converse(core, b"CAPA\r\n") == (
        b"+OK capability list follows\r\n"
        b"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
        b"USER\r\nSASL PLAIN\r\nEXPIRE NEVER\r\nLOGIN-DELAY 900\r\n"
        b"IMPLEMENTATION postbote\r\n.\r\n"
    )


def test_capa_without_tls_hides_plaintext_logins_and_offers_stls():
    out = converse(Pop3Core(Pop3Config(tls_available=True)), b"CAPA\r\n")
    assert out == (
        b"+OK capability list follows\r\n"
        b"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
        b"STLS\r\nIMPLEMENTATION postbote\r\n.\r\n"
    )


def test_unknown_and_empty_commands_are_refused():
    out = converse(Pop3Core(DEV), b"XYZZY\r\n\r\n\x00\xff\r\n")
    assert out == b"-ERR unknown command XYZZY\r\n-ERR empty command\r\n-ERR unknown command\r\n"


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"RETR 0", b"-ERR no such message, only 3 messages in maildrop"),
        (b"RETR 4", b"-ERR no such message, only 3 messages in maildrop"),
        (b"LIST 9", b"-ERR no such message, only 3 messages in maildrop"),
        (b"UIDL 0", b"-ERR no such message, only 3 messages in maildrop"),
        (b"DELE 4", b"-ERR no such message, only 3 messages in maildrop"),
        (b"RETR x", b'-ERR message number must be a number, got "x"'),
        (b"RETR -1", b'-ERR message number must be a number, got "-1"'),
        (b"RETR +1", b'-ERR message number must be a number, got "+1"'),
        (b"RETR \xef\xbc\x91", '-ERR message number must be a number, got "１"'.encode()),
        (b"RETR " + b"1" * 41, b"-ERR argument too long (at most 40 characters)"),
        (b"RETR", b"-ERR usage: RETR message"),
        (b"RETR 1 2", b"-ERR usage: RETR message"),
        (b"TOP 1", b"-ERR usage: TOP message lines"),
        (b"TOP 1 -1", b'-ERR line count must be a number, got "-1"'),
        (b"STAT 1", b"-ERR usage: STAT"),
        (b"NOOP x", b"-ERR usage: NOOP"),
        (b"LIST 1 2", b"-ERR usage: LIST [message]"),
        (b"LIST\t1", b"-ERR unknown command"),
        (b"LIST 1\x0b", b"-ERR control characters are not allowed in arguments"),
        (b"RETR \xff", b"-ERR arguments must be UTF-8"),
    ],
)
def test_bad_arguments_are_answered_with_a_clear_err(command, reply):
    core = logged_in()
    assert converse(core, command + b"\r\n") == reply + b"\r\n"
    assert core.state is Pop3State.TRANSACTION


def test_deleted_message_cannot_be_listed_retrieved_or_deleted_again():
    out = converse(logged_in(), b"DELE 2\r\nLIST 2\r\nUIDL 2\r\nRETR 2\r\nTOP 2 0\r\nDELE 2\r\n")
    assert out == b"+OK message 2 deleted\r\n" + b"-ERR message 2 already deleted\r\n" * 5


def test_top_zero_lines_sends_header_and_blank_line():
    core = logged_in()
    core.receive(b"TOP 1 0\r\n")
    assert list(core.events()) == [Top(1, 0)]
    assert core.send_message(MESSAGES[0]) == (
        b"+OK top of message follows\r\nSubject: one\r\n\r\n.\r\n"
    )


def test_retr_event_carries_the_size_for_streaming():
    core = logged_in()
    core.receive(b"RETR 3\r\n")
    assert list(core.events()) == [Retr(3, 24)]
    stuffer = DotStuffer()
    out = core.send(Ok("24 octets")) + stuffer.feed(MESSAGES[2][:5]) + stuffer.feed(MESSAGES[2][5:])
    assert out + stuffer.end() == b"+OK 24 octets\r\n" + MESSAGES[2] + b".\r\n"


def test_retr_error_from_the_store_keeps_the_session():
    core = logged_in()
    core.receive(b"RETR 1\r\nNOOP\r\n")
    assert next(core.events()) == Retr(1, 23)
    assert core.send(Err("message is gone", "SYS/TEMP")) == b"-ERR [SYS/TEMP] message is gone\r\n"
    assert list(core.events()) == [Answered(b"+OK\r\n", ok=True)]


# --- USER/PASS, APOP, AUTH ------------------------------------------------------------------


def test_pass_keeps_spaces_in_the_password():
    core = Pop3Core(DEV)
    core.receive(b"USER bob\r\nPASS  two words \r\n")
    assert list(core.events())[-1] == AuthCredentials("", "bob", " two words ", "USER")


def test_credentials_repr_hides_the_password():
    assert "secret" not in repr(AuthCredentials("", "alice", "secret"))


def test_user_longer_than_40_characters_is_accepted():
    address = "firstname.lastname@department.example.org"
    core = Pop3Core(DEV)
    core.receive(f"USER {address}\r\nPASS x\r\n".encode())
    assert list(core.events())[-1].user == address


def test_user_without_name_and_pass_without_password_are_refused():
    out = converse(Pop3Core(DEV), b"USER\r\nUSER a b\r\nUSER a\r\nPASS\r\n")
    assert out == (
        b"-ERR usage: USER name\r\n" * 2 + b"+OK send PASS\r\n-ERR usage: PASS password\r\n"
    )


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        ("AUTH", b"-ERR [AUTH] authentication failed\r\n"),
        ("IN-USE", b"-ERR [IN-USE] maildrop is locked by another session, try again later\r\n"),
        ("LOGIN-DELAY", b"-ERR [LOGIN-DELAY] logged in too recently, try again later\r\n"),
        ("SYS/TEMP", b"-ERR [SYS/TEMP] temporary server failure, try again later\r\n"),
        ("SYS/PERM", b"-ERR [SYS/PERM] permanent server failure, contact the administrator\r\n"),
        (None, b"-ERR authentication failed\r\n"),
    ],
)
def test_auth_failed_carries_the_response_code(code, reply):
    core = Pop3Core(DEV)
    core.receive(b"USER alice\r\nPASS secret\r\n")
    list(core.events())
    assert core.auth_failed(code=code) == reply
    assert core.state is Pop3State.AUTHORIZATION


def test_auth_lists_mechanisms():
    assert converse(Pop3Core(DEV), b"AUTH\r\n") == b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"


def test_auth_plain_with_initial_response():
    core = Pop3Core(DEV)
    core.receive(f"AUTH PLAIN {PLAIN_IR}\r\n".encode())
    assert list(core.events()) == [AuthCredentials("", "alice", "secret", "PLAIN")]


def test_auth_plain_keeps_the_authzid():
    ir = base64.b64encode("admin\0alice\0pässword".encode()).decode()
    core = Pop3Core(DEV)
    core.receive(f"auth plain {ir}\r\n".encode())
    assert list(core.events()) == [AuthCredentials("admin", "alice", "pässword")]


def test_auth_plain_continuation_exchange_transcript():
    out = converse(Pop3Core(DEV), b"AUTH PLAIN\r\n", PLAIN_IR.encode() + b"\r\nSTAT\r\n")
    assert out == b"+ \r\n+OK maildrop has 3 messages (113 octets)\r\n+OK 3 113\r\n"


def test_auth_exchange_is_cancelled_by_star():
    out = converse(Pop3Core(DEV), b"AUTH PLAIN\r\n*\r\nNOOP\r\n")
    assert out == (
        b"+ \r\n-ERR authentication cancelled\r\n-ERR NOOP is only valid after login\r\n"
    )


BAD_PLAIN = b"-ERR invalid PLAIN response, expected authzid NUL user NUL password\r\n"


@pytest.mark.parametrize(
    ("lines", "reply"),
    [
        (b"AUTH PLAIN\r\n!!!\r\n", b"+ \r\n-ERR invalid base64 in SASL response\r\n"),
        (b"AUTH PLAIN\r\nYWJj=\r\n", b"+ \r\n-ERR invalid base64 in SASL response\r\n"),
        (b"AUTH PLAIN YR==\r\n", b"-ERR invalid base64 in SASL response\r\n"),
        (b"AUTH PLAIN\r\n\r\n", b"+ \r\n" + BAD_PLAIN),
        (b"AUTH PLAIN =\r\n", BAD_PLAIN),
        (b"AUTH PLAIN YWJj\r\n", BAD_PLAIN),
        (b"AUTH PLAIN " + base64.b64encode(b"\0a\0") + b"\r\n", BAD_PLAIN),
        (
            b"AUTH PLAIN " + base64.b64encode(b"\0\xff\0x") + b"\r\n",
            b"-ERR PLAIN credentials must be UTF-8\r\n",
        ),
        (b"AUTH CRAM-MD5\r\n", b"-ERR unsupported SASL mechanism CRAM-MD5, use PLAIN\r\n"),
        (b"AUTH PLAIN a b\r\n", b"-ERR usage: AUTH [mechanism [initial-response]]\r\n"),
    ],
)
def test_bad_sasl_input_is_refused_and_session_stays_in_authorization(lines, reply):
    core = Pop3Core(DEV)
    assert converse(core, lines) == reply
    assert converse(core, b"CAPA\r\n").startswith(b"+OK capability list follows\r\n")


def test_auth_line_longer_than_255_is_accepted_up_to_the_sasl_bound():
    ir = base64.b64encode(b"\0alice\0" + b"p" * 400).decode()
    core = Pop3Core(DEV)
    core.receive(f"AUTH PLAIN {ir}\r\n".encode())
    assert list(core.events()) == [AuthCredentials("", "alice", "p" * 400)]


def test_plaintext_logins_are_refused_without_tls():
    core = Pop3Core(Pop3Config(tls_available=True))
    out = converse(core, b"USER alice\r\nAUTH PLAIN " + PLAIN_IR.encode() + b"\r\nAUTH\r\n")
    assert out == (
        b"-ERR plaintext authentication needs TLS: use STLS first\r\n"
        b"-ERR plaintext authentication needs TLS: use STLS first\r\n"
        b"+OK SASL mechanisms follow\r\n.\r\n"
    )
    out = converse(Pop3Core(), b"USER alice\r\n")
    assert out == b"-ERR plaintext authentication is disabled on this connection\r\n"


def test_apop_is_refused_by_default():
    core = Pop3Core()
    core.greeting(CHALLENGE)
    out = converse(core, b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n")
    assert out == b"-ERR APOP is not available, use USER/PASS or AUTH\r\n"


def test_apop_when_enabled_emits_credentials_with_the_challenge():
    core = Pop3Core(Pop3Config(apop=True))
    core.greeting(CHALLENGE)
    digest = hashlib.md5((CHALLENGE + "secret").encode()).hexdigest()
    core.receive(f"APOP alice {digest.upper()}\r\n".encode())
    assert list(core.events()) == [ApopCredentials("alice", digest, CHALLENGE)]
    core.maildrop_opened(SIZES, UIDS)
    assert core.state is Pop3State.TRANSACTION


def test_apop_with_malformed_digest_is_refused():
    core = Pop3Core(Pop3Config(apop=True))
    core.greeting(CHALLENGE)
    out = converse(core, b"APOP alice 1234\r\nAPOP alice\r\n")
    assert out == (
        b"-ERR APOP digest must be 32 hexadecimal digits\r\n-ERR usage: APOP name digest\r\n"
    )


# --- STLS -----------------------------------------------------------------------------------


def test_stls_discards_commands_pipelined_after_it():
    core = Pop3Core(Pop3Config(tls_available=True))
    core.receive(b"STLS\r\nCAPA\r\nUSER mallory\r\n")
    assert list(core.events()) == [StartTls()]
    assert core.send(Ok("begin TLS negotiation")) == b"+OK begin TLS negotiation\r\n"
    core.receive(b"PASS injected\r\n")  # arrives before the handshake
    assert list(core.events()) == []
    core.tls_established()
    assert core.tls_active
    assert core.buffered == 0
    out = converse(core, b"CAPA\r\n")
    assert b"STLS" not in out and b"USER\r\nSASL PLAIN\r\n" in out


def test_stls_forgets_a_user_given_before_it():
    core = Pop3Core(Pop3Config(tls_available=True, allow_plaintext_auth=True))
    out = converse(core, b"USER alice\r\n", b"STLS\r\n", b"PASS secret\r\n")
    assert out == b"+OK send PASS\r\n+OK begin TLS negotiation\r\n-ERR send USER first\r\n"


def test_stls_refused_by_adapter_keeps_pipelined_commands():
    core = Pop3Core(Pop3Config(tls_available=True))
    core.receive(b"STLS\r\nNOOP\r\n")
    assert list(core.events()) == [StartTls()]
    refusal = core.send(Err("TLS not available", "SYS/TEMP"))
    assert refusal == b"-ERR [SYS/TEMP] TLS not available\r\n"
    assert list(core.events()) == [Answered(b"-ERR NOOP is only valid after login\r\n", ok=False)]


def test_stls_refused_when_unavailable_or_already_active():
    assert converse(Pop3Core(), b"STLS\r\n") == b"-ERR STLS is not available on this server\r\n"
    active = Pop3Core(Pop3Config(tls_available=True, tls_active=True))
    assert converse(active, b"STLS\r\n") == b"-ERR TLS is already active\r\n"


def test_connection_closed_while_waiting_for_handshake():
    core = Pop3Core(Pop3Config(tls_available=True))
    core.receive(b"STLS\r\nNOOP\r\n")
    list(core.events())
    core.send(Ok())
    core.receive(b"")
    assert list(core.events()) == [ConnectionClosed()]


# --- bounds ---------------------------------------------------------------------------------


def test_command_of_255_octets_is_accepted_and_256_refused():
    ok_line = b"NOOP" + b" " * 249 + b"\r\n"
    long_line = b"NOOP" + b" " * 250 + b"\r\n"
    assert len(ok_line) == 255
    out = converse(logged_in(), ok_line, long_line)
    assert out == b"+OK\r\n-ERR line too long (at most 255 octets)\r\n"


def test_100_kb_line_is_refused_while_arriving_without_buffering_it():
    core = logged_in()
    core.receive(b"NOOP " + b"x" * 3000)
    assert list(core.events()) == [
        Answered(b"-ERR line too long (at most 255 octets)\r\n", ok=False)
    ]
    for _ in range(100):
        core.receive(b"x" * 1024)
        assert core.buffered == 0
        assert list(core.events()) == []
    assert converse(core, b"\r\nSTAT\r\n") == b"+OK 3 113\r\n"


def test_100_kb_line_in_one_packet_gives_one_refusal():
    out = converse(logged_in(), b"x" * 100_000 + b"\r\nNOOP\r\n")
    assert out == b"-ERR line too long (at most 255 octets)\r\n+OK\r\n"


def test_overlong_sasl_response_ends_the_exchange():
    out = converse(Pop3Core(DEV), b"AUTH PLAIN\r\n" + b"A" * 5000 + b"\r\nCAPA\r\n")
    assert out.startswith(b"+ \r\n-ERR SASL response too long (at most 2048 octets)\r\n+OK cap")


# --- dot-stuffing and TOP -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        ([b""], b".\r\n"),
        ([b".\r\n"], b"..\r\n.\r\n"),
        ([b"a\r\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r\n", b".", b".", b"\r\n"], b"a\r\n...\r\n.\r\n"),
        ([b"no final newline"], b"no final newline\r\n.\r\n"),
        ([b"ends with cr\r"], b"ends with cr\r\n.\r\n"),
        ([b"bare\nlf\n.x"], b"bare\r\nlf\r\n..x\r\n.\r\n"),
        ([b"bare\rcr.\r\n"], b"bare\rcr.\r\n.\r\n"),
    ],
)
def test_dot_stuffer_cases(chunks, wire):
    stuffer = DotStuffer()
    assert b"".join(stuffer.feed(c) for c in chunks) + stuffer.end() == wire


crlf_text = st.lists(
    st.one_of(
        st.sampled_from([b"", b".", b"..", b".x", b"x."]),
        st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    ),
    max_size=30,
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=300, deadline=None)
@given(crlf_text, st.lists(st.integers(min_value=0), max_size=10))
def test_unstuffing_stuffed_chunks_gives_the_input_back(text, cuts):
    stuffer = DotStuffer()
    wire = b"".join(stuffer.feed(c) for c in split_at(text, cuts)) + stuffer.end()
    assert unstuff(wire) == text
    assert wire == stuff(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=10))
def test_any_bytes_stuff_to_a_well_formed_body_regardless_of_chunking(data, cuts):
    stuffer = DotStuffer()
    wire = b"".join(stuffer.feed(c) for c in split_at(data, cuts)) + stuffer.end()
    assert wire == stuff(data)
    assert b"\n" not in wire.replace(b"\r\n", b"")
    unstuff(wire)


def test_top_bytes_cuts_after_header_and_lines():
    message = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\nthree"
    assert top_bytes(message, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_bytes(message, 2) == b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\n"
    assert top_bytes(message, 3) == message
    assert top_bytes(message, 10**40) == message
    assert top_bytes(b"A: 1\r\nno body", 5) == b"A: 1\r\nno body"
    assert top_bytes(b"\r\nbody\r\n", 0) == b"\r\n"


# --- adapter usage and replies --------------------------------------------------------------


def test_answering_when_nothing_is_pending_is_a_usage_error():
    core = logged_in()
    with pytest.raises(Pop3UsageError):
        core.send(Ok())
    with pytest.raises(Pop3UsageError):
        core.tls_established()


def test_credentials_need_maildrop_opened_not_ok():
    core = Pop3Core(DEV)
    core.receive(b"USER a\r\nPASS b\r\n")
    list(core.events())
    with pytest.raises(Pop3UsageError):
        core.send(Ok())
    with pytest.raises(ValueError):
        core.maildrop_opened([1, 2], ["same", "same"])
    with pytest.raises(ValueError):
        core.maildrop_opened([1], ["has space"])
    assert core.maildrop_opened([], []) == b"+OK maildrop has 0 messages (0 octets)\r\n"


def test_reply_text_cannot_inject_a_second_line():
    assert format_reply(Err("bad\r\n+OK fake", "SYS/TEMP")) == b"-ERR [SYS/TEMP] bad  +OK fake\r\n"
    with pytest.raises(ValueError):
        format_reply(Err("x", "bad code]"))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_command_line": 10}, {"max_sasl_line": 100}, {"expire": "soon"}, {"login_delay": -1}],
)
def test_config_rejects_wrong_values_naming_the_key(kwargs):
    with pytest.raises(ValueError, match=f"pop3.{next(iter(kwargs))}"):
        Pop3Config(**kwargs)


# --- random input never raises --------------------------------------------------------------

COMMANDS = [
    b"USER alice\r\n", b"PASS secret\r\n", b"PASS wrong\r\n", b"AUTH PLAIN\r\n",
    PLAIN_IR.encode() + b"\r\n", b"*\r\n", b"STLS\r\n", b"CAPA\r\n", b"STAT\r\n", b"LIST\r\n",
    b"LIST 2\r\n", b"UIDL 1\r\n", b"RETR 1\r\n", b"TOP 2 1\r\n", b"DELE 1\r\n", b"RSET\r\n",
    b"NOOP\r\n", b"APOP alice 00000000000000000000000000000000\r\n", b"QUIT\r\n", b"\r\n",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=300), st.sampled_from(COMMANDS)), max_size=20),
    st.sampled_from([DEV, Pop3Config(tls_available=True, apop=True), Pop3Config(tls_active=True)]),
)
def test_random_input_never_raises_and_every_reply_is_a_status_line(chunks, config):
    core = Pop3Core(config)
    core.greeting(CHALLENGE)
    out = converse(core, *chunks, b"")
    assert core.state is Pop3State.CLOSED
    assert out == b"" or out.startswith((b"+OK", b"-ERR", b"+ "))
    assert core.buffered == 0
