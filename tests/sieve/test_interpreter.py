"""The interpreter: each test, comparator, match type, address part and extension, and the
implicit keep (RFC 5228 §2.10) with its cancellation."""

from __future__ import annotations

import time

import pytest

from postbote.sieve import SieveError, parse
from postbote.sieve.interpreter import (
    Discard, FileInto, Keep, Limits, Message, Redirect, Reject, Vacation, run,
)
from postbote.sieve.match import glob

RAW = (b"From: \"Coyote\" <wile+acme@Example.COM>\r\n"
       b"To: me@example.net, Other <other@example.org>\r\n"
       b"Cc: undisclosed-recipients:;\r\n"
       b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from the desert\r\n"
       b"X-Spam-Score: 7\r\n"
       b"X-Spam-Score: 12\r\n"
       b"Message-ID: <m1@example.com>\r\n"
       b"Content-Type: multipart/alternative; boundary=BB\r\n"
       b"\r\n"
       b"--BB\r\nContent-Type: text/plain; charset=utf-8\r\n"
       b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
       b"Buy an anvil, caf=C3=A9 included\r\n"
       b"--BB\r\nContent-Type: text/html\r\n\r\n<b>rocket skates</b>\r\n--BB--\r\n")


def message(raw: bytes = RAW, mail_from: str = "wile+acme@example.com",
            rcpt_to: str = "me+lists@example.net", **extra: object) -> Message:
    from postbote.mail.headers import scan_header
    fields, _ = scan_header(raw, 0, len(raw))
    return Message(fields, len(raw), mail_from, rcpt_to, raw, **extra)  # type: ignore[arg-type]


def actions(text: str, msg: Message | None = None) -> list[object]:
    outcome = run(parse(text), msg or message())
    assert outcome.error is None, outcome.error
    return outcome.actions


def true_(test: str, require: str = "", msg: Message | None = None) -> bool:
    req = f"require [{require}];\n" if require else ""
    acts = actions(f"{req}if {test} {{ discard; }}", msg)
    return acts == [Discard()]


# -- implicit keep and the basic actions ----------------------------------------------------

def test_empty_script_keeps_implicitly() -> None:
    assert actions("") == [Keep()]


def test_fileinto_cancels_implicit_keep_and_copy_does_not() -> None:
    assert actions('require "fileinto"; fileinto "A";') == [FileInto("A")]
    assert actions('require ["fileinto", "copy"]; fileinto :copy "A";') == [FileInto("A"), Keep()]


def test_redirect_discard_reject_cancel_implicit_keep() -> None:
    assert actions('redirect "x@example.org";') == [Redirect("x@example.org")]
    assert actions('require "copy"; redirect :copy "x@example.org";') == [
        Redirect("x@example.org", True), Keep()]
    assert actions("discard;") == [Discard()]
    assert actions('require "reject"; reject "no";') == [Reject("no")]
    assert actions('require "ereject"; ereject "no";') == [Reject("no", True)]


def test_explicit_keep_after_discard_keeps() -> None:
    assert actions("discard; keep;") == [Keep()]


def test_stop_ends_the_script_and_implicit_keep_still_applies() -> None:
    assert actions('stop; discard;') == [Keep()]
    assert actions('require "fileinto"; fileinto "A"; stop; fileinto "B";') == [FileInto("A")]


def test_same_mailbox_twice_is_delivered_once() -> None:
    script = 'require "fileinto"; fileinto "A"; fileinto "A"; redirect "a@b.c"; redirect "A@B.C";'
    assert actions(script) == [FileInto("A"), Redirect("a@b.c")]


def test_if_elsif_else_runs_exactly_one_branch() -> None:
    script = ('require "fileinto"; if false { fileinto "1"; } elsif true { fileinto "2"; }'
              ' elsif true { fileinto "3"; } else { fileinto "4"; }')
    assert actions(script) == [FileInto("2")]
    assert actions('require "fileinto"; if false {} else { fileinto "4"; }') == [FileInto("4")]


# -- tests ----------------------------------------------------------------------------------

def test_header_is_decoded_per_rfc2047_and_matched_case_insensitively() -> None:
    assert true_('header :is "subject" "grüße from the desert"')
    assert not true_('header :is :comparator "i;octet" "subject" "grüße from the desert"')
    assert true_('header :is :comparator "i;octet" "subject" "Grüße from the desert"')
    assert true_('header :contains "SUBJECT" "DESERT"')
    assert not true_('header :contains "x-missing" ""')


def test_matches_wildcards_and_escapes() -> None:
    # RFC 4790: "?" is one octet, and "ü" and "ß" are two octets each in UTF-8
    assert true_('header :matches "subject" "gr????e*desert"')
    assert not true_('header :matches "subject" "gr??e*desert"')
    assert true_('header :matches "subject" "gr*e*desert"')
    assert glob("a*b", "a\\*b") and not glob("axb", "a\\*b")
    assert glob("a?", "a\\?") and not glob("ab", "a\\?")
    assert glob("", "*") and not glob("", "?")


def test_matches_with_many_wildcards_is_not_exponential() -> None:
    start = time.monotonic()
    assert not glob("a" * 5000, "*a" * 200 + "b")
    assert time.monotonic() - start < 5


def test_address_parts_and_subaddress() -> None:
    assert true_('address :is :all "from" "wile+acme@example.com"')
    assert true_('address :is :localpart "from" "wile+acme"')
    assert true_('address :is :domain "to" "example.org"')
    assert true_('address :is :user "from" "wile"', '"subaddress"')
    assert true_('address :is :detail "from" "acme"', '"subaddress"')
    assert not true_('address :matches :detail "to" "*"', '"subaddress"')  # no "+" at all
    assert not true_('address :contains "cc" "a"')  # a group with no members


def test_envelope_from_and_to_with_subaddress() -> None:
    assert true_('envelope :is "from" "wile+acme@example.com"', '"envelope"')
    assert true_('envelope :is :detail "to" "lists"', '"envelope", "subaddress"')
    assert true_('envelope :is "from" ""', '"envelope"', message(mail_from=""))


def test_exists_size_true_false_not_allof_anyof() -> None:
    assert true_('exists ["From", "Subject"]')
    assert not true_('exists ["From", "X-None"]')
    assert true_(f"size :over {len(RAW) - 1}") and not true_(f"size :over {len(RAW)}")
    assert true_(f"size :under {len(RAW) + 1}") and not true_(f"size :under {len(RAW)}")
    assert true_("allof (true, not false)") and not true_("allof (true, false)")
    assert true_("anyof (false, true)") and not true_("anyof (false, false)")


def test_comparators() -> None:
    assert true_('header :is :comparator "i;ascii-casemap" "x-spam-score" "7"')
    assert true_('header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "10"',
                 '"relational", "comparator-i;ascii-numeric"')
    assert not true_('header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "12"',
                     '"relational", "comparator-i;ascii-numeric"')
    # lexical order: "7" sorts after "10"
    assert true_('header :value "gt" "x-spam-score" "10"', '"relational"')


def test_relational_count() -> None:
    req = '"relational", "comparator-i;ascii-numeric"'
    assert true_('address :count "eq" :comparator "i;ascii-numeric" "to" "2"', req)
    assert true_('header :count "ge" :comparator "i;ascii-numeric" "x-spam-score" "2"', req)
    assert true_('header :count "eq" :comparator "i;ascii-numeric" "x-none" "0"', req)


def test_body_text_raw_and_content() -> None:
    assert true_('body :contains "café"', '"body"')
    assert true_('body :text :contains "rocket"', '"body"')
    assert not true_('body :content "text/plain" :contains "rocket"', '"body"')
    assert true_('body :raw :contains "caf=C3=A9"', '"body"')


# -- imap4flags, mailbox, vacation -----------------------------------------------------------

def test_imap4flags_internal_variable_and_flags_argument() -> None:
    script = ('require ["imap4flags", "fileinto"]; setflag "\\\\Seen"; addflag ["\\\\Flagged",'
              ' "work \\\\seen"]; removeflag "work"; fileinto "A"; keep :flags "x";'
              ' if hasflag :is "\\\\flagged" { fileinto "B"; }')
    assert actions(script) == [
        FileInto("A", frozenset({"\\Seen", "\\Flagged"})), Keep(frozenset({"x"})),
        FileInto("B", frozenset({"\\Seen", "\\Flagged"}))]


def test_implicit_keep_carries_the_current_flags() -> None:
    assert actions('require "imap4flags"; addflag "$Important";') == [
        Keep(frozenset({"$Important"}))]


def test_fileinto_create_and_mailboxexists() -> None:
    msg = message(mailboxes=frozenset({"INBOX", "Lists"}))
    assert actions('require ["fileinto", "mailbox"]; fileinto :create "New";') == [
        FileInto("New", create=True)]
    assert true_('mailboxexists "Lists"', '"mailbox"', msg)
    assert not true_('mailboxexists ["Lists", "Nope"]', '"mailbox"', msg)


def test_vacation_reply_with_defaults() -> None:
    acts = actions('require "vacation"; vacation "away";', message(my_addresses=("me@example.net",)))
    reply = acts[0]
    assert isinstance(reply, Vacation) and acts[1] == Keep()
    assert reply.recipient == "wile+acme@example.com"
    assert reply.subject == "Auto: Grüße from the desert" and reply.days == 7
    assert reply.in_reply_to == "<m1@example.com>"


@pytest.mark.parametrize("extra_header, mail_from, mine", [
    (b"", "", ("me@example.net",)),  # null sender
    (b"List-Id: <l.example.com>\r\n", "a@example.com", ("me@example.net",)),
    (b"Precedence: bulk\r\n", "a@example.com", ("me@example.net",)),
    (b"Auto-Submitted: auto-replied\r\n", "a@example.com", ("me@example.net",)),
    (b"", "a@example.com", ("someone@else.net",)),  # not addressed to the account
])
def test_vacation_is_not_sent(extra_header: bytes, mail_from: str, mine: tuple[str, ...]) -> None:
    msg = message(extra_header + RAW, mail_from=mail_from, rcpt_to="x@y.z", my_addresses=mine)
    assert actions('require "vacation"; vacation "away";', msg) == [Keep()]


def test_vacation_addresses_argument_counts_as_mine() -> None:
    msg = message(rcpt_to="x@y.z", my_addresses=("nobody@y.z",))
    acts = actions('require "vacation"; vacation :addresses "other@example.org" :days 2 '
                   ':subject "Out" "away";', msg)
    assert isinstance(acts[0], Vacation) and acts[0].subject == "Out" and acts[0].days == 2


# -- runtime errors and limits ---------------------------------------------------------------

def test_runtime_error_falls_back_to_implicit_keep() -> None:
    outcome = run(parse('require ["reject", "fileinto"]; fileinto "A"; reject "no";'), message())
    assert outcome.actions == [Keep()] and "reject" in (outcome.error or "")
    outcome = run(parse('redirect "not an address";'), message())
    assert outcome.actions == [Keep()] and outcome.error


def test_too_many_redirects_is_a_runtime_error() -> None:
    script = " ".join(f'redirect "r{i}@example.org";' for i in range(5))
    outcome = run(parse(script), message(), Limits(max_redirects=4))
    assert outcome.actions == [Keep()] and "redirects" in (outcome.error or "")


def test_too_many_actions_is_a_runtime_error() -> None:
    script = 'require "fileinto";' + " ".join(f'fileinto "f{i}";' for i in range(40))
    outcome = run(parse(script), message(), Limits(max_actions=32))
    assert outcome.actions == [Keep()] and "actions" in (outcome.error or "")


# -- variables (RFC 5229) --------------------------------------------------------------------

def test_set_modifiers_and_expansion() -> None:
    script = ('require ["variables", "fileinto"]; set "a" "X"; set :lower :upperfirst "b" "hELLO";'
              ' set :length "n" "${b}!"; set :quotewildcard "q" "*?"; '
              'fileinto "${a}-${B}-${n}-${q}-${unknown}-${a.b}";')
    assert actions(script) == [FileInto("X-Hello-6-\\*\\?--${a.b}")]


def test_matches_sets_match_variables_leftmost_shortest() -> None:
    script = ('require ["variables", "fileinto"]; if address :matches "from" "*@*.*" '
              '{ fileinto "${1}|${2}|${3}|${0}"; }')
    assert actions(script) == [FileInto("wile+acme|Example|COM|wile+acme@Example.COM")]


def test_failed_matches_keeps_the_earlier_match_variables() -> None:
    script = ('require ["variables", "fileinto"]; if header :matches "subject" "*from*" {}'
              ' if header :matches "subject" "nope*" {} fileinto "${2}";')
    assert actions(script) == [FileInto(" the desert")]


def test_string_test_count_ignores_empty_strings() -> None:
    script = ('require ["variables", "relational", "fileinto"]; set "e" "";'
              ' if string :count "eq" ["${e}", "a", "b"] "2" { fileinto "two"; }')
    assert actions(script) == [FileInto("two")]


def test_invalid_variable_name_is_a_parse_error() -> None:
    with pytest.raises(SieveError) as info:
        parse('require "variables";\nset "a-b" "x";')
    assert info.value.line == 2 and "invalid variable name" in str(info.value)


def test_expansion_does_not_change_the_cached_script() -> None:
    script = parse('require ["variables", "fileinto"]; if header :matches "subject" "*" '
                   '{ fileinto "${1}"; }')
    first = run(script, message()).actions
    other = message(RAW.replace(b"from the desert", b"elsewhere"))
    assert run(script, other).actions != first
