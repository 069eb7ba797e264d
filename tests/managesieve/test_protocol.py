"""The sans-I/O ManageSieve core, driven directly: byte-exact answers, every command in every
state, literals in both forms and any chunking, the bounds, and random input."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbote.managesieve.protocol import (
    Answered,
    Authenticate,
    Bye,
    CheckScript,
    ConnectionClosed,
    DeleteScript,
    GetScript,
    HaveSpace,
    ListScripts,
    Logout,
    No,
    Ok,
    PutScript,
    RenameScript,
    SetActive,
    SieveConfig,
    SieveCore,
    SieveState,
    SieveUsageError,
    StartTls,
    Unauthenticate,
    format_response,
    quote,
)

DEV = SieveConfig(allow_plaintext_auth=True, tls_available=True, sieve_extensions=("fileinto", "vacation"),
                  max_script_size=1000, max_line=256, max_string=1024)
REMOTE = SieveConfig(tls_available=True, sieve_extensions=("fileinto",))
PLAIN_IR = base64.b64encode(b"\0alice\0secret").decode()
SCRIPTS = {"one": "keep;\r\n"}


def answer(core: SieveCore, event: object) -> bytes:
    """A scripted adapter: alice/secret logs in, the store holds SCRIPTS, all goes well."""
    match event:
        case Answered(data=data):
            return data
        case Authenticate(password="secret"):
            return core.authenticated("alice@localhost")
        case Authenticate():
            return core.send(No("invalid user name or password"))
        case ListScripts():
            return core.send_listing([(name, name == "one") for name in SCRIPTS])
        case GetScript(name=name) if name in SCRIPTS:
            return core.send_script(SCRIPTS[name])
        case GetScript():
            return core.send(No("no such script", "NONEXISTENT"))
        case ConnectionClosed():
            return b""
        case _:
            return core.send(Ok())


def talk(core: SieveCore, data: bytes) -> bytes:
    core.receive(data)
    return b"".join(answer(core, event) for event in core.events())


def events(core: SieveCore, data: bytes) -> list[object]:
    core.receive(data)
    found = []
    for event in core.events():
        found.append(event)
        answer(core, event)
    return found


def logged_in(config: SieveConfig = DEV) -> SieveCore:
    core = SieveCore(config)
    core.greeting()
    assert talk(core, f'AUTHENTICATE "PLAIN" "{PLAIN_IR}"\r\n'.encode()) == b'OK "logged in"\r\n'
    return core


# --- responses -------------------------------------------------------------------------------


def test_responses_carry_code_and_quoted_text():
    assert format_response(Ok()) == b"OK\r\n"
    assert format_response(No("no such script", "NONEXISTENT")) == b'NO (NONEXISTENT) "no such script"\r\n'
    assert format_response(Bye("later", "TRYLATER")) == b'BYE (TRYLATER) "later"\r\n'
    assert format_response(Ok("done", "TAG", "x\"y")) == b'OK (TAG "x\\"y") "done"\r\n'
    assert format_response(No("too big", "QUOTA/MAXSIZE")) == b'NO (QUOTA/MAXSIZE) "too big"\r\n'


def test_text_with_a_line_break_is_sent_as_a_literal_so_it_cannot_inject_a_line():
    assert format_response(No("a\r\nOK")) == b'NO {5}\r\na\r\nOK\r\n'
    assert quote("x" * 1025).startswith(b"{1025}\r\n")


def test_malformed_response_code_is_a_programming_error():
    with pytest.raises(ValueError):
        format_response(No("x", "bad code"))


# --- greeting and capabilities -------------------------------------------------------------


def test_greeting_is_the_capability_list_then_ok():
    assert SieveCore(DEV).greeting() == (
        b'"IMPLEMENTATION" "postbote"\r\n"SASL" "PLAIN"\r\n"SIEVE" "fileinto vacation"\r\n'
        b'"STARTTLS"\r\n"UNAUTHENTICATE"\r\n"VERSION" "1.0"\r\nOK "localhost ManageSieve ready"\r\n')


def test_sasl_is_empty_before_tls_when_plain_needs_tls():
    greeting = SieveCore(REMOTE).greeting()
    assert b'"SASL" ""\r\n' in greeting and b'"STARTTLS"\r\n' in greeting


def test_starttls_then_capabilities_again_with_plain_and_without_starttls():
    core = SieveCore(REMOTE)
    core.greeting()
    assert events(core, b"STARTTLS\r\n") == [StartTls()]
    assert not core.tls_active
    caps = core.tls_established()
    assert caps.endswith(b'OK "TLS negotiation successful"\r\n')
    assert b'"SASL" "PLAIN"\r\n' in caps and b"STARTTLS" not in caps
    assert core.tls_active
    assert talk(core, b"STARTTLS\r\n") == b'NO "TLS is already active"\r\n'


def test_bytes_sent_behind_starttls_are_dropped():
    """CVE-2011-0411: plaintext pipelined after STARTTLS must not run inside TLS."""
    core = SieveCore(REMOTE)
    core.receive(b'STARTTLS\r\nAUTHENTICATE "PLAIN" "' + PLAIN_IR.encode() + b'"\r\n')
    assert [next(core.events())] == [StartTls()]
    assert core.send(Ok("go")) == b'OK "go"\r\n'
    core.receive(b"LISTSCRIPTS\r\n")
    assert list(core.events()) == []
    core.tls_established()
    assert list(core.events()) == []
    assert core.state is SieveState.NON_AUTHENTICATED


def test_starttls_refused_without_a_certificate():
    core = SieveCore(SieveConfig(allow_plaintext_auth=True))
    assert b"STARTTLS" not in core.greeting()
    assert talk(core, b"STARTTLS\r\n") == b'NO "STARTTLS is not available on this server"\r\n'


def test_capability_after_login_names_the_owner():
    core = logged_in()
    reply = talk(core, b"capability\r\n")
    assert b'"OWNER" "alice@localhost"\r\n' in reply
    assert b"STARTTLS" not in reply
    assert reply.endswith(b'OK "capability completed"\r\n')


# --- authentication --------------------------------------------------------------------------


def test_authenticate_plain_with_initial_response():
    core = SieveCore(DEV)
    assert events(core, f'AUTHENTICATE "PLAIN" "{PLAIN_IR}"\r\n'.encode()) == [
        Authenticate("", "alice", "secret")]
    assert core.state is SieveState.AUTHENTICATED


def test_authenticate_plain_with_continuation_in_a_literal():
    """RFC 5804 §2.1: the server sends an empty challenge string, the client a string."""
    core = SieveCore(DEV)
    assert talk(core, b'AUTHENTICATE "PLAIN"\r\n') == b'""\r\n'
    data = PLAIN_IR.encode()
    assert talk(core, b"{%d+}\r\n%s\r\n" % (len(data), data)) == b'OK "logged in"\r\n'
    assert core.state is SieveState.AUTHENTICATED


def test_authenticate_continuation_cancelled_with_star():
    core = SieveCore(DEV)
    talk(core, b'AUTHENTICATE "PLAIN"\r\n')
    assert talk(core, b'"*"\r\n') == b'NO "authentication cancelled"\r\n'
    assert core.state is SieveState.NON_AUTHENTICATED
    assert talk(core, b"NOOP\r\n") == b'OK "done"\r\n'


def test_wrong_password_answers_no_and_stays_unauthenticated():
    core = SieveCore(DEV)
    ir = base64.b64encode(b"\0alice\0wrong").decode()
    assert talk(core, f'AUTHENTICATE "PLAIN" "{ir}"\r\n'.encode()) == b'NO "invalid user name or password"\r\n'
    assert core.state is SieveState.NON_AUTHENTICATED


def test_plain_before_tls_from_a_network_is_encrypt_needed():
    core = SieveCore(REMOTE)
    reply = talk(core, f'AUTHENTICATE "PLAIN" "{PLAIN_IR}"\r\n'.encode())
    assert reply == b'NO (ENCRYPT-NEEDED) "PLAIN needs TLS: use STARTTLS first"\r\n'


@pytest.mark.parametrize("line, text", [
    (b'AUTHENTICATE "LOGIN"', b"unsupported SASL mechanism LOGIN, use PLAIN"),
    (b'AUTHENTICATE "PLAIN" "not base64!"', b"invalid base64 in SASL response"),
    (b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b"alice\0secret") + b'"', b"invalid PLAIN response"),
    (b"AUTHENTICATE PLAIN", b"usage: AUTHENTICATE mechanism [initial-response]"),
    (b"AUTHENTICATE", b"usage: AUTHENTICATE mechanism [initial-response]"),
])
def test_bad_authenticate_is_refused(line, text):
    reply = talk(SieveCore(DEV), line + b"\r\n")
    assert reply.startswith(b'NO "' + text)


def test_unauthenticate_returns_to_the_non_authenticated_state():
    core = logged_in()
    assert events(core, b"UNAUTHENTICATE\r\n") == [Unauthenticate()]
    assert core.state is SieveState.NON_AUTHENTICATED
    assert b"OWNER" not in talk(core, b"CAPABILITY\r\n")
    assert talk(core, b"LISTSCRIPTS\r\n") == b'NO "LISTSCRIPTS is only valid after authentication"\r\n'


# --- every command in every state --------------------------------------------------------------

AFTER_LOGIN = [b'HAVESPACE "a" 10', b'PUTSCRIPT "a" "keep;"', b'CHECKSCRIPT "keep;"', b"LISTSCRIPTS",
               b'SETACTIVE "a"', b'GETSCRIPT "a"', b'DELETESCRIPT "a"', b'RENAMESCRIPT "a" "b"',
               b"UNAUTHENTICATE"]
BEFORE_LOGIN = [b"STARTTLS", b'AUTHENTICATE "PLAIN" "' + PLAIN_IR.encode() + b'"']


@pytest.mark.parametrize("line", AFTER_LOGIN)
def test_script_commands_are_refused_before_login(line):
    core = SieveCore(DEV)
    name = line.split(b" ")[0].decode()
    assert talk(core, line + b"\r\n") == f'NO "{name} is only valid after authentication"\r\n'.encode()


@pytest.mark.parametrize("line", BEFORE_LOGIN)
def test_login_commands_are_refused_after_login(line):
    core = logged_in()
    name = line.split(b" ")[0].decode()
    assert talk(core, line + b"\r\n") == f'NO "{name} is only valid before authentication"\r\n'.encode()


@pytest.mark.parametrize("line, expected", [
    (b'HAVESPACE "a" 10', HaveSpace("a", 10)),
    (b'PUTSCRIPT "a" "keep;"', PutScript("a", "keep;")),
    (b'CHECKSCRIPT "keep;"', CheckScript("keep;")),
    (b"LISTSCRIPTS", ListScripts()),
    (b'SETACTIVE "a"', SetActive("a")),
    (b'SETACTIVE ""', SetActive(None)),
    (b'GETSCRIPT "a"', GetScript("a")),
    (b'DELETESCRIPT "a"', DeleteScript("a")),
    (b'RENAMESCRIPT "a" "b"', RenameScript("a", "b")),
    (b"logout", Logout()),
])
def test_each_script_command_becomes_its_event(line, expected):
    assert events(logged_in(), line + b"\r\n") == [expected]


@pytest.mark.parametrize("logged", [False, True])
def test_noop_capability_logout_work_in_both_states(logged):
    core = logged_in() if logged else SieveCore(DEV)
    assert talk(core, b"NOOP\r\n") == b'OK "done"\r\n'
    assert talk(core, b'NOOP "tag 1"\r\n') == b'OK (TAG "tag 1") "done"\r\n'
    assert talk(core, b"CAPABILITY\r\n").endswith(b'OK "capability completed"\r\n')
    assert talk(core, b"LOGOUT\r\nNOOP\r\n") == b"OK\r\n"
    assert core.state is SieveState.LOGOUT
    assert talk(core, b"NOOP\r\n") == b""


def test_listscripts_marks_the_active_script_and_getscript_sends_a_literal():
    core = logged_in()
    assert talk(core, b"LISTSCRIPTS\r\n") == b'"one" ACTIVE\r\nOK "listscripts completed"\r\n'
    assert talk(core, b'GETSCRIPT "one"\r\n') == b'{7}\r\nkeep;\r\n\r\nOK "getscript completed"\r\n'
    assert talk(core, b'GETSCRIPT "two"\r\n') == b'NO (NONEXISTENT) "no such script"\r\n'


def test_pipelined_commands_wait_for_each_answer():
    core = logged_in()
    core.receive(b'GETSCRIPT "one"\r\nNOOP\r\n')
    assert next(core.next_event() for _ in range(1)) == GetScript("one")
    assert core.next_event() is None  # the GETSCRIPT is unanswered
    core.send_script("keep;")
    assert core.next_event() == Answered(b'OK "done"\r\n', ok=True)


def test_answering_out_of_turn_is_a_usage_error():
    core = logged_in()
    with pytest.raises(SieveUsageError):
        core.send(Ok())
    core.receive(b"LISTSCRIPTS\r\n")
    next(core.events())
    with pytest.raises(SieveUsageError):
        core.send_script("x")
    with pytest.raises(SieveUsageError):
        core.tls_established()


def test_eof_ends_the_session():
    core = logged_in()
    core.receive(b"")
    assert list(core.events()) == [ConnectionClosed()]
    assert core.state is SieveState.LOGOUT


# --- literals ---------------------------------------------------------------------------------


SCRIPT = b'require "fileinto";\r\nif header :is "x" "{3}" {\r\n  fileinto "A";\r\n}\r\n'


@pytest.mark.parametrize("marker", [b"{%d+}", b"{%d}"])
def test_putscript_literal_in_both_forms_arrives_byte_exact(marker):
    core = logged_in()
    line = b'PUTSCRIPT "a" ' + marker % len(SCRIPT) + b"\r\n" + SCRIPT + b"\r\n"
    assert events(core, line) == [PutScript("a", SCRIPT.decode())]


def test_literal_split_into_single_bytes_is_the_same_command():
    core = logged_in()
    data = b'PUTSCRIPT {1+}\r\na {%d+}\r\n%s\r\nNOOP\r\n' % (len(SCRIPT), SCRIPT)
    found = []
    for i in range(len(data)):
        found += events(core, data[i:i + 1])
    assert found == [PutScript("a", SCRIPT.decode()), Answered(b'OK "done"\r\n', ok=True)]


def test_empty_literal_is_an_empty_string():
    assert events(logged_in(), b'CHECKSCRIPT {0+}\r\n\r\n') == [CheckScript("")]


def test_quoted_string_escapes():
    assert events(logged_in(), b'PUTSCRIPT "a\\"b\\\\c" "x"\r\n') == [PutScript('a"b\\c', "x")]


def test_script_literal_over_the_limit_is_refused_with_maxsize_and_skipped():
    core = logged_in()
    body = b"x" * 1001
    reply = talk(core, b'PUTSCRIPT "a" {1001+}\r\n' + body + b"\r\nNOOP\r\n")
    assert reply == (b'NO (QUOTA/MAXSIZE) "script too big: 1001 octets, at most 1000"\r\n'
                     b'OK "done"\r\n')
    assert core.buffered == 0


def test_oversized_literal_is_not_held_in_memory_while_it_arrives():
    core = logged_in()
    core.receive(b'PUTSCRIPT "a" {100000000+}\r\n')
    for _ in range(100):
        core.receive(b"y" * 10_000)
    assert core.buffered == 0
    assert list(core.events()) == []


def test_name_literal_over_the_string_limit_is_refused():
    reply = talk(logged_in(), b"GETSCRIPT {2000+}\r\n" + b"n" * 2000 + b"\r\n")
    assert reply == b'NO "string too big: 2000 octets, at most 1024"\r\n'


def test_havespace_beyond_the_size_limit_is_maxsize():
    assert talk(logged_in(), b'HAVESPACE "a" 5000\r\n') == (
        b'NO (QUOTA/MAXSIZE) "script too big: at most 1000 octets"\r\n')


# --- bad input -----------------------------------------------------------------------------


def test_overlong_line_is_refused_and_the_next_command_still_works():
    core = logged_in()
    reply = talk(core, b"NOOP " + b"x" * 400 + b"\r\nNOOP\r\n")
    assert reply == b'NO "line too long (at most 256 octets)"\r\nOK "done"\r\n'


def test_overlong_line_is_dropped_as_it_arrives():
    core = logged_in()
    for _ in range(50):
        core.receive(b"z" * 1000)
    assert core.buffered == 0
    assert talk(core, b"\r\nNOOP\r\n") == b'NO "line too long (at most 256 octets)"\r\nOK "done"\r\n'


def test_bad_command_with_a_literal_skips_the_literal_octets():
    core = logged_in()
    reply = talk(core, b'BOGUS "x" {6+}\r\nNOOP\r\n\r\nNOOP\r\n')
    assert reply == b'NO "unknown command BOGUS"\r\nOK "done"\r\n'


@pytest.mark.parametrize("line, text", [
    (b"", b"empty command"),
    (b"FROB", b"unknown command FROB"),
    (b'"NOOP"', b"a command starts with its name"),
    (b'NOOP "unterminated', b"unterminated quoted string"),
    (b'NOOP "bad \\n escape"', b"only "),
    (b'NOOP "a""b"', b"expected a space between arguments"),
    (b"NOOP {3+} x", b"a literal is {size} or {size+} at the end of a line"),
    (b'NOOP "x" ', b"trailing space"),
    (b'PUTSCRIPT "a"', b"usage: PUTSCRIPT name script"),
    (b'PUTSCRIPT "a" "b" "c"', b"usage: PUTSCRIPT name script"),
    (b"HAVESPACE a 10", b"usage: HAVESPACE name size"),
    (b'HAVESPACE "a" 99999999999', b"expected a number below 2^32"),
    (b'GETSCRIPT ""', b"script name must not be empty"),
    (b'GETSCRIPT "a\x01b"', b"script name must not contain control characters"),
    (b'GETSCRIPT "' + "\u2028".encode() + b'"', b"script name must not contain control characters"),
    (b'GETSCRIPT "' + b"n" * 129 + b'"', b"script name too long (at most 128 characters)"),
    (b'GETSCRIPT "\xff"', b"script name must be UTF-8"),
    (b'CHECKSCRIPT "\xfe"', b"a Sieve script must be UTF-8"),
    (b"LISTSCRIPTS now", b"usage: LISTSCRIPTS"),
])
def test_bad_input_gets_a_clear_no(line, text):
    core = logged_in()
    reply = talk(core, line + b"\r\n")
    assert reply.startswith(b'NO "' + text), reply
    assert talk(core, b"NOOP\r\n") == b'OK "done"\r\n'


def test_script_name_is_normalized_to_nfc():
    """RFC 5804 §1.6: names are compared in Net-Unicode (NFC) form."""
    decomposed = "e\u0301".encode()
    assert events(logged_in(), b'GETSCRIPT "' + decomposed + b'"\r\n') == [GetScript("\u00e9")]


def test_name_of_128_characters_is_accepted():
    name = "\u00e4" * 128
    data = name.encode()
    assert events(logged_in(), b"GETSCRIPT {%d+}\r\n%s\r\n" % (len(data), data)) == [GetScript(name)]


def test_bye_from_the_adapter_ends_the_session():
    core = logged_in()
    core.receive(b"LISTSCRIPTS\r\nNOOP\r\n")
    next(core.events())
    assert core.send(Bye("store gone", "TRYLATER")) == b'BYE (TRYLATER) "store gone"\r\n'
    assert core.state is SieveState.LOGOUT
    assert list(core.events()) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_no_exception_escapes_on_random_input(chunks):
    for core in (SieveCore(DEV), logged_in()):
        for chunk in chunks:
            core.receive(chunk)
            for event in core.events():
                answer(core, event)
        assert core.buffered <= DEV.max_line + DEV.max_script_size + 64


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(min_size=1, max_size=40))
def test_any_script_round_trips_through_a_literal(script, name):
    name = name.replace("\0", "")
    core = logged_in()
    data = script.encode()
    quoted = b"{%d+}\r\n" % len(name.encode()) + name.encode()
    found = events(core, b"PUTSCRIPT " + quoted + b" {%d+}\r\n" % len(data) + data + b"\r\n")
    assert len(found) == 1
    if isinstance(found[0], PutScript):
        assert found[0].script == script
