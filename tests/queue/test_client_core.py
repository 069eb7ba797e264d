"""The sans-I/O SMTP client core: replies in, commands out, no sockets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postbote.smtp.client import (
    Answer,
    Envelope,
    Extensions,
    ProtocolError,
    ServerReply,
    SmtpClientCore,
    dot_stuff,
    xtext,
)

EHLO_REPLY = (b"250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
              b"250-SMTPUTF8\r\n250-DSN\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n")


def greeted(ehlo: bytes = EHLO_REPLY) -> SmtpClientCore:
    core = SmtpClientCore("client.example.org")
    core.receive(b"220 mx.example.com ESMTP\r\n")
    core.ehlo()
    core.receive(ehlo)
    core.events()
    return core


def test_greeting_split_over_many_reads_is_one_answer():
    core = SmtpClientCore("c")
    for b in b"220-first\r\n220 second\r\n":
        core.receive(bytes([b]))
    [ev] = core.events()
    assert ev == Answer("greeting", ServerReply(220, ("first", "second")))
    assert core.awaiting == 0


def test_ehlo_reply_gives_the_servers_extensions():
    core = greeted()
    ext = core.extensions
    assert ext.has("pipelining") and ext.has("CHUNKING") and ext.has("DSN")
    assert ext.size == 1000 and ext.auth == ("PLAIN", "LOGIN")


def test_pipelined_envelope_pairs_each_reply_with_its_command():
    core = greeted()
    env = Envelope("a@x.org", ("b@y.org", "c@y.org"), size=10)
    out = core.envelope(env)
    assert out == b"MAIL FROM:<a@x.org> SIZE=10\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\n"
    core.receive(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n")
    events = core.events()
    assert [e.command for e in events] == ["MAIL", "RCPT", "RCPT"]
    assert events[2].reply.code == 550 and events[2].reply.status == "5.1.1"


def test_mail_parameters_only_for_extensions_the_server_offers():
    env = Envelope("a@x.org", ("b@y.org",), size=5, body="8BITMIME", smtputf8=True, envid="id+1", ret="hdrs",
                   notify=("SUCCESS,FAILURE",), orcpt=("rfc822;b@y.org",))
    full = greeted()
    assert full.mail(env) == b"MAIL FROM:<a@x.org> SIZE=5 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1\r\n"
    assert full.rcpt(env, 0) == b"RCPT TO:<b@y.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.org\r\n"
    bare = greeted(b"250 mx.example.com\r\n")
    assert bare.mail(env) == b"MAIL FROM:<a@x.org>\r\n"
    assert bare.rcpt(env, 0) == b"RCPT TO:<b@y.org>\r\n"


def test_data_is_dot_stuffed_and_terminated():
    core = greeted()
    assert core.data_body(b"a\r\n.b\r\n..c\r\n") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert dot_stuff(b".first line") == b"..first line\r\n"
    assert dot_stuff(b"no final newline") == b"no final newline\r\n"


def test_bdat_sends_chunks_and_marks_the_last():
    core = greeted()
    assert core.bdat(b"hello") == b"BDAT 5 LAST\r\nhello"
    assert core.bdat(b"") == b"BDAT 0 LAST\r\n"
    core.receive(b"250 2.0.0 ok\r\n250 2.0.0 ok\r\n")
    assert [e.command for e in core.events()] == ["DATA-END", "DATA-END"]


def test_starttls_forgets_the_extensions_learnt_in_the_clear():
    core = greeted()
    core.starttls()
    core.receive(b"220 2.0.0 go ahead\r\n")
    assert core.events()[0].reply.code == 220
    core.tls_established()
    assert not core.extensions.has("PIPELINING")


def test_a_reply_nobody_asked_for_is_a_protocol_error():
    core = greeted()
    core.receive(b"250 surprise\r\n")
    [ev] = core.events()
    assert isinstance(ev, ProtocolError) and core.broken


def test_garbage_is_a_protocol_error_not_an_exception():
    core = SmtpClientCore("c")
    core.receive(b"HTTP/1.1 400 Bad Request\r\n")
    assert isinstance(core.events()[0], ProtocolError)


def test_multiline_reply_with_changing_code_is_a_protocol_error():
    core = SmtpClientCore("c")
    core.receive(b"220-a\r\n250 b\r\n")
    assert isinstance(core.events()[0], ProtocolError)


def test_whole_session_transcript():
    core = SmtpClientCore("client.example.org")
    sent = []
    core.receive(b"220 mx ESMTP\r\n")
    sent.append(core.ehlo())
    core.receive(b"250-mx\r\n250 PIPELINING\r\n")
    env = Envelope("", ("b@y.org",))
    sent.append(core.envelope(env))
    core.receive(b"250 ok\r\n250 ok\r\n")
    sent.append(core.data())
    core.receive(b"354 go\r\n")
    sent.append(core.data_body(b"Subject: x\r\n\r\nhi\r\n"))
    core.receive(b"250 queued\r\n")
    sent.append(core.quit())
    core.receive(b"221 bye\r\n")
    assert b"".join(sent) == (b"EHLO client.example.org\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n"
                              b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    assert [e.command for e in core.events()] == ["greeting", "EHLO", "MAIL", "RCPT", "DATA", "DATA-END", "QUIT"]


def test_xtext_encodes_plus_equals_and_non_printables():
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext("é") == "+C3+A9"


def test_extensions_of_a_reply_without_keywords():
    assert Extensions.parse(ServerReply(250, ("mx",))) == Extensions()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_no_exception_escapes_on_random_server_bytes(chunks):
    core = SmtpClientCore("c")
    core.ehlo()
    for chunk in chunks:
        core.receive(chunk)
    for ev in core.events():
        assert isinstance(ev, (Answer, ProtocolError))


def test_bytes_after_the_starttls_reply_are_refused():
    """RFC 3207 §4: plaintext after the 220 could be injected replies; the connection is unusable."""
    core = greeted()
    core.starttls()
    core.receive(b"220 2.0.0 go ahead\r\n250 injected\r\n")
    events = core.events()
    assert events[0].reply.code == 220 and isinstance(events[1], ProtocolError)


def test_bytes_arriving_later_before_tls_are_refused_too():
    core = greeted()
    core.starttls()
    core.receive(b"220 go ahead\r\n")
    core.events()
    core.receive(b"junk")
    assert isinstance(core.events()[0], ProtocolError)
