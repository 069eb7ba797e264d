"""The sans-I/O SMTP/LMTP core, driven directly: byte-exact transcripts, every command and
its errors, pipelining, byte-at-a-time delivery, DATA transparency and smuggling, BDAT,
STARTTLS injection, AUTH, LMTP and limits."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from postbote.smtp import replies as R
from postbote.smtp.data import DotReader
from postbote.smtp.events import (
    Answered,
    AuthCredentials,
    BdatChunk,
    BdatEnd,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from postbote.smtp.parameters import MailParams, RcptParams
from postbote.smtp.protocol import SmtpConfig, SmtpServerCore, SmtpUsageError
from postbote.smtp.replies import Reply, format_reply

CFG = SmtpConfig(hostname="mx.test", tls_available=True, max_message_size=1000)
TLS = SmtpConfig(hostname="mx.test", tls_active=True, max_message_size=1000)
LMTP = SmtpConfig(hostname="mx.test", lmtp=True, max_message_size=1000)

EHLO = b"EHLO client.example\r\n"
MAIL = b"MAIL FROM:<alice@example.org>\r\n"
RCPT = b"RCPT TO:<bob@mx.test>\r\n"
EHLO_REPLY = (
    b"250-mx.test greets client.example\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 1000\r\n"
    b"250-8BITMIME\r\n"
    b"250-BINARYMIME\r\n"
    b"250-CHUNKING\r\n"
    b"250-SMTPUTF8\r\n"
    b"250-DSN\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250 STARTTLS\r\n"
)


def policy(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
    """A scripted adapter: nobody@ and full@ are refused, the password is "secret"."""
    match event:
        case Helo(name=name):
            return Reply(250, None, f"greets {name}")
        case MailFrom():
            return R.SENDER_OK
        case RcptTo(local_part=local) if local.startswith("nobody"):
            return Reply(550, "5.1.1", "No such user")
        case RcptTo():
            return R.RECIPIENT_OK
        case DataStart():
            return R.START_DATA
        case DataEnd(oversized=True) | BdatEnd(oversized=True):
            return R.SIZE_EXCEEDED
        case DataEnd() | BdatEnd(last=True) if core.config.lmtp:
            return [
                Reply(452, "4.2.2", "Mailbox full")
                if rcpt.local_part.startswith("full")
                else R.MESSAGE_ACCEPTED
                for rcpt in core.recipients
            ]
        case DataEnd() | BdatEnd(last=True):
            return R.MESSAGE_ACCEPTED
        case BdatEnd():
            return R.CHUNK_OK
        case Rset() | Noop():
            return R.OK
        case Quit():
            return R.BYE
        case StartTls():
            return R.READY_TLS
        case AuthCredentials(password="secret"):
            return R.AUTH_SUCCEEDED
        case AuthCredentials():
            return R.AUTH_FAILED
        case Vrfy():
            return R.CANNOT_VRFY
        case Expn():
            return Reply(502, "5.5.1", "EXPN disabled")
        case Help():
            return R.HELP
    raise AssertionError(f"unexpected {event!r}")


class Client:
    """Feeds the core and answers its events with ``policy``, recording everything."""

    def __init__(
        self,
        config: SmtpConfig = CFG,
        answer: Callable[[SmtpServerCore, Event], Reply | list[Reply]] = policy,
    ) -> None:
        self.core = SmtpServerCore(config)
        self.answer = answer
        self.events: list[Event] = []
        self.greeting = self.core.greeting()

    def send(self, data: bytes) -> bytes:
        if data:  # b"" would mean the client closed
            self.core.receive(data)
        return self.drain()

    def drain(self) -> bytes:
        out = bytearray()
        for event in self.core.events():
            self.events.append(event)
            if isinstance(event, Answered):
                out += event.data
            elif event.needs_reply:
                out += self.core.send(self.answer(self.core, event))
        return bytes(out)

    def trickle(self, data: bytes) -> bytes:
        return b"".join(self.send(data[i : i + 1]) for i in range(len(data)))

    @property
    def body(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, (DataChunk, BdatChunk)))

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def commands(self) -> list[Event]:
        """Events other than body pieces, whose split depends on how bytes arrived."""
        return [e for e in self.events if not isinstance(e, (DataChunk, BdatChunk))]


def ready(config: SmtpConfig = CFG, setup: bytes = EHLO) -> Client:
    client = Client(config)
    client.send(setup)
    return client


# --- whole sessions ----------------------------------------------------------------------------

SESSION = (
    EHLO
    + b"MAIL FROM:<alice@example.org> SIZE=42\r\n"
    + RCPT
    + b"RCPT TO:<nobody@mx.test>\r\n"
    + b"DATA\r\n"
    + b"Subject: hi\r\n\r\n..leading dot\r\n.\r\n"
    + b"QUIT\r\n"
)
SESSION_REPLY = (
    EHLO_REPLY
    + b"250 2.1.0 Sender OK\r\n"
    + b"250 2.1.5 Recipient OK\r\n"
    + b"550 5.1.1 No such user\r\n"
    + b"354 End data with <CR><LF>.<CR><LF>\r\n"
    + b"250 2.0.0 Message accepted\r\n"
    + b"221 2.0.0 Bye\r\n"
)


def test_greeting_names_the_host() -> None:
    assert Client().greeting == b"220 mx.test ESMTP ready\r\n"
    assert Client(LMTP).greeting == b"220 mx.test LMTP ready\r\n"


def test_whole_esmtp_session_is_byte_exact() -> None:
    client = Client()
    assert client.send(EHLO) == EHLO_REPLY
    assert client.send(b"MAIL FROM:<alice@example.org> SIZE=42\r\n") == b"250 2.1.0 Sender OK\r\n"
    assert client.send(RCPT) == b"250 2.1.5 Recipient OK\r\n"
    assert client.send(b"RCPT TO:<nobody@mx.test>\r\n") == b"550 5.1.1 No such user\r\n"
    assert client.send(b"DATA\r\n") == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    assert client.send(b"Subject: hi\r\n\r\n..leading dot\r\n.\r\n") == (
        b"250 2.0.0 Message accepted\r\n"
    )
    assert client.body == b"Subject: hi\r\n\r\n.leading dot\r\n"
    assert client.send(b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"
    assert client.core.closed


def test_pipelined_session_in_one_receive_is_answered_in_order() -> None:
    client = Client()
    assert client.send(SESSION) == SESSION_REPLY
    assert [type(e) for e in client.commands()] == [
        Helo, MailFrom, RcptTo, RcptTo, DataStart, DataEnd, Quit,
    ]  # fmt: skip


def test_one_byte_at_a_time_gives_the_same_transcript() -> None:
    whole, trickled = Client(), Client()
    assert trickled.trickle(SESSION) == whole.send(SESSION) == SESSION_REPLY
    assert trickled.commands() == whole.commands()
    assert trickled.body == whole.body == b"Subject: hi\r\n\r\n.leading dot\r\n"


def test_every_split_of_the_session_gives_the_same_transcript() -> None:
    for cut in range(1, len(SESSION)):
        client = Client()
        assert client.send(SESSION[:cut]) + client.send(SESSION[cut:]) == SESSION_REPLY, cut
        assert client.body == b"Subject: hi\r\n\r\n.leading dot\r\n", cut


def test_core_waits_for_the_answer_before_reading_the_next_command() -> None:
    core = SmtpServerCore(CFG)
    core.receive(EHLO + MAIL)
    events = list(core.events())
    assert events == [Helo("client.example", extended=True)]
    assert core.pending == events[0]
    assert list(core.events()) == []  # still waiting
    core.send(R.HELLO)
    assert [type(e) for e in core.events()] == [MailFrom]


def test_helo_session_gets_no_extension_list() -> None:
    client = Client()
    assert client.send(b"HELO old.example\r\n") == b"250 mx.test greets old.example\r\n"
    assert client.events[-1] == Helo("old.example", extended=False)
    assert client.send(MAIL) == b"250 2.1.0 Sender OK\r\n"


def test_ehlo_after_tls_offers_auth_and_not_starttls() -> None:
    reply = Client(TLS).send(EHLO)
    assert b"250-STARTTLS" not in reply and b"STARTTLS\r\n" not in reply
    assert reply.endswith(b"250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n")


def test_ehlo_omits_disabled_extensions() -> None:
    config = SmtpConfig(
        hostname="mx.test",
        pipelining=False,
        eightbitmime=False,
        chunking=False,
        smtputf8=False,
        dsn=False,
        max_message_size=0,
    )
    assert Client(config).send(EHLO) == (
        b"250-mx.test greets client.example\r\n250-SIZE\r\n250 ENHANCEDSTATUSCODES\r\n"
    )


def test_enhanced_status_codes_can_be_turned_off() -> None:
    client = Client(SmtpConfig(hostname="mx.test", enhancedstatuscodes=False))
    assert b"ENHANCEDSTATUSCODES" not in client.send(EHLO)
    assert client.send(MAIL) == b"250 Sender OK\r\n"
    assert client.send(b"FOO\r\n") == b"500 Syntax error, command unrecognized\r\n"


def test_refused_ehlo_opens_no_session() -> None:
    def refuse_helo(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
        if isinstance(event, Helo):
            return Reply(550, "5.7.1", "Go away")
        return policy(core, event)

    client = Client(answer=refuse_helo)
    assert client.send(EHLO) == b"550 5.7.1 Go away\r\n"
    assert client.send(MAIL) == b"503 5.5.1 Send EHLO or HELO first\r\n"


def test_greeting_554_serves_only_quit() -> None:
    core = SmtpServerCore(CFG)
    assert core.greeting(Reply(554, None, "No service for you")) == (
        b"554 mx.test No service for you\r\n"
    )
    client = Client()
    client.core = core
    assert client.send(EHLO + b"NOOP\r\n") == b"503 5.5.1 Service refused, send QUIT\r\n" * 2
    assert client.send(b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"


def test_greeting_421_closes_the_session() -> None:
    core = SmtpServerCore(CFG)
    assert core.greeting(Reply(421, None, "Too busy")) == b"421 mx.test Too busy\r\n"
    assert core.closed
    core.receive(EHLO)
    assert list(core.events()) == []


def test_adapter_421_closes_the_session() -> None:
    core = SmtpServerCore(CFG)
    core.receive(EHLO + MAIL)
    next(core.events())
    assert core.send(R.CLOSING) == b"421 4.3.2 Service shutting down, closing channel\r\n"
    assert core.closed and list(core.events()) == []


def test_quit_closes_and_nothing_after_it_is_read() -> None:
    client = ready()
    assert client.send(b"QUIT\r\nNOOP\r\n") == b"221 2.0.0 Bye\r\n"
    assert client.core.closed
    assert client.send(b"NOOP\r\n") == b""
    assert not client.of(Noop)


def test_client_closing_gives_connection_closed_after_pipelined_commands() -> None:
    client = ready()
    client.core.receive(b"NOOP\r\nRSET")
    client.core.receive(b"")
    assert client.drain() == b"250 2.0.0 OK\r\n"
    assert isinstance(client.events[-1], ConnectionClosed)
    assert client.core.closed


def test_client_closing_during_data_gives_connection_closed() -> None:
    client = ready(setup=EHLO + MAIL + RCPT + b"DATA\r\n")
    client.send(b"half a message\r\n")
    client.core.receive(b"")
    client.drain()
    assert not client.of(DataEnd)
    assert isinstance(client.events[-1], ConnectionClosed)


def test_command_lines_ending_in_bare_lf_are_accepted() -> None:
    client = Client()
    assert client.send(b"EHLO c\nMAIL FROM:<a@b>\n").endswith(b"250 2.1.0 Sender OK\r\n")


def test_commands_are_case_insensitive_and_tolerate_spaces() -> None:
    client = ready()
    assert client.send(b"mail from: <a@b>  \r\n") == b"250 2.1.0 Sender OK\r\n"
    assert client.events[-1] == MailFrom("a@b", "a", "b")
    assert client.send(b"rcpt To:<c@d>\r\n") == b"250 2.1.5 Recipient OK\r\n"


# --- commands and their events ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"NOOP\r\n", Noop("")),
        (b"NOOP anything goes\r\n", Noop("anything goes")),
        (b"RSET\r\n", Rset()),
        (b"VRFY bob\r\n", Vrfy("bob")),
        (b"EXPN staff\r\n", Expn("staff")),
        (b"HELP\r\n", Help("")),
        (b"HELP MAIL\r\n", Help("MAIL")),
        (b"STARTTLS\r\n", StartTls()),
        (b"QUIT\r\n", Quit()),
        (b"EHLO [192.0.2.1]\r\n", Helo("[192.0.2.1]", extended=True)),
    ],
)
def test_valid_commands_become_events(line: bytes, event: Event) -> None:
    client = ready()
    client.send(line)
    assert client.events[-1] == event


@pytest.mark.parametrize(
    ("event", "reply"),
    [
        (Noop(""), b"250 2.0.0 OK\r\n"),
        (Vrfy("bob"), b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"),
        (Expn("staff"), b"502 5.5.1 EXPN disabled\r\n"),
        (Help(""), b"214 2.0.0 See RFC 5321\r\n"),
    ],
)  # fmt: skip
def test_adapter_replies_are_formatted_with_enhanced_codes(event: Event, reply: bytes) -> None:
    core = SmtpServerCore(CFG)
    core._pending = event  # the reply path alone
    assert core.send(policy(core, event)) == reply  # type: ignore[arg-type]


MAIL_ERRORS = [
    (b"", b"FOO\r\n", b"500 5.5.2 Syntax error, command unrecognized\r\n"),
    (b"", b"\r\n", b"500 5.5.2 Syntax error, command unrecognized\r\n"),
    (b"", b"LHLO c\r\n", b"500 5.5.2 Syntax error, command unrecognized\r\n"),
    (b"", b"NOOP\x00\r\n", b"500 5.5.2 Syntax error, control characters in command\r\n"),
    (b"", b"NOOP \xff\r\n", b"500 5.5.2 Syntax error, command is not valid UTF-8\r\n"),
    (b"", MAIL, b"503 5.5.1 Send EHLO or HELO first\r\n"),
    (b"", b"EHLO\r\n", b"501 5.5.4 Syntax: EHLO domain\r\n"),
    (b"", b"HELO  \r\n", b"501 5.5.4 Syntax: EHLO domain\r\n"),
    (b"", b"RSET all\r\n", b"501 5.5.4 Syntax error, no parameters allowed\r\n"),
    (b"", b"QUIT now\r\n", b"501 5.5.4 Syntax error, no parameters allowed\r\n"),
    (b"", b"STARTTLS now\r\n", b"501 5.5.4 Syntax error, no parameters allowed\r\n"),
    (b"", b"VRFY\r\n", b"501 5.5.4 Syntax error, argument required\r\n"),
    (b"", b"EXPN\r\n", b"501 5.5.4 Syntax error, argument required\r\n"),
    (EHLO, RCPT, b"503 5.5.1 Send MAIL first\r\n"),
    (EHLO, b"DATA\r\n", b"503 5.5.1 Send MAIL first\r\n"),
    (EHLO + MAIL, MAIL, b"503 5.5.1 Sender already specified\r\n"),
    (EHLO + MAIL, b"DATA\r\n", b"554 5.5.1 No valid recipients\r\n"),
    (EHLO + MAIL + b"RCPT TO:<nobody@x>\r\n", b"DATA\r\n", b"554 5.5.1 No valid recipients\r\n"),
    (EHLO + MAIL + RCPT, b"DATA now\r\n", b"501 5.5.4 Syntax error, no parameters allowed\r\n"),
    (EHLO, b"MAIL FROM:a@b\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n"),
    (EHLO, b"MAIL TO:<a@b>\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n"),
    (EHLO, b"MAIL FROM:<a@b>x\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n"),
    (EHLO, b"MAIL FROM:<a@b\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n"),
    (EHLO, b"MAIL FROM:<a b@c>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a@>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<@>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<ab>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a@-b.example>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a@b.example.>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a..b@c>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<.a@c>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a@[300.1.1.1]>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a@[IPv6:fe80::1%eth0]>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a@[IPv6:nonsense]>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<@:b@c>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b'MAIL FROM:<"a"b@c>\r\n', b"501 5.1.7 Bad sender address syntax\r\n"),
    (EHLO, b"MAIL FROM:<a@b> FOO=1\r\n", b"555 5.5.4 Parameter not recognized or not implemented\r\n"),
    (EHLO, b"MAIL FROM:<a@b> SIZE=abc\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> SIZE\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> SIZE=\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> SIZE=1 size=2\r\n", b"501 5.5.4 Parameter given twice\r\n"),
    (EHLO, b"MAIL FROM:<a@b> SIZE=1001\r\n", b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"),
    (EHLO, b"MAIL FROM:<a@b> BODY=9BIT\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> SMTPUTF8=yes\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> RET=ALL\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> ENVID=a+2\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> ENVID=a+FF\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> ENVID=" + b"x" * 101 + b"\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, b"MAIL FROM:<a@b> -X=1\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO, "MAIL FROM:<jörg@b>\r\n".encode(), b"553 5.6.7 Non-ASCII addresses not permitted for that sender\r\n"),
    (EHLO + MAIL, "RCPT TO:<jörg@b>\r\n".encode(), b"553 5.6.7 Non-ASCII addresses not permitted for that recipient\r\n"),
    (EHLO + MAIL, "RCPT TO:<a@bü.example>\r\n".encode(), b"553 5.6.7 Non-ASCII addresses not permitted for that recipient\r\n"),
    (EHLO + MAIL, b"RCPT TO:<>\r\n", b"501 5.1.3 Bad recipient address syntax\r\n"),
    (EHLO + MAIL, b"RCPT TO:<postmaster@>\r\n", b"501 5.1.3 Bad recipient address syntax\r\n"),
    (EHLO + MAIL, b"RCPT FROM:<b@c>\r\n", b"501 5.5.4 Syntax: RCPT TO:<address> [parameters]\r\n"),
    (EHLO + MAIL, b"RCPT TO:<b@c> NOTIFY=NEVER,DELAY\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO + MAIL, b"RCPT TO:<b@c> NOTIFY=SOMETIMES\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO + MAIL, b"RCPT TO:<b@c> NOTIFY=DELAY,DELAY\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO + MAIL, b"RCPT TO:<b@c> ORCPT=rfc822\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO + MAIL, b"RCPT TO:<b@c> ORCPT=rfc822;\r\n", b"501 5.5.4 Syntax error in parameters\r\n"),
    (EHLO + MAIL, b"RCPT TO:<b@c> SIZE=1\r\n", b"555 5.5.4 Parameter not recognized or not implemented\r\n"),
    (EHLO + MAIL + RCPT, b"BDAT x\r\n", b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"),
    (EHLO + MAIL + RCPT, b"BDAT 10 FIRST\r\n", b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"),
    (EHLO + MAIL + RCPT, b"BDAT\r\n", b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"),
    (EHLO + b"MAIL FROM:<a@b> BODY=BINARYMIME\r\n" + RCPT, b"DATA\r\n", b"503 5.5.1 BODY=BINARYMIME requires BDAT\r\n"),
    (b"", b"AUTH PLAIN\r\n", b"503 5.5.1 Send EHLO first\r\n"),
    (b"HELO c\r\n", b"AUTH PLAIN\r\n", b"503 5.5.1 Send EHLO first\r\n"),
    (EHLO, b"AUTH PLAIN\r\n", b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "line", "reply"), MAIL_ERRORS)
def test_core_answers_syntax_and_sequence_errors(setup: bytes, line: bytes, reply: bytes) -> None:
    client = Client()
    client.send(setup)
    before = client.core.error_count
    assert client.send(line) == reply
    assert client.core.error_count == before + 1
    assert isinstance(client.events[-1], Answered) and not client.events[-1].ok


def test_session_stays_usable_after_errors() -> None:
    client = ready()
    client.send(b"FOO\r\nMAIL FROM:<a b@c>\r\n")
    assert client.send(MAIL + RCPT) == b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n"


# --- addresses and parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "address", "local", "domain"),
    [
        ("<a@b.example>", "a@b.example", "a", "b.example"),
        ("<A.B+tag@Example.ORG>", "A.B+tag@Example.ORG", "A.B+tag", "Example.ORG"),
        ("<@relay1.example,@relay2.example:joe@c.example>", "joe@c.example", "joe", "c.example"),
        ('<"a b"@x.example>', '"a b"@x.example', '"a b"', "x.example"),
        ('<"a>b\\"c"@x.example>', '"a>b\\"c"@x.example', '"a>b\\"c"', "x.example"),
        ("<a@[192.0.2.1]>", "a@[192.0.2.1]", "a", "[192.0.2.1]"),
        ("<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]", "a", "[IPv6:2001:db8::1]"),
        ("<a@[x-tag:whatever]>", "a@[x-tag:whatever]", "a", "[x-tag:whatever]"),
        ("<!#$%&'*+-/=?^_`{|}~@x>", "!#$%&'*+-/=?^_`{|}~@x", "!#$%&'*+-/=?^_`{|}~", "x"),
    ],
)
def test_paths_are_parsed_as_given(path: str, address: str, local: str, domain: str) -> None:
    client = ready()
    assert client.send(f"MAIL FROM:{path}\r\n".encode()) == b"250 2.1.0 Sender OK\r\n"
    assert client.events[-1] == MailFrom(address, local, domain)
    client.send(f"RCPT TO:{path}\r\n".encode())
    assert client.events[-1] == RcptTo(address, local, domain)


def test_null_reverse_path_gives_empty_address() -> None:
    client = ready()
    assert client.send(b"MAIL FROM:<>\r\n") == b"250 2.1.0 Sender OK\r\n"
    assert client.events[-1] == MailFrom("", "", "")


def test_bare_postmaster_is_a_valid_recipient() -> None:
    client = ready(setup=EHLO + MAIL)
    assert client.send(b"RCPT TO:<Postmaster>\r\n") == b"250 2.1.5 Recipient OK\r\n"
    assert client.events[-1] == RcptTo("Postmaster", "Postmaster", "")
    client.send(b"RCPT TO:<postmaster@mx.test>\r\n")
    assert client.events[-1] == RcptTo("postmaster@mx.test", "postmaster", "mx.test")


def test_utf8_addresses_are_accepted_with_smtputf8() -> None:
    client = ready()
    line = "MAIL FROM:<jörg@bücher.example> SMTPUTF8\r\n".encode()
    assert client.send(line) == b"250 2.1.0 Sender OK\r\n"
    assert client.events[-1] == MailFrom(
        "jörg@bücher.example", "jörg", "bücher.example", MailParams(smtputf8=True)
    )
    assert client.send("RCPT TO:<用户@例子.example>\r\n".encode()) == b"250 2.1.5 Recipient OK\r\n"
    assert client.events[-1].address == "用户@例子.example"


def test_utf8_addresses_are_refused_when_smtputf8_is_off() -> None:
    client = ready(SmtpConfig(hostname="mx.test", smtputf8=False))
    assert b"SMTPUTF8" not in client.send(EHLO)
    assert client.send("MAIL FROM:<jörg@b> SMTPUTF8\r\n".encode()) == (
        b"555 5.5.4 Parameter not recognized or not implemented\r\n"
    )
    assert client.send("MAIL FROM:<jörg@b>\r\n".encode()).startswith(b"553 5.6.7 ")


def test_mail_parameters_are_decoded() -> None:
    client = ready(TLS)
    line = b"MAIL FROM:<a@b> size=500 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B1 AUTH=x+2By@b\r\n"
    assert client.send(line) == b"250 2.1.0 Sender OK\r\n"
    assert client.events[-1].params == MailParams(
        size=500, body="8BITMIME", smtputf8=True, ret="HDRS", envid="QQ+1", auth="x+y@b"
    )


def test_mail_auth_parameter_may_be_empty_path() -> None:
    client = ready(TLS)
    client.send(b"MAIL FROM:<a@b> AUTH=<>\r\n")
    assert client.events[-1].params == MailParams(auth="<>")


def test_rcpt_dsn_parameters_are_decoded() -> None:
    client = ready(setup=EHLO + MAIL)
    client.send(b"RCPT TO:<b@c> NOTIFY=success,Delay ORCPT=rfc822;b+2Bx@c\r\n")
    assert client.events[-1].params == RcptParams(
        notify=("SUCCESS", "DELAY"), orcpt_type="rfc822", orcpt="b+x@c"
    )
    client.send(b"RCPT TO:<d@c> NOTIFY=NEVER ORCPT=utf-8;j\\x{F6}rg@c\r\n")
    assert client.events[-1].params == RcptParams(
        notify=("NEVER",), orcpt_type="utf-8", orcpt="jörg@c"
    )


def test_parameters_of_disabled_extensions_are_not_recognized() -> None:
    config = SmtpConfig(hostname="mx.test", dsn=False, size=False, eightbitmime=False)
    unknown = b"555 5.5.4 Parameter not recognized or not implemented\r\n"
    client = ready(config)
    for line in (b"RET=FULL", b"ENVID=x", b"SIZE=1", b"BODY=8BITMIME"):
        assert client.send(b"MAIL FROM:<a@b> " + line + b"\r\n") == unknown
    client.send(MAIL)
    assert client.send(b"RCPT TO:<b@c> NOTIFY=NEVER\r\n") == unknown


def test_binarymime_needs_chunking() -> None:
    client = ready(SmtpConfig(hostname="mx.test", chunking=False))
    assert client.send(b"MAIL FROM:<a@b> BODY=BINARYMIME\r\n").startswith(b"555 5.5.4")


# --- transaction state -----------------------------------------------------------------------


def test_rset_ends_the_transaction() -> None:
    client = ready(setup=EHLO + MAIL + RCPT)
    assert client.send(b"RSET\r\n") == b"250 2.0.0 OK\r\n"
    assert client.core.sender is None and client.core.recipients == ()
    assert client.send(b"DATA\r\n") == b"503 5.5.1 Send MAIL first\r\n"
    assert client.send(MAIL) == b"250 2.1.0 Sender OK\r\n"


def test_ehlo_ends_the_transaction() -> None:
    client = ready(setup=EHLO + MAIL + RCPT)
    client.send(EHLO)
    assert client.core.sender is None
    assert client.send(MAIL) == b"250 2.1.0 Sender OK\r\n"


def test_refused_recipient_is_not_counted() -> None:
    client = ready(setup=EHLO + MAIL + b"RCPT TO:<nobody@x>\r\n")
    assert client.core.recipients == ()
    client.send(RCPT)
    assert [r.address for r in client.core.recipients] == ["bob@mx.test"]


def test_data_refused_by_adapter_keeps_the_transaction_and_reads_commands() -> None:
    def refuse_data(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
        if isinstance(event, DataStart):
            return Reply(451, "4.3.0", "Try later")
        return policy(core, event)

    client = Client(answer=refuse_data)
    client.send(EHLO + MAIL + RCPT)
    assert client.send(b"DATA\r\nNOOP\r\n") == b"451 4.3.0 Try later\r\n250 2.0.0 OK\r\n"
    assert client.core.sender is not None


def test_message_end_finishes_the_transaction() -> None:
    client = ready(setup=EHLO + MAIL + RCPT + b"DATA\r\nx\r\n.\r\n")
    assert client.core.sender is None
    assert client.send(MAIL) == b"250 2.1.0 Sender OK\r\n"


def test_tls_required_allows_only_the_way_to_tls() -> None:
    config = SmtpConfig(hostname="mx.test", tls_available=True, tls_required=True)
    client = ready(config)
    must = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
    for line in (MAIL, b"VRFY x\r\n", b"AUTH PLAIN\r\n"):
        assert client.send(line) == must
    assert client.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
    assert client.send(b"STARTTLS\r\n") == b"220 2.0.0 Ready to start TLS\r\n"


def test_auth_required_gates_mail_until_authenticated() -> None:
    config = SmtpConfig(hostname="mx.test", tls_active=True, auth_required=True)
    client = ready(config)
    assert client.send(MAIL) == b"530 5.7.0 Authentication required\r\n"
    assert client.send(b"VRFY x\r\n") == b"530 5.7.0 Authentication required\r\n"
    client.send(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0secret") + b"\r\n")
    assert client.send(MAIL) == b"250 2.1.0 Sender OK\r\n"


def test_bdat_before_auth_is_read_then_refused() -> None:
    client = ready(SmtpConfig(hostname="mx.test", tls_active=True, auth_required=True))
    assert client.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n") == (
        b"530 5.7.0 Authentication required\r\n250 2.0.0 OK\r\n"
    )
    assert not client.of(Quit) and client.body == b""


def test_error_count_counts_core_and_adapter_errors() -> None:
    client = ready(setup=EHLO + MAIL)
    client.send(b"FOO\r\nRCPT TO:<nobody@x>\r\n" + RCPT)
    assert client.core.error_count == 2


# --- line length -----------------------------------------------------------------------------


def test_overlong_command_line_is_refused_and_the_session_goes_on() -> None:
    client = ready()
    line = b"NOOP " + b"x" * 5000 + b"\r\n"
    assert client.send(line + b"NOOP\r\n") == b"500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n"
    assert not any(isinstance(e, Noop) and e.text for e in client.events)


def test_overlong_line_is_dropped_while_it_arrives() -> None:
    client = ready()
    out = b""
    for _ in range(1000):
        out += client.send(b"y" * 100)
        assert client.core.buffered <= CFG.max_line + 100
    out += client.send(b"\r\nNOOP\r\n")
    assert out == b"500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n"


def test_line_of_exactly_max_line_octets_is_accepted() -> None:
    client = ready()
    fits = b"NOOP " + b"x" * (CFG.max_line - 7) + b"\r\n"
    assert len(fits) == CFG.max_line
    assert client.send(fits) == b"250 2.0.0 OK\r\n"
    assert client.send(fits[:-2] + b"x\r\n") == b"500 5.5.6 Line too long\r\n"


def test_auth_lines_may_be_longer_than_command_lines() -> None:
    client = ready(TLS)
    secret = "p" * 5000
    line = b"AUTH PLAIN " + base64.b64encode(f"\0alice\0{secret}".encode()) + b"\r\n"
    assert len(line) > CFG.max_line
    assert client.send(line) == b"535 5.7.8 Authentication credentials invalid\r\n"
    assert client.events[-1] == AuthCredentials("PLAIN", "", "alice", secret)


# --- DATA ------------------------------------------------------------------------------------

IN_DATA = EHLO + MAIL + RCPT + b"DATA\r\n"


def test_dot_unstuffing_removes_one_leading_dot() -> None:
    client = ready(setup=IN_DATA)
    client.send(b"..\r\n...x\r\n.y\r\nz.\r\n. \r\n.\r\n")
    assert client.body == b".\r\n..x\r\ny\r\nz.\r\n \r\n"
    assert client.of(DataEnd) == [DataEnd(size=len(client.body), oversized=False, bare_newline=False)]


def test_empty_message_ends_at_once() -> None:
    client = ready(setup=IN_DATA)
    assert client.send(b".\r\n") == b"250 2.0.0 Message accepted\r\n"
    assert client.body == b"" and client.of(DataEnd)[0].size == 0


def test_commands_after_the_terminator_in_the_same_packet_are_read() -> None:
    client = ready(setup=IN_DATA)
    reply = client.send(b"hello\r\n.\r\n" + MAIL + b"QUIT\r\n")
    assert reply == b"250 2.0.0 Message accepted\r\n250 2.1.0 Sender OK\r\n221 2.0.0 Bye\r\n"
    assert client.body == b"hello\r\n"


def test_message_looking_like_commands_is_data() -> None:
    client = ready(setup=IN_DATA)
    assert client.send(b"QUIT\r\nRSET\r\n") == b""
    assert client.body == b"QUIT\r\nRSET\r\n"


def unstuffed(stream: bytes) -> bytes:
    """RFC 5321 §4.5.2 the slow, obvious way: the message before the first CRLF.CRLF (the
    DATA line's CRLF counts), split into CRLF lines, one leading dot dropped from each."""
    framed = b"\r\n" + stream
    end = framed.find(b"\r\n.\r\n")
    assert end >= 0
    lines = framed[2 : end + 2].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


# (a look-alike of the end of data, whether it holds a bare CR or LF)
SMUGGLING = [
    (b"\n.\n", True),
    (b"\r.\r", True),
    (b"\n.\r\n", True),
    (b"\r\n.\n", True),
    (b"\r\n.\r", True),
    (b"\r.\r\n", True),
    (b"\n.\r", True),
    (b"\r\n.\r\r\n", True),
    (b"\r\n\n.\r\n", True),
    (b"\r\r\n.\n", True),
    (b"\r\n.\x00\r\n", False),
    (b"\r\n .\r\n", False),
    (b"\r\n..\r\n", False),
]


@pytest.mark.parametrize(("fake_end", "bare"), SMUGGLING, ids=repr)
@pytest.mark.parametrize("trickle", [False, True], ids=["whole", "byte-by-byte"])
def test_only_crlf_dot_crlf_ends_data(fake_end: bytes, bare: bool, trickle: bool) -> None:
    client = ready(setup=IN_DATA)
    smuggled = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@mx.test>\r\nDATA\r\nfake\r\n"
    data = b"Subject: x\r\n\r\nbody" + fake_end + smuggled + b".\r\n" + b"NOOP\r\n"
    reply = client.trickle(data) if trickle else client.send(data)
    assert reply == b"250 2.0.0 Message accepted\r\n250 2.0.0 OK\r\n"
    assert len(client.of(DataEnd)) == 1
    assert len(client.of(MailFrom)) == 1  # only the real one
    assert client.body == unstuffed(data)
    assert b"MAIL FROM:<evil@example.net>" in client.body
    assert client.of(DataEnd)[0].bare_newline is bare


def test_bare_newline_flag_after_trickled_data() -> None:
    client = ready(setup=IN_DATA)
    client.trickle(b"line one\r\nline\rtwo\r\n.\r\n")
    assert client.body == b"line one\r\nline\rtwo\r\n"
    assert client.of(DataEnd)[0].bare_newline


def test_clean_message_has_no_bare_newline_flag() -> None:
    client = ready(setup=IN_DATA)
    client.trickle(b"a\r\n\r\n.b\r\n..\r\n.\r\n")
    assert not client.of(DataEnd)[0].bare_newline


def test_terminator_split_across_receives_is_found() -> None:
    end = b"body\r\n.\r\n"
    for cut in range(len(end) + 1):
        client = ready(setup=IN_DATA)
        assert client.send(end[:cut]) + client.send(end[cut:]) == b"250 2.0.0 Message accepted\r\n"
        assert client.body == b"body\r\n"


def test_data_is_streamed_not_buffered() -> None:
    client = ready(SmtpConfig(hostname="mx.test", max_message_size=0), setup=IN_DATA)
    for _ in range(200):
        client.send(b"x" * 1000 + b"\r\n")
        assert client.core.buffered <= 2
    client.send(b".\r\n")
    assert all(len(chunk.data) <= 1002 for chunk in client.of(DataChunk))
    assert client.of(DataEnd)[0].size == 200 * 1002


def test_oversized_message_is_read_to_the_end_and_flagged() -> None:
    client = ready(setup=IN_DATA)
    reply = client.send(b"a" * 600 + b"\r\n")
    reply += client.send(b"b" * 600 + b"\r\n.\r\n" + b"NOOP\r\n")
    assert reply == (
        b"552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 OK\r\n"
    )
    assert len(client.body) <= CFG.max_message_size
    assert client.of(DataEnd)[0].oversized
    assert client.core.sender is None


def test_data_start_answered_2xx_is_a_usage_error() -> None:
    core = SmtpServerCore(CFG)
    core.receive(IN_DATA)
    for event in core.events():
        if isinstance(event, DataStart):
            with pytest.raises(SmtpUsageError):
                core.send(R.OK)
            break
        core.send(policy(core, event))  # type: ignore[arg-type]


def test_send_without_a_pending_event_is_a_usage_error() -> None:
    with pytest.raises(SmtpUsageError):
        SmtpServerCore(CFG).send(R.OK)


def test_dot_reader_keeps_at_most_two_octets() -> None:
    reader = DotReader()
    assert reader.read(b"abc\r\n.") == (b"abc\r\n", 5, False)
    assert reader.read(b".") == (b"", 0, False)
    assert reader.read(b".\r") == (b"", 0, False)
    assert reader.read(b".\r\n") == (b"", 3, True)


# --- BDAT ------------------------------------------------------------------------------------

IN_TX = EHLO + MAIL + RCPT


def test_bdat_reads_exact_octets_across_receives() -> None:
    client = ready(setup=IN_TX)
    assert client.send(b"BDAT 10\r\n0123") == b""
    assert client.send(b"45678") == b""
    assert client.send(b"9NOOP\r\n") == b"250 2.0.0 Chunk accepted\r\n250 2.0.0 OK\r\n"
    assert client.body == b"0123456789"
    assert client.of(BdatEnd) == [BdatEnd(10, False, 10, False, False)]


def test_bdat_payload_that_looks_like_commands_is_data() -> None:
    client = ready(setup=IN_TX)
    payload = b"QUIT\r\n.\r\nRSET\r\n"
    reply = client.send(b"BDAT %d LAST\r\n" % len(payload) + payload)
    assert reply == b"250 2.0.0 Message accepted\r\n"
    assert client.body == payload
    assert not client.of(Quit) and not client.of(Rset)


def test_bdat_last_ends_the_transaction() -> None:
    client = ready(setup=IN_TX)
    reply = client.send(b"BDAT 3\r\nabcBDAT 2 last\r\nde")
    assert reply == b"250 2.0.0 Chunk accepted\r\n250 2.0.0 Message accepted\r\n"
    assert client.body == b"abcde"
    assert client.of(BdatEnd)[-1] == BdatEnd(2, True, 5, False, False)
    assert client.core.sender is None
    assert client.send(MAIL) == b"250 2.1.0 Sender OK\r\n"


def test_bdat_zero_last_ends_the_message() -> None:
    client = ready(setup=IN_TX)
    assert client.send(b"BDAT 4\r\nabcdBDAT 0 LAST\r\n") == (
        b"250 2.0.0 Chunk accepted\r\n250 2.0.0 Message accepted\r\n"
    )
    assert client.body == b"abcd"


def test_bdat_byte_by_byte() -> None:
    client = ready(setup=IN_TX)
    reply = client.trickle(b"BDAT 5\r\nhelloBDAT 3 LAST\r\n!\r\n")
    assert reply == b"250 2.0.0 Chunk accepted\r\n250 2.0.0 Message accepted\r\n"
    assert client.body == b"hello!\r\n"
    assert not client.of(BdatEnd)[-1].bare_newline  # the CRLF split across pieces is whole


def test_bdat_ending_in_a_lone_cr_is_flagged() -> None:
    client = ready(setup=IN_TX)
    client.trickle(b"BDAT 3 LAST\r\nab\r")
    assert client.body == b"ab\r"
    assert client.of(BdatEnd)[-1].bare_newline


def test_bdat_without_transaction_is_read_then_refused() -> None:
    client = ready()
    reply = client.send(b"BDAT 12 LAST\r\nRSET\r\nQUIT\r\n" + b"NOOP\r\n")
    assert reply == b"503 5.5.1 Send MAIL first\r\n250 2.0.0 OK\r\n"
    assert client.body == b"" and not client.of(Quit)


def test_bdat_without_recipient_is_read_then_refused() -> None:
    client = ready(setup=EHLO + MAIL)
    assert client.send(b"BDAT 3\r\nxyzNOOP\r\n") == b"554 5.5.1 No valid recipients\r\n250 2.0.0 OK\r\n"


def test_bdat_after_a_refused_chunk_is_read_then_refused() -> None:
    def refuse_chunks(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
        if isinstance(event, BdatEnd):
            return Reply(451, "4.3.0", "Spool trouble")
        return policy(core, event)

    client = Client(answer=refuse_chunks)
    client.send(IN_TX)
    reply = client.send(b"BDAT 4\r\nabcdBDAT 4 LAST\r\nefghNOOP\r\n")
    assert reply == b"451 4.3.0 Spool trouble\r\n503 5.5.1 Send MAIL first\r\n250 2.0.0 OK\r\n"
    assert client.body == b"abcd"


def test_bdat_oversized_is_read_and_flagged() -> None:
    client = ready(setup=IN_TX)
    reply = client.send(b"BDAT 800\r\n" + b"a" * 800 + b"BDAT 800 LAST\r\n" + b"b" * 800)
    assert reply == (
        b"250 2.0.0 Chunk accepted\r\n552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    )
    assert client.of(BdatEnd)[-1].oversized
    assert len(client.body) == 800


def test_data_and_rcpt_after_bdat_are_refused() -> None:
    client = ready(setup=IN_TX + b"BDAT 1\r\nx")
    assert client.send(b"DATA\r\n") == b"503 5.5.1 DATA cannot be mixed with BDAT\r\n"
    assert client.send(RCPT) == b"503 5.5.1 Command not allowed after BDAT\r\n"


def test_bdat_with_binarymime() -> None:
    client = ready(setup=EHLO + b"MAIL FROM:<a@b> BODY=BINARYMIME\r\n" + RCPT)
    assert client.send(b"BDAT 3 LAST\r\n\x00\r\xff") == b"250 2.0.0 Message accepted\r\n"
    assert client.body == b"\x00\r\xff"
    assert client.of(BdatEnd)[0].bare_newline


def test_bdat_when_chunking_is_off_is_read_then_refused() -> None:
    client = ready(SmtpConfig(hostname="mx.test", chunking=False), setup=IN_TX)
    assert client.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n") == b"502 5.5.1 Command not implemented\r\n250 2.0.0 OK\r\n"
    assert not client.of(Quit)


# --- STARTTLS --------------------------------------------------------------------------------


def test_starttls_injection_is_discarded() -> None:
    client = ready()
    assert client.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n") == (
        b"220 2.0.0 Ready to start TLS\r\n"
    )
    client.core.receive(b"NOOP\r\n")  # still plaintext, before the handshake
    assert client.drain() == b""
    client.core.tls_established()
    assert client.drain() == b""
    assert not client.of(Rset) and not client.of(Noop) and len(client.of(MailFrom)) == 0
    assert client.core.tls_active and client.core.helo is None
    assert client.send(MAIL) == b"503 5.5.1 Send EHLO or HELO first\r\n"
    reply = client.send(EHLO)
    assert b"STARTTLS" not in reply and reply.endswith(b"250 AUTH PLAIN LOGIN\r\n")


def test_starttls_forgets_the_transaction() -> None:
    client = ready(setup=EHLO + MAIL)
    client.send(b"STARTTLS\r\n")
    client.core.tls_established()
    assert client.core.sender is None


def test_starttls_refused_by_adapter_goes_on_in_plaintext() -> None:
    def refuse_tls(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
        return R.TLS_UNAVAILABLE if isinstance(event, StartTls) else policy(core, event)

    client = Client(answer=refuse_tls)
    client.send(EHLO)
    assert client.send(b"STARTTLS\r\nNOOP\r\n") == (
        b"454 4.7.0 TLS not available due to temporary reason\r\n250 2.0.0 OK\r\n"
    )
    assert not client.core.tls_active


def test_starttls_without_certificate_or_twice_is_refused() -> None:
    plain = ready(SmtpConfig(hostname="mx.test"))
    assert plain.send(b"STARTTLS\r\n") == b"502 5.5.1 Command not implemented\r\n"
    assert ready(TLS).send(b"STARTTLS\r\n") == b"503 5.5.1 TLS already active\r\n"


def test_tls_established_without_starttls_is_a_usage_error() -> None:
    with pytest.raises(SmtpUsageError):
        SmtpServerCore(CFG).tls_established()


def test_client_closing_during_handshake_wait() -> None:
    client = ready()
    client.send(b"STARTTLS\r\n")
    client.core.receive(b"")
    client.drain()
    assert isinstance(client.events[-1], ConnectionClosed)


# --- AUTH ------------------------------------------------------------------------------------


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_plain_with_initial_response() -> None:
    client = ready(TLS)
    reply = client.send(b"AUTH PLAIN " + b64(b"admin\0alice\0secret") + b"\r\n")
    assert reply == b"235 2.7.0 Authentication successful\r\n"
    assert client.events[-1] == AuthCredentials("PLAIN", "admin", "alice", "secret")
    assert "secret" not in repr(client.events[-1])
    assert client.core.authenticated and client.core.authenticated_user == "alice"
    assert b"AUTH" not in client.send(EHLO)  # RFC 4954 §4: no second AUTH


def test_auth_plain_with_empty_challenge() -> None:
    client = ready(TLS)
    assert client.send(b"AUTH plain\r\n") == b"334 \r\n"
    assert client.send(b64(b"\0alice\0wrong") + b"\r\n") == (
        b"535 5.7.8 Authentication credentials invalid\r\n"
    )
    assert not client.core.authenticated
    assert client.send(b"AUTH PLAIN " + b64(b"\0alice\0secret") + b"\r\n").startswith(b"235")


def test_auth_initial_response_equals_sign_means_empty() -> None:
    client = ready(TLS)
    assert client.send(b"AUTH PLAIN =\r\n") == b"501 5.5.2 Malformed authentication message\r\n"


def test_auth_login_asks_for_username_then_password() -> None:
    client = ready(TLS)
    assert client.send(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert client.send(b64(b"alice") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert client.send(b64(b"secret") + b"\r\n") == b"235 2.7.0 Authentication successful\r\n"
    assert client.events[-1] == AuthCredentials("LOGIN", "", "alice", "secret")


def test_auth_login_with_initial_username() -> None:
    client = ready(TLS)
    assert client.send(b"AUTH LOGIN " + b64(b"alice") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert client.trickle(b64(b"secret") + b"\r\n") == b"235 2.7.0 Authentication successful\r\n"


def test_auth_cancelled_with_star() -> None:
    client = ready(TLS)
    client.send(b"AUTH LOGIN\r\n")
    assert client.send(b"*\r\n") == b"501 5.0.0 Authentication cancelled\r\n"
    assert client.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"  # back to commands


@pytest.mark.parametrize("bad", [b"!!!", b"YWJj=", b"YWJj==", b"YWI", b"YW Jj", b"\xc3\xa9"])
def test_auth_bad_base64_is_refused(bad: bytes) -> None:
    client = ready(TLS)
    assert client.send(b"AUTH PLAIN " + bad + b"\r\n").startswith(b"50")
    client.send(b"AUTH LOGIN\r\n")
    assert client.send(bad + b"\r\n").startswith(b"50")
    assert client.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"


def test_auth_malformed_plain_message_is_refused() -> None:
    client = ready(TLS)
    for message in (b"alice\0secret", b"\0\0secret", b"a\0b\0c\0d", b"\0alice\0\xff"):
        assert client.send(b"AUTH PLAIN " + b64(message) + b"\r\n") == (
            b"501 5.5.2 Malformed authentication message\r\n"
        )


def test_auth_unknown_mechanism_and_wrong_moments() -> None:
    client = ready(TLS)
    assert client.send(b"AUTH CRAM-MD5\r\n") == b"504 5.5.4 Unrecognized authentication mechanism\r\n"
    assert client.send(b"AUTH\r\n") == b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
    client.send(MAIL)
    assert client.send(b"AUTH PLAIN\r\n") == b"503 5.5.1 AUTH not allowed during a mail transaction\r\n"


def test_auth_twice_is_refused() -> None:
    client = ready(TLS)
    client.send(b"AUTH PLAIN " + b64(b"\0alice\0secret") + b"\r\n")
    assert client.send(b"AUTH PLAIN\r\n") == b"503 5.5.1 Already authenticated\r\n"


def test_auth_withdrawn_by_adapter_is_not_offered() -> None:
    client = Client(TLS)
    client.core.allow_auth = False
    assert b"AUTH" not in client.send(EHLO)
    assert client.send(b"AUTH PLAIN\r\n") == b"502 5.5.1 Command not implemented\r\n"


def test_auth_over_plaintext_when_allowed() -> None:
    client = ready(SmtpConfig(hostname="mx.test", auth_requires_tls=False, auth_mechanisms=("PLAIN",)))
    assert client.send(EHLO).endswith(b"250 AUTH PLAIN\r\n")
    assert client.send(b"AUTH LOGIN\r\n").startswith(b"504 5.5.4")


def test_auth_succeeded_names_the_canonical_user() -> None:
    client = ready(TLS)
    client.send(b"AUTH PLAIN " + b64(b"\0Alice\0secret") + b"\r\n")
    client.core.auth_succeeded("alice@mx.test")
    assert client.core.authenticated_user == "alice@mx.test"


def test_sasl_answer_line_too_long_ends_the_exchange() -> None:
    client = ready(TLS)
    client.send(b"AUTH PLAIN\r\n")
    assert client.send(b"A" * 20000 + b"\r\n") == b"500 5.5.6 Line too long\r\n"
    assert client.send(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"


# --- LMTP ------------------------------------------------------------------------------------


def test_lmtp_session_gives_one_reply_per_recipient() -> None:
    client = Client(LMTP)
    assert client.send(b"LHLO client.example\r\n").startswith(
        b"250-mx.test greets client.example\r\n250-PIPELINING\r\n"
    )
    assert client.events[-1] == Helo("client.example", extended=True, lmtp=True)
    reply = client.send(
        MAIL
        + b"RCPT TO:<bob@mx.test>\r\n"
        + b"RCPT TO:<nobody@mx.test>\r\n"
        + b"RCPT TO:<full@mx.test>\r\n"
        + b"DATA\r\nhi\r\n.\r\n"
    )
    assert reply == (
        b"250 2.1.0 Sender OK\r\n"
        b"250 2.1.5 Recipient OK\r\n"
        b"550 5.1.1 No such user\r\n"
        b"250 2.1.5 Recipient OK\r\n"
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
        b"250 2.0.0 Message accepted\r\n"
        b"452 4.2.2 Mailbox full\r\n"
    )
    assert client.core.sender is None


def test_lmtp_refuses_helo_and_ehlo_and_smtp_refuses_lhlo() -> None:
    lmtp = Client(LMTP)
    assert lmtp.send(EHLO + b"HELO c\r\n") == b"500 5.5.2 Syntax error, command unrecognized\r\n" * 2
    assert lmtp.send(MAIL) == b"503 5.5.1 Send LHLO first\r\n"
    assert Client().send(b"LHLO c\r\n").startswith(b"500 5.5.2")


def test_lmtp_single_reply_is_repeated_for_every_recipient() -> None:
    core = SmtpServerCore(LMTP)
    core.receive(b"LHLO c\r\n" + MAIL + RCPT + b"RCPT TO:<carol@mx.test>\r\nDATA\r\nx\r\n.\r\n")
    for event in core.events():
        if isinstance(event, DataEnd):
            assert core.send(Reply(451, "4.3.0", "Later")) == b"451 4.3.0 Later\r\n" * 2
        elif event.needs_reply:
            core.send(policy(core, event))  # type: ignore[arg-type]


def test_lmtp_wrong_number_of_replies_is_a_usage_error() -> None:
    core = SmtpServerCore(LMTP)
    core.receive(b"LHLO c\r\n" + MAIL + RCPT + b"DATA\r\nx\r\n.\r\n")
    for event in core.events():
        if isinstance(event, DataEnd):
            with pytest.raises(SmtpUsageError):
                core.send([R.OK, R.OK])
            assert core.send([R.OK]) == b"250 2.0.0 OK\r\n"
        elif event.needs_reply:
            core.send(policy(core, event))  # type: ignore[arg-type]


def test_lmtp_bdat_last_gives_one_reply_per_recipient() -> None:
    client = Client(LMTP)
    client.send(b"LHLO c\r\n" + MAIL + RCPT + b"RCPT TO:<full@mx.test>\r\n")
    assert client.send(b"BDAT 2\r\nabBDAT 1 LAST\r\nc") == (
        b"250 2.0.0 Chunk accepted\r\n250 2.0.0 Message accepted\r\n452 4.2.2 Mailbox full\r\n"
    )


def test_smtp_reply_list_is_a_usage_error() -> None:
    core = SmtpServerCore(CFG)
    core.receive(EHLO)
    next(core.events())
    with pytest.raises(SmtpUsageError):
        core.send([R.HELLO])


# --- reply formatting ------------------------------------------------------------------------


def test_multiline_reply_repeats_code_and_status() -> None:
    reply = Reply(250, "2.0.0", "one\ntwo\nthree")
    assert format_reply(reply) == b"250-2.0.0 one\r\n250-2.0.0 two\r\n250 2.0.0 three\r\n"
    assert format_reply(reply, enhanced=False) == b"250-one\r\n250-two\r\n250 three\r\n"


def test_reply_text_cannot_inject_lines_or_raw_bytes() -> None:
    assert format_reply(Reply(550, "5.1.1", "x\r550 y\x00ü")) == b"550 5.1.1 x?550 y??\r\n"


def test_reply_line_is_cut_to_512_octets() -> None:
    line = format_reply(Reply(250, "2.0.0", "x" * 1000))
    assert len(line) == 512 and line.endswith(b"\r\n")


@pytest.mark.parametrize(
    ("code", "status"), [(250, "5.0.0"), (199, None), (600, None), (354, "2.0.0"), (250, "2.0")]
)
def test_reply_refuses_mismatched_status(code: int, status: str | None) -> None:
    with pytest.raises(ValueError):
        Reply(code, status, "x")


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="smtp.max_line"):
        SmtpConfig(max_line=100)
    with pytest.raises(ValueError, match="smtp.auth_mechanisms"):
        SmtpConfig(auth_mechanisms=("CRAM-MD5",))
    with pytest.raises(ValueError, match="smtp.tls_required"):
        SmtpConfig(tls_required=True)
