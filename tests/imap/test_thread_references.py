"""THREAD=REFERENCES (RFC 5256 §2.4): the algorithm on crafted messages, then the same
mailbox threaded by postbote and by a real Dovecot over IMAP, which must agree."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from postbote.imap import encode
from postbote.imap.sortthread import subject_info, thread_messages
from postbote.mail.message import parse_message
from postbote.store.types import Flag, Message
from tests.conftest import require
from tests.harness import RunningServer, server_settings
from tests.imap.conftest import PASSWORD, USER
from tests.peers import wait_until_ready

DOVECOT_IMAP = Path("/usr/lib/dovecot/imap")  # Debian dovecot-imapd's IMAP server program
START = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


def mail(mid: str | None, subject: str | None, minute: int | None = 0, refs: str = "",
         irt: str = "") -> bytes:
    """A message sent `minute` minutes after 2 Nov 2026 10:00 UTC (no Date header: None)."""
    lines = ["From: Bob <bob@example.com>", f"To: {USER}"]
    if subject is not None:
        lines.append(f"Subject: {subject}")
    if minute is not None:
        lines.append("Date: " + format_datetime(START + timedelta(minutes=minute)))
    if mid is not None:
        lines.append(f"Message-ID: <{mid}@example.com>")
    if refs:
        lines.append("References: " + " ".join(f"<{r}@example.com>" for r in refs.split()))
    if irt:
        lines.append(f"In-Reply-To: <{irt}@example.com>")
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


def thread(*raws: bytes) -> bytes:
    """THREAD REFERENCES over `raws` as messages 1, 2, …, as the server would send it.
    Their internal dates all lie after every Date header used here."""
    messages, parsed = [], {}
    for uid, raw in enumerate(raws, 1):
        messages.append(Message(id=uid, mailbox_id=1, uid=uid, modseq=uid, flags=Flag(0),
                                keywords=frozenset(), internaldate=1_900_000_000 + uid,
                                size=len(raw), blob_id=uid))
        parsed[uid] = parse_message(raw)
    return encode.thread(thread_messages(messages, parsed, "REFERENCES", {m.uid: m.uid for m in messages}))


# --- step 5 on crafted messages --------------------------------------------------------------


def test_replies_to_different_missing_parents_are_grouped_by_subject():
    got = thread(mail("r1", "Re: Offsite venue", 1, irt="gone1"),
                 mail("r2", "Re: Offsite venue", 2, refs="gone0 gone2"))
    assert got == b"* THREAD ((1)(2))\r\n"


def test_reply_without_references_goes_under_the_original_even_when_sent_earlier():
    got = thread(mail("a", "Re: Printer on floor 3", 1), mail("b", "Printer on floor 3", 5))
    assert got == b"* THREAD (2 1)\r\n"


def test_non_reply_is_preferred_over_an_earlier_reply_as_the_parent():
    got = thread(mail("r1", "Re: Printer", 1), mail("r2", "Re: Printer", 2),
                 mail("o", "Printer", 3), mail("r3", "Fwd: Printer", 4))
    assert got == b"* THREAD (3 (1)(2)(4))\r\n"


def test_references_without_a_valid_id_fall_back_to_in_reply_to():
    # RFC 5256 §2.4 step 1.A: no valid message-id in References: use In-Reply-To's first.
    broken = mail("r", "Different subject", 2, irt="o").replace(
        b"In-Reply-To:", b"References: no-brackets-here\r\nIn-Reply-To:")
    assert thread(mail("o", "Original", 1), broken) == b"* THREAD (1 2)\r\n"


def test_two_non_replies_with_one_subject_become_siblings_under_a_nil_parent():
    got = thread(mail("x", "Lunch", 1), mail("y", "LUNCH", 2), mail("z", "Re: Lunch", 3, refs="x"))
    assert got == b"* THREAD ((1 3)(2))\r\n"


def test_two_replies_with_one_subject_become_siblings_under_a_nil_parent():
    got = thread(mail("r1", "Re: Lunch", 2), mail("r2", "RE: Lunch", 1))
    assert got == b"* THREAD ((2)(1))\r\n"


def test_thread_rooted_in_a_dummy_takes_in_same_subject_threads():
    # 1 and 2 answer a message that is not there: a dummy root, whose subject is its first
    # child's; the original (3) and a stray reply (4) join it as siblings, not as parents.
    got = thread(mail("r1", "Re: Plan", 2, refs="gone"), mail("r2", "Re: Plan", 3, refs="gone"),
                 mail("p", "Plan", 1), mail("r3", "Re: Plan", 4, irt="elsewhere"))
    assert got == b"* THREAD ((3)(1)(2)(4))\r\n"


def test_two_dummy_rooted_threads_with_one_subject_merge_into_one():
    got = thread(mail("a1", "Re: Plan", 1, refs="gone1"), mail("a2", "Re: Plan", 3, refs="gone1"),
                 mail("b1", "Re: Plan", 2, refs="gone2"), mail("b2", "Re: Plan", 4, refs="gone2"))
    assert got == b"* THREAD ((1)(3)(2)(4))\r\n"


def test_only_roots_are_grouped_a_reply_inside_a_thread_stays_put():
    got = thread(mail("a", "Budget", 1), mail("b", "Re: Other", 2, refs="a"),
                 mail("c", "Other", 3))
    assert got == b"* THREAD (1 2)(3)\r\n"


def test_subjects_differing_only_by_re_fwd_list_tags_and_fwd_trailers_group():
    got = thread(mail("o", "Meeting", 1), mail("a", "Re: [team] Meeting", 2),
                 mail("b", "FWD: Meeting", 3), mail("c", "Meeting (fwd)", 4),
                 mail("d", "re: RE:  meeting", 5), mail("e", "[team] Re: Meeting", 6),
                 mail("f", "Fw[2]: Meeting", 7), mail("g", "[Fwd: Meeting]", 8))
    assert got == b"* THREAD (1 (2)(3)(4)(5)(6)(7)(8))\r\n"


def test_a_list_tag_alone_does_not_make_a_reply():
    got = thread(mail("a", "[dev] Release 2.0", 1), mail("b", "Release 2.0", 2))
    assert got == b"* THREAD ((1)(2))\r\n"


def test_messages_with_an_empty_base_subject_are_not_grouped():
    got = thread(mail("a", "Re:", 1), mail("b", None, 2), mail("c", "(fwd)", 3),
                 mail("d", "", 4), mail("e", "Re: ", 5))
    assert got == b"* THREAD (1)(2)(3)(4)(5)\r\n"


def test_reply_or_forward_follows_rfc5256_subject_grammar():
    assert subject_info("Re: [list] Topic") == ("TOPIC", True)
    assert subject_info("[list] Topic") == ("TOPIC", False)
    assert subject_info("Topic (fwd)") == ("TOPIC", True)
    assert subject_info("[Fwd: Re: Topic]") == ("TOPIC", True)
    assert subject_info("[Fwd: Topic]") == ("TOPIC", True)  # subj-fwd: a forward, as in Dovecot
    assert subject_info("Reply soon") == ("REPLY SOON", False)
    assert subject_info("[Fwd: Topic") == ("[FWD: TOPIC", False)


# --- steps 1 to 4 and 6 ------------------------------------------------------------------------


def test_siblings_sort_by_sent_date_then_mailbox_order():
    got = thread(mail("p", "Topic", 0), mail("c", "Re: Topic", 9, refs="p"),
                 mail("a", "Re: Topic", 5, refs="p"), mail("b", "Re: Topic", 5, refs="p"))
    assert got == b"* THREAD (1 (3)(4)(2))\r\n"


def test_missing_date_sorts_by_internal_date():
    # message 1 has no Date: its internal date (in 2030) puts it after message 2
    got = thread(mail("a", "One", None), mail("b", "Two", 1))
    assert got == b"* THREAD (2)(1)\r\n"


def test_dummy_with_one_child_is_replaced_by_it_and_sorts_by_it():
    got = thread(mail("a", "Alpha", 5), mail("b", "Re: Beta", 1, refs="gone1 gone2"))
    assert got == b"* THREAD (2)(1)\r\n"


def test_references_win_over_in_reply_to_and_a_truncated_chain_keeps_existing_links():
    # 5 cites only 1 and 3: 3 already has a parent (2), which a truncated list does not undo
    got = thread(mail("a", "Root", 1), mail("b", "Re: Root", 2, refs="a"),
                 mail("c", "Re: Root", 3, refs="a b", irt="a"),
                 mail("d", "Re: Root", 4, refs="c"), mail("e", "Re: Root", 5, refs="a c"))
    assert got == b"* THREAD (1 2 3 (4)(5))\r\n"


def test_duplicate_message_id_threads_as_a_message_of_its_own():
    got = thread(mail("a", "Alpha", 1), mail("a", "Beta", 2), mail("b", "Re: Alpha", 3, refs="a"))
    assert got == b"* THREAD (1 3)(2)\r\n"


def test_reference_loops_are_not_followed():
    # 1 makes (dummy) 2 its parent; 2 naming 1 as its parent would close a loop, so it stays a root
    got = thread(mail("a", "A", 1, refs="b"), mail("b", "B", 2, refs="a"))
    assert got == b"* THREAD (2 1)\r\n"


def test_a_references_chain_thousands_deep_threads_without_recursion():
    chain = " ".join(f"m{n}" for n in range(5000))
    got = thread(mail("top", "Deep", 1, refs=chain), mail("m10", "Re: Deep", 2, refs="m9"))
    assert got == b"* THREAD (2 1)\r\n"  # the dummies above message 2 are pruned


# --- against a real Dovecot --------------------------------------------------------------------

# (message, internal date or None). Sequence numbers are positions + 1, in both servers.
MAILBOX: list[tuple[bytes, str | None]] = [
    # 1-3: a thread whose second reply carries a Date before its parent's
    (mail("a1", "Quarterly budget", 60), None),
    (mail("a2", "Re: Quarterly budget", 120, refs="a1"), None),
    (mail("a3", "Re: Quarterly budget", 30, refs="a1"), None),
    # 4-7: replies to a parent not in the mailbox, the original, and a reply to another
    # missing message with a list tag: all four under one NIL parent
    (mail("b2", "Re: Offsite venue", 300, refs="b-missing"), None),
    (mail("b3", "Re: Offsite venue", 240, refs="b-missing"), None),
    (mail("b4", "Offsite venue", 400), None),
    (mail("b5", "RE: [staff] Offsite venue", 200, irt="b-other"), None),
    # 8-11: replies and forwards without references, one sent before the original
    (mail("c1", "Re: Printer on floor 3", 500), None),
    (mail("c2", "Printer on floor 3", 520), None),
    (mail("c3", "Fwd: Printer on floor 3", 540), None),
    (mail("c4", "Printer on floor 3 (fwd)", 480), None),
    # 12-14: two originals with one subject (one with a reply): siblings under NIL
    (mail("d1", "Lunch", 600), None),
    (mail("d2", "lunch", 605), None),
    (mail("d3", "Re: Lunch", 610, refs="d1"), None),
    # 15-17: empty base subjects stay apart
    (mail("e1", "Re:", 700), None),
    (mail("e2", None, 701), None),
    (mail("e3", "(fwd)", 702), None),
    # 18-20: a [list] tag is not a reply
    (mail("f1", "[dev] Release 2.0", 800), None),
    (mail("f2", "Release 2.0", 801), None),
    (mail("f3", "Re: [dev] Release 2.0", 802, refs="f-missing"), None),
    # 21-22: no Date header (sent date = internal date), replied to by an earlier Date
    (mail("g1", "Status report", None), "03-Nov-2026 09:00:00 +0000"),
    (mail("g2", "Re: Status report", 900, irt="g1"), None),
    # 23-24: the reply arrives before the message it answers
    (mail("h2", "Re: Parking", 1000, refs="h1"), None),
    (mail("h1", "Parking", 990), None),
    # 25-26: a "[Fwd: …]" forward sent before the original goes below it
    (mail("i1", "[Fwd: Invoice 7]", 1100), None),
    (mail("i2", "Invoice 7", 1110), None),
    # 27-30: replies sent in the same second sort by mailbox order; 30 repeats 27's
    # Message-ID, so it is a thread of its own and the replies answer 27
    (mail("j1", "Fire drill", 1200), None),
    (mail("j2", "Re: Fire drill", 1205, refs="j1"), None),
    (mail("j3", "Re: Fire drill", 1205, refs="j1"), None),
    (mail("j1", "Elevator", 1210), None),
]

# What RFC 5256 §2.4 gives for MAILBOX, worked by hand.
EXPECTED = ("(1 (3)(2))((7)(5)(4)(6))(9 (11)(8)(10))((12 14)(13))(15)(16)(17)"
            "((18)(19)(20))(24 23)(26 25)(27 (28)(29))(30)(21 22)")


def parse_thread(line: bytes) -> list[object]:
    """`* THREAD (1 2 (3)(4))…` as nested lists, one per parenthesised group, so that two
    servers spelling one structure differently still compare equal."""
    text = line.decode().removeprefix("* THREAD").strip()
    stack: list[list[object]] = [[]]
    for token in text.replace("(", " ( ").replace(")", " ) ").split():
        if token == "(":
            stack.append([])
        elif token == ")":
            group = stack.pop()
            stack[-1].append(group)
        else:
            stack[-1].append(None if token == "NIL" else int(token))
    return stack[0]


def canonical(group: list[object]) -> tuple[object, ...]:
    """A thread group as (number, children...): `(1 2 (3)(4))` is 1 → 2 → {3, 4}."""
    head, rest = group[0], group[1:]
    if isinstance(head, list):  # a NIL parent
        return (None, *(canonical(g) for g in group))  # type: ignore[arg-type]
    if not rest:
        return (head,)
    if isinstance(rest[0], list):
        return (head, *(canonical(g) for g in rest))  # type: ignore[arg-type]
    return (head, canonical(rest))


def threads(line: bytes) -> list[tuple[object, ...]]:
    return [canonical(g) for g in parse_thread(line)]  # type: ignore[arg-type]


def fill(port: int) -> None:
    """APPEND every message of MAILBOX, in order, to the INBOX of the server on `port`."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.login(USER, PASSWORD)
    for raw, internal in MAILBOX:
        typ, data = client.append("INBOX", None, f'"{internal}"' if internal else None, raw)
        assert typ == "OK", data
    client.logout()


def thread_lines(port: int) -> tuple[bytes, bytes]:
    """`THREAD REFERENCES UTF-8 ALL` and its UID form, as the raw `* THREAD` lines."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.login(USER, PASSWORD)
    client.select("INBOX", readonly=True)
    typ, seq = client.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK", seq
    typ, uid = client.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    assert typ == "OK", uid
    client.logout()
    return b"* THREAD " + (seq[0] or b""), b"* THREAD " + (uid[0] or b"")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False


@pytest.fixture(scope="module")
def dovecot_port() -> Iterator[int]:
    """A private Dovecot with MAILBOX in alice's INBOX, on a loopback port, never as root:
    when the tests run as root it runs as nobody. Its own config, passwd-file and Maildir
    in a temp dir; the system's Dovecot service and configuration are not touched."""
    require(shutil.which("dovecot") is not None and os.access(DOVECOT_IMAP, os.X_OK),
            "Dovecot's IMAP server is missing (Debian dovecot-imapd, scripts/install-test-deps.sh)")
    if os.geteuid() == 0:
        user, group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    else:
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    with tempfile.TemporaryDirectory(prefix="postbote-dovecot-", ignore_cleanup_errors=True) as name:
        top = Path(name)
        port = free_port()
        (top / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        (top / "dovecot.conf").write_text(f"""\
base_dir = {top}/run
state_dir = {top}/state
log_path = {top}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{top}/mail/%u
passdb {{
  driver = passwd-file
  args = {top}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={top}/home/%u
}}
# no chroot: that needs root
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            for path in (top, *top.iterdir()):
                shutil.chown(path, user, group)
            as_user = {"user": user, "group": group, "extra_groups": []}
        proc = subprocess.Popen(["dovecot", "-F", "-c", str(top / "dovecot.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **as_user)
        try:
            wait_until_ready(proc, lambda: answers(port), "dovecot", timeout=30)
            fill(port)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def postbote_port(tmp_path_factory) -> Iterator[int]:
    """A postbote with MAILBOX in alice's INBOX, appended over IMAP."""
    srv = RunningServer(server_settings(tmp_path_factory.mktemp("imap-thread") / "data")).start()
    srv.add_user(USER, PASSWORD)
    fill(srv.port("imap"))
    yield srv.port("imap")
    srv.stop()


def test_postbote_threads_the_crafted_mailbox_as_rfc5256_says(postbote_port):
    by_seq, by_uid = thread_lines(postbote_port)
    assert by_seq == f"* THREAD {EXPECTED}".encode()
    assert by_uid == by_seq  # a fresh mailbox: UIDs are the sequence numbers


def test_postbote_and_dovecot_thread_the_same_mailbox_alike(postbote_port, dovecot_port):
    ours, theirs = thread_lines(postbote_port), thread_lines(dovecot_port)
    assert threads(theirs[0]) == threads(f"* THREAD {EXPECTED}".encode()), theirs[0]
    for mine, dovecots in zip(ours, theirs):
        assert threads(mine) == threads(dovecots), (mine, dovecots)


# --- ESORT (RFC 5267 §3) on the same mailbox, against the same Dovecot ------------------------

ESORT_COMMANDS = (
    "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL",
    "SORT RETURN (MIN MAX) (REVERSE SUBJECT) UTF-8 ALL",
    "SORT RETURN () (SIZE) UTF-8 ALL",  # ARRIVAL would differ: each server appended at its own pace
    "SORT RETURN (ALL) (REVERSE SIZE) UTF-8 ALL",
    "SORT RETURN (COUNT ALL) (SUBJECT DATE) UTF-8 SUBJECT fire",
    "SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT no-such-words",
    "UID SORT RETURN (MIN ALL) (REVERSE DATE) UTF-8 ALL",
)


def esort_answers(port: int) -> list[bytes]:
    """The `* ESEARCH` line of each ESORT command, without its TAG (each server tags its own)."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    client.login(USER, PASSWORD)
    assert b"ESORT" in client.capability()[1][0].split()
    client.select("INBOX", readonly=True)
    answers = []
    for command in ESORT_COMMANDS:
        name, args = command.split(" ", 1)
        typ, data = client._simple_command(name, args)
        assert typ == "OK", (command, data)
        [line] = client.untagged_responses.pop("ESEARCH", [b""])
        answers.append(line.split(b")", 1)[1].strip() if line.startswith(b"(TAG") else line)
    client.logout()
    return answers


def test_esort_answers_in_sort_order_like_dovecot(postbote_port, dovecot_port):
    ours, theirs = esort_answers(postbote_port), esort_answers(dovecot_port)
    # By DATE the first is 3 (its reply dated before it) and the last 21 (no Date header, a
    # later internal date); ALL keeps that order, ascending runs written as ranges.
    assert theirs[0] == b"MIN 3 MAX 21 ALL 3,1:2,7,5,4,6,11,8:10,12:20,22,24,23,25:30,21 COUNT 30"
    for command, mine, dovecots in zip(ESORT_COMMANDS, ours, theirs):
        assert _fields(mine) == _fields(dovecots), (command, mine, dovecots)


def _fields(line: bytes) -> dict[bytes, bytes]:
    """`MIN 3 MAX 21 ALL …` as a mapping: the servers may order the result items differently."""
    words = line.split()
    fields = dict(zip(words[0::2], words[1::2]))
    fields.pop(b"UID", None)
    return fields
