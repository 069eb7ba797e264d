"""Property tests for the SMTP core: no input (random bytes, random command mixes, any
chunking, any adapter answer) makes it raise or write a malformed reply, and message data
comes out exactly as RFC 5321 §4.5.2 says, however it is cut."""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbote.smtp import replies as R
from postbote.smtp.events import (
    Answered,
    BdatChunk,
    BdatEnd,
    ConnectionClosed,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    StartTls,
)
from postbote.smtp.protocol import SmtpConfig, SmtpServerCore
from postbote.smtp.replies import Reply
from tests.smtp.test_protocol import policy, unstuffed

CONFIGS = [
    SmtpConfig(hostname="mx.test", tls_available=True, max_message_size=300),
    SmtpConfig(hostname="mx.test", tls_active=True, auth_required=True, max_message_size=0),
    SmtpConfig(hostname="mx.test", lmtp=True, max_line=512, max_message_size=100),
    SmtpConfig(hostname="mx.test", enhancedstatuscodes=False, auth_requires_tls=False),
]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])([\x20-\x7e]*))?")
_STATUS = re.compile(rb"([245])\.[0-9]{1,3}\.[0-9]{1,3}( |\Z)")

Answer = Callable[[SmtpServerCore, Event], "Reply | list[Reply]"]


def check_replies(data: bytes, enhanced: bool) -> None:
    """Complete CRLF lines, at most 512 octets, printable ASCII, one code per multiline
    reply ending with "code SP", and an enhanced status of the right class on 4xx/5xx."""
    assert data.endswith(b"\r\n"), data
    open_code = None
    for line in data.split(b"\r\n")[:-1]:
        assert len(line) + 2 <= 512
        match = _LINE.fullmatch(line)
        assert match, line
        code, separator, text = match.groups()
        assert open_code in (None, code), data
        open_code = code if separator == b"-" else None
        if enhanced and code[:1] in b"45":
            status = _STATUS.match(text or b"")
            assert status and status.group(1) == code[:1], line
    assert open_code is None, data


def drive(core: SmtpServerCore, chunks: list[bytes], answer: Answer) -> bytes:
    """A careful adapter: answers what needs answering, checks every write, performs an
    accepted STARTTLS at once, and closes at the end."""
    out = bytearray()
    enhanced = core.config.enhancedstatuscodes
    for chunk in [*chunks, b""]:
        core.receive(chunk)
        for event in core.events():
            if isinstance(event, Answered):
                data = event.data
            elif event.needs_reply:
                reply = answer(core, event)
                data = core.send(reply)
                if isinstance(event, StartTls) and isinstance(reply, Reply) and reply.positive:
                    core.tls_established()
            else:
                continue
            check_replies(data, enhanced)
            out += data
    assert core.closed
    return bytes(out)


def refuse_tls(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
    """The scripted policy, but STARTTLS is refused: accepted, it drops what follows in the
    same packet, which differs by chunking by design."""
    return R.TLS_UNAVAILABLE if isinstance(event, StartTls) else policy(core, event)


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    pieces, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        pieces.append(data[pos : pos + size])
        pos += size
        i += 1
    return pieces


COMMANDS = [
    b"EHLO client.example\r\n",
    b"HELO c\r\n",
    b"LHLO c\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> SIZE=10 BODY=8BITMIME RET=FULL ENVID=x+2By\r\n",
    b"MAIL FROM:<a@b> BODY=BINARYMIME SMTPUTF8\r\n",
    "MAIL FROM:<jörg@bü.example> SMTPUTF8\r\n".encode(),
    b"RCPT TO:<bob@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@mx.test\r\n",
    b"RCPT TO:<nobody@mx.test>\r\n",
    b"RCPT TO:<full@mx.test>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n",
    b"hello\r\n..dots\r\n",
    b"\n.\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"x" * 400,
    b"BDAT 5\r\nabcde",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3 LAST\r\n\r\n.",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY bob\r\n",
    b"EXPN list\r\n",
    b"HELP\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"AUTH LOGIN\r\n",
    b"YWxpY2U=\r\n",
    b"c2VjcmV0\r\n",
    b"*\r\n",
    b"QUIT\r\n",
    b"\x00\xff\r\n",
]
command_mix = st.lists(st.sampled_from(COMMANDS) | st.binary(max_size=20), max_size=25).map(
    b"".join
)
chunk_sizes = st.lists(st.integers(1, 64), max_size=8)


@FAST
@given(st.binary(max_size=3000), chunk_sizes, st.sampled_from(CONFIGS))
def test_random_bytes_never_raise_and_replies_are_well_formed(
    data: bytes, sizes: list[int], config: SmtpConfig
) -> None:
    core = SmtpServerCore(config)
    core.greeting()
    drive(core, cut(data, sizes), policy)


@FAST
@given(command_mix, chunk_sizes, st.sampled_from(CONFIGS))
def test_command_mixes_never_raise_and_replies_are_well_formed(
    data: bytes, sizes: list[int], config: SmtpConfig
) -> None:
    core = SmtpServerCore(config)
    core.greeting()
    drive(core, cut(data, sizes), policy)


@FAST
@given(command_mix, chunk_sizes, st.sampled_from(CONFIGS))
def test_chunking_does_not_change_the_transcript(
    data: bytes, sizes: list[int], config: SmtpConfig
) -> None:
    whole = drive(SmtpServerCore(config), [data], refuse_tls)
    assert drive(SmtpServerCore(config), cut(data, sizes), refuse_tls) == whole


ANSWERS = [
    R.OK,
    R.HELLO,
    R.SENDER_OK,
    R.START_DATA,
    R.READY_TLS,
    R.AUTH_SUCCEEDED,
    R.AUTH_FAILED,
    R.CLOSING,
    R.BYE,
    Reply(550, "5.7.1", "Refused\nfor a reason"),
    Reply(451, "4.3.0", "Later"),
    Reply(252, None, ""),
]


@FAST
@given(command_mix, chunk_sizes, st.sampled_from(CONFIGS), st.data())
def test_any_adapter_answer_keeps_the_core_sound(
    data: bytes, sizes: list[int], config: SmtpConfig, draw: st.DataObject
) -> None:
    def answer(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
        reply = draw.draw(st.sampled_from(ANSWERS))
        if isinstance(event, DataStart) and reply.positive:
            return R.START_DATA
        return reply

    drive(SmtpServerCore(config), cut(data, sizes), answer)


body_parts = st.lists(
    st.sampled_from([b"a", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\r\n..", b" "]),
    max_size=60,
).map(b"".join)


@FAST
@given(body_parts, chunk_sizes)
def test_data_comes_out_unstuffed_exactly_once(body: bytes, sizes: list[int]) -> None:
    config = SmtpConfig(hostname="mx.test", max_message_size=0)
    stream = body + b"\r\n.\r\n"
    core = SmtpServerCore(config)
    events: list[Event] = []

    def record(core: SmtpServerCore, event: Event) -> Reply | list[Reply]:
        events.append(event)
        return policy(core, event)

    setup = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    chunks = cut(setup + stream, sizes)
    received = bytearray()
    for chunk in chunks:
        core.receive(chunk)
        for event in core.events():
            if isinstance(event, DataChunk):
                received += event.data
            elif event.needs_reply:
                core.send(record(core, event))
    expected = unstuffed(stream)
    assert bytes(received) == expected
    ends = [e for e in events if isinstance(e, DataEnd)]
    assert len(ends) <= 1
    if ends:
        pairs = expected.count(b"\r\n")
        bare = expected.count(b"\r") != pairs or expected.count(b"\n") != pairs
        assert ends[0] == DataEnd(len(expected), oversized=False, bare_newline=bare)


@FAST
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=6), chunk_sizes)
def test_bdat_chunks_come_out_exactly(payloads: list[bytes], sizes: list[int]) -> None:
    config = SmtpConfig(hostname="mx.test", max_message_size=0)
    stream = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
    for number, payload in enumerate(payloads, start=1):
        last = b" LAST" if number == len(payloads) else b""
        stream += b"BDAT %d%s\r\n" % (len(payload), last) + payload
    core = SmtpServerCore(config)
    received = bytearray()
    ends: list[BdatEnd] = []
    for chunk in [*cut(stream + b"NOOP\r\n", sizes), b""]:
        core.receive(chunk)
        for event in core.events():
            if isinstance(event, BdatChunk):
                received += event.data
            elif isinstance(event, BdatEnd):
                ends.append(event)
                core.send(policy(core, event))  # type: ignore[arg-type]
            elif event.needs_reply:
                core.send(policy(core, event))  # type: ignore[arg-type]
            else:
                assert isinstance(event, ConnectionClosed)
    assert bytes(received) == b"".join(payloads)
    assert [e.size for e in ends] == [len(p) for p in payloads]
    assert ends[-1].last and ends[-1].total == len(received)
