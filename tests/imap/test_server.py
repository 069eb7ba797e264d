"""The IMAP server over real loopback sockets with imaplib and raw transcripts: login rules,
mailbox commands, APPEND, FETCH, STORE, COPY/MOVE and EXPUNGE."""

from __future__ import annotations

import base64
import imaplib
import re
import types

import pytest

from postbote.imap.grammar import ImapCommandParser
from postbote.imap.session import ImapSession, SessionPolicy
from tests.imap.conftest import MULTIPART, PASSWORD, USER, client_tls, deliver, message


def _session(policy: SessionPolicy) -> ImapSession:
    app = types.SimpleNamespace(store=None)
    conn = types.SimpleNamespace(id="x", peer_ip="192.0.2.1")
    return ImapSession(app, conn, None, ImapCommandParser(), policy)  # type: ignore[arg-type]


# --- login rules -------------------------------------------------------------------------------


def test_remote_peer_without_tls_sees_logindisabled_and_no_auth_plain():
    caps = _session(SessionPolicy(False, True, False, 1000)).capabilities()
    assert "LOGINDISABLED" in caps and "STARTTLS" in caps and "AUTH=PLAIN" not in caps


def test_remote_peer_after_tls_may_log_in():
    caps = _session(SessionPolicy(True, True, False, 1000)).capabilities()
    assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps and "STARTTLS" not in caps


def test_greeting_advertises_capabilities_and_loopback_login(raw):
    client = raw(login=False)
    assert client.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2")
    assert b"AUTH=PLAIN" in client.greeting and b"STARTTLS" in client.greeting


def test_login_with_wrong_password_says_authenticationfailed(connect):
    client = connect(login=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(USER, "wrong")


def test_login_answers_with_capabilities_after_auth(connect):
    client = connect(login=False)
    typ, data = client.login(USER, PASSWORD)
    assert typ == "OK" and b"[CAPABILITY" in data[0] and b"IDLE" in data[0]


def test_authenticate_plain_with_initial_response(raw):
    client = raw(login=False)
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    assert client.command(b"AUTHENTICATE PLAIN " + token)[-1].startswith(b"t OK")
    assert client.command(b"SELECT INBOX")[-1].startswith(b"t OK [READ-WRITE]")


def test_authenticate_plain_with_a_challenge(connect):
    client = connect(login=False)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
    assert typ == "OK"


def test_authenticate_cancelled_keeps_connection_usable(raw):
    client = raw(login=False)
    client.send(b"a AUTHENTICATE PLAIN\r\n")
    assert client.line().startswith(b"+")
    client.send(b"*\r\n")
    assert client.until(b"a")[-1].startswith(b"a BAD")
    assert client.command(b"NOOP")[-1].startswith(b"t OK")


def test_commands_before_login_are_refused_with_a_code(raw):
    client = raw(login=False)
    assert client.command(b"SELECT INBOX")[-1].startswith(b"t BAD [CLIENTBUG]")
    assert client.command(b"CAPABILITY")[-1].startswith(b"t OK")


def test_starttls_then_login(server, user):
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    client.starttls(ssl_context=client_tls())
    assert client.login(USER, PASSWORD)[0] == "OK"
    client.logout()


def test_implicit_tls_port(server, user):
    client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls(), timeout=10)
    assert client.login(USER, PASSWORD)[0] == "OK"
    assert "STARTTLS" not in client.capabilities
    client.logout()


def test_plaintext_after_starttls_is_dropped(raw):
    client = raw(login=False)
    client.send(b"a STARTTLS\r\nb NOOP\r\n")
    assert client.until(b"a")[-1].startswith(b"a OK")
    tls = client_tls().wrap_socket(client.sock)
    tls.sendall(b"c NOOP\r\n")
    reply = tls.recv(4096)
    assert reply.startswith(b"c OK"), reply  # "b NOOP" never ran
    tls.close()


# --- any state / authenticated -----------------------------------------------------------------


def test_enable_id_namespace(raw):
    client = raw()
    assert client.command(b"ENABLE CONDSTORE UTF8=ACCEPT")[0] == b"* ENABLED CONDSTORE UTF8=ACCEPT\r\n"
    assert client.command(b"ENABLE CONDSTORE")[0] == b"* ENABLED\r\n"
    assert client.command(b'ID ("name" "test")')[0].startswith(b'* ID ("name" "postbote"')
    assert client.command(b"NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL\r\n'


def test_new_account_lists_default_mailboxes_with_special_use(connect):
    client = connect()
    typ, data = client.list()
    assert typ == "OK"
    listing = b"\n".join(data)
    for name, use in (("Drafts", "Drafts"), ("Sent", "Sent"), ("Junk", "Junk"),
                      ("Trash", "Trash"), ("Archive", "Archive")):
        assert f'\\{use}) "/" "{name}"'.encode() in listing
    assert b'"INBOX"' in listing


def test_list_root_gives_the_delimiter(raw):
    client = raw()
    assert client.command(b'LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""\r\n'


def test_create_nested_then_list_percent_and_children(raw):
    client = raw()
    assert re.match(rb"t OK \[MAILBOXID \(F\d+\)\] created", client.command(b"CREATE a/b/c")[-1])
    lines = client.command(b'LIST "" %')
    assert b'* LIST (\\HasChildren) "/" "a"\r\n' in lines
    lines = client.command(b'LIST "" a/*')
    assert lines[:-1] == [b'* LIST (\\HasChildren) "/" "a/b"\r\n', b'* LIST (\\HasNoChildren) "/" "a/b/c"\r\n']


def test_list_extended_special_use_subscribed_and_status(raw):
    client = raw()
    lines = client.command(b'LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED STATUS (MESSAGES UIDNEXT))')
    assert b'* LIST (\\HasNoChildren \\Subscribed \\Sent) "/" "Sent"\r\n' in lines
    assert b'* STATUS "Sent" (MESSAGES 0 UIDNEXT 1)\r\n' in lines
    assert not any(b'"INBOX"' in line for line in lines)


def test_list_subscribed_recursivematch_gives_childinfo(raw):
    client = raw()
    client.command(b"CREATE Lists/rust")
    client.command(b"UNSUBSCRIBE Lists")
    client.command(b"SUBSCRIBE Lists/rust")
    lines = client.command(b'LIST (SUBSCRIBED RECURSIVEMATCH) "" %')
    assert b'* LIST (\\HasChildren) "/" "Lists" ("CHILDINFO" ("SUBSCRIBED"))\r\n' in lines
    plain = client.command(b'LIST (SUBSCRIBED) "" %')
    assert not any(b'"Lists"' in line for line in plain)


def test_create_special_use_and_bad_use_attribute(raw):
    client = raw()
    assert client.command(b"CREATE Important (USE (\\Flagged))")[-1].startswith(b"t OK")
    assert b'(\\HasNoChildren \\Flagged) "/" "Important"' in b"".join(client.command(b'LIST "" Important'))
    assert client.command(b"CREATE Odd (USE (\\Bogus))")[-1].startswith(b"t NO [USEATTR]")


def test_create_existing_and_delete_missing_have_codes(raw):
    client = raw()
    assert client.command(b"CREATE Sent")[-1].startswith(b"t NO [ALREADYEXISTS]")
    assert client.command(b"CREATE inbox")[-1].startswith(b"t NO [ALREADYEXISTS]")
    assert client.command(b"DELETE Nowhere")[-1].startswith(b"t NO [NONEXISTENT]")
    assert client.command(b"DELETE INBOX")[-1].startswith(b"t NO")


def test_delete_and_rename(connect):
    client = connect()
    client.create("Projects/2026")
    assert client.delete("Projects")[0] == "NO"  # has children
    assert client.rename("Projects", "Work")[0] == "OK"
    names = b"".join(client.list()[1])
    assert b'"Work/2026"' in names and b'"Projects' not in names
    assert client.delete("Work/2026")[0] == "OK"


def test_rename_inbox_moves_its_messages_and_leaves_it_empty(server, connect):
    deliver(server, USER, message("one"))
    client = connect()
    assert client.rename("INBOX", "Old")[0] == "OK"
    assert client.status("INBOX", "(MESSAGES)")[1][0] == b'"INBOX" (MESSAGES 0)'
    assert client.status("Old", "(MESSAGES)")[1][0] == b'"Old" (MESSAGES 1)'


def test_subscribe_unsubscribe_lsub(connect):
    client = connect()
    client.create("Lists")
    client.unsubscribe("Lists")
    assert not any(b"Lists" in line for line in client.lsub()[1] if line)
    client.subscribe("Lists")
    assert any(b'"Lists"' in line for line in client.lsub('""', "*")[1])


def test_status_counts(server, connect):
    deliver(server, USER, message("one"))
    deliver(server, USER, message("two"))
    client = connect()
    typ, data = client.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE DELETED HIGHESTMODSEQ APPENDLIMIT)")
    text = data[0].decode()
    assert "MESSAGES 2" in text and "UNSEEN 2" in text and "UIDNEXT 3" in text and "DELETED 0" in text
    size = sum(len(message(s)) for s in ("one", "two"))
    assert f"SIZE {size}" in text and "APPENDLIMIT" in text


def test_mailbox_names_in_modified_utf7_and_utf8(raw):
    client = raw()
    assert client.command(b"CREATE &AMQ-pfel")[-1].startswith(b"t OK")
    assert b'"&AMQ-pfel"' in b"".join(client.command(b'LIST "" "&AMQ-*"'))
    client.command(b"ENABLE UTF8=ACCEPT")
    assert '"Äpfel"'.encode() in b"".join(client.command('LIST "" "Ä*"'.encode()))


# --- SELECT, APPEND ------------------------------------------------------------------------------


def test_select_reports_counts_flags_uid_state(server, raw):
    deliver(server, USER, message("one"))
    client = raw()
    lines = client.command(b"SELECT INBOX")
    text = b"".join(lines)
    assert b"* 1 EXISTS\r\n" in lines and b"* 1 RECENT\r\n" in lines
    assert b"[UIDVALIDITY " in text and b"[UIDNEXT 2]" in text and b"[UNSEEN 1]" in text
    assert b"[PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]" in text
    assert lines[-1].startswith(b"t OK [READ-WRITE]")
    # \Recent goes to one session only
    other = raw()
    assert b"* 0 RECENT\r\n" in other.command(b"SELECT INBOX")


def test_examine_is_read_only(server, raw):
    deliver(server, USER, message("one"))
    client = raw()
    assert client.command(b"EXAMINE INBOX")[-1].startswith(b"t OK [READ-ONLY]")
    assert client.command(b"STORE 1 +FLAGS (\\Deleted)")[-1].startswith(b"t NO")
    client.command(b"FETCH 1 BODY[]")
    assert b"\\Seen" not in b"".join(client.command(b"FETCH 1 FLAGS"))


def test_append_returns_appenduid_and_keeps_flags_and_date(connect):
    client = connect()
    typ, data = client.append("Drafts", "(\\Draft $Label)", '"01-Feb-2024 10:00:00 +0100"', message("draft"))
    assert typ == "OK"
    uidvalidity, uid = re.search(rb"APPENDUID (\d+) (\d+)", data[0]).groups()
    client.select("Drafts")
    _, fetched = client.uid("FETCH", uid.decode(), "(FLAGS INTERNALDATE)")
    assert b"\\Draft" in fetched[0] and b"$Label" in fetched[0]
    assert b'"01-Feb-2024 09:00:00 +0000"' in fetched[0]


def test_append_to_missing_mailbox_says_trycreate(connect):
    client = connect()
    typ, data = client.append("Nowhere", None, None, message())
    assert typ == "NO" and b"[TRYCREATE]" in data[0]


def test_multiappend_appends_all_with_one_appenduid(raw):
    client = raw()
    first, second = message("a"), message("b")
    client.send(b"t APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(first), first, len(second), second))
    reply = client.until(b"t")[-1]
    assert re.match(rb"t OK \[APPENDUID \d+ 1:2\]", reply), reply


def test_append_to_selected_mailbox_announces_exists(raw):
    client = raw()
    client.command(b"SELECT INBOX")
    data = message("new")
    client.send(b"t APPEND INBOX {%d}\r\n" % len(data))
    assert client.line().startswith(b"+")
    client.send(data + b"\r\n")
    assert b"* 1 EXISTS\r\n" in client.until(b"t")


# --- FETCH ---------------------------------------------------------------------------------------


def test_fetch_envelope_bodystructure_and_sections(server, connect):
    deliver(server, USER, MULTIPART)
    client = connect()
    client.select("INBOX")
    _, data = client.fetch("1", "(ENVELOPE BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])")
    head = data[0][0]
    assert b'ENVELOPE (NIL "parts" (("Carol" NIL "carol" "example.com"))' in head
    assert b'BODYSTRUCTURE (("text" "plain" ("charset" "utf-8")' in head
    assert b'"mixed" ("boundary" "XX")' in head
    assert data[0][1] == b"first part"
    assert data[1][1].startswith(b"Content-Type: application/octet-stream")
    assert data[2][1] == b"\x00\x01\x02\x03\x04"
    assert b"BINARY.SIZE[2] 5" in data[3]


def test_fetch_header_fields_partial_and_rfc822(server, connect):
    raw = message("fields")
    deliver(server, USER, raw)
    client = connect()
    client.select("INBOX")
    _, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT to)] BODY.PEEK[HEADER.FIELDS.NOT (Subject To Date Message-ID)] BODY.PEEK[]<5.8> RFC822.SIZE)")
    assert data[0][1] == f"To: {USER}\r\nSubject: fields\r\n\r\n".encode()
    assert data[1][1] == b"From: Bob <bob@example.com>\r\n\r\n"
    assert b"BODY[]<5> {8}" in data[2][0] and data[2][1] == raw[5:13]
    assert f"RFC822.SIZE {len(raw)}".encode() in data[3]
    _, whole = client.fetch("1", "(RFC822)")
    assert whole[0][1] == raw


def test_fetch_body_sets_seen_but_peek_does_not(server, connect):
    deliver(server, USER, message("one"))
    client = connect()
    client.select("INBOX")
    client.fetch("1", "(BODY.PEEK[])")
    assert b"\\Seen" not in client.fetch("1", "(FLAGS)")[1][0]
    _, data = client.fetch("1", "(BODY[TEXT])")
    assert b"\\Seen" in b"".join(part if isinstance(part, bytes) else part[0] for part in data)


def test_uid_fetch_always_reports_uid_and_star_names_the_last(server, connect):
    for n in range(3):
        deliver(server, USER, message(f"m{n}"))
    client = connect()
    client.select("INBOX")
    _, data = client.uid("FETCH", "9:*", "(FLAGS)")
    assert data == [b"3 (UID 3 FLAGS (\\Recent))"]


def test_fetch_changedsince_returns_only_changed_with_modseq(server, connect):
    for n in range(3):
        deliver(server, USER, message(f"m{n}"))
    client = connect()
    client.select("INBOX")
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", client.status("INBOX", "(HIGHESTMODSEQ)")[1][0]).group(1))
    client.store("2", "+FLAGS", "(\\Flagged)")
    _, data = client.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {modseq})")
    assert len(data) == 1 and data[0].startswith(b"2 (") and b"MODSEQ" in data[0]


def test_fetch_preview_savedate_emailid(server, connect):
    deliver(server, USER, message("p", body="Hello   preview\r\nworld\r\n"))
    client = connect()
    client.select("INBOX")
    _, data = client.fetch("1", "(PREVIEW SAVEDATE EMAILID THREADID)")
    assert b'PREVIEW "Hello preview world"' in data[0]
    assert b"SAVEDATE \"" in data[0] and b"EMAILID (M" in data[0] and b"THREADID NIL" in data[0]


# --- STORE, COPY, MOVE, EXPUNGE ---------------------------------------------------------------------


def test_store_add_remove_replace_and_silent(server, connect):
    deliver(server, USER, message("one"))
    client = connect()
    client.select("INBOX")
    assert b"\\Flagged" in client.store("1", "+FLAGS", "(\\Flagged Work)")[1][0]
    assert b"Work" not in client.store("1", "-FLAGS", "(Work)")[1][0]
    assert client.store("1", "FLAGS", "(\\Seen)")[1][0] == b"1 (UID 1 FLAGS (\\Seen \\Recent))"
    assert client.store("1", "+FLAGS.SILENT", "(\\Answered)")[1] == [None]


def test_store_unchangedsince_reports_modified(server, raw):
    deliver(server, USER, message("one"))
    deliver(server, USER, message("two"))
    client = raw()
    client.command(b"SELECT INBOX")
    client.command(b"STORE 2 +FLAGS (\\Flagged)")
    lines = client.command(b"STORE 1:2 (UNCHANGEDSINCE 2) +FLAGS (\\Seen)")
    assert lines[0].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (")
    assert lines[-1] == b"t OK [MODIFIED 2] conditional store failed for some messages\r\n"


def test_copy_and_move_give_copyuid(server, raw):
    for n in range(3):
        deliver(server, USER, message(f"m{n}"))
    client = raw()
    client.command(b"SELECT INBOX")
    reply = client.command(b"COPY 1:2 Archive")[-1]
    assert re.match(rb"t OK \[COPYUID \d+ 1:2 1:2\]", reply), reply
    lines = client.command(b"UID MOVE 3 Trash")
    assert re.match(rb"\* OK \[COPYUID \d+ 3 1\]", lines[0]), lines
    assert b"* 3 EXPUNGE\r\n" in lines and lines[-1].startswith(b"t OK")
    assert client.command(b"COPY 1 Nowhere")[-1].startswith(b"t NO [TRYCREATE]")


def test_expunge_and_uid_expunge(server, raw):
    for n in range(4):
        deliver(server, USER, message(f"m{n}"))
    client = raw()
    client.command(b"SELECT INBOX")
    client.command(b"STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    assert client.command(b"UID EXPUNGE 2")[:-1] == [b"* 2 EXPUNGE\r\n"]
    assert client.command(b"EXPUNGE")[:-1] == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]


def test_close_expunges_silently_and_unselect_does_not(server, raw):
    deliver(server, USER, message("a"))
    deliver(server, USER, message("b"))
    client = raw()
    client.command(b"SELECT INBOX")
    client.command(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert client.command(b"UNSELECT") == [b"t OK completed\r\n"]
    client.command(b"SELECT INBOX")
    assert client.command(b"CLOSE") == [b"t OK completed\r\n"]
    assert b"MESSAGES 1" in client.command(b"STATUS INBOX (MESSAGES)")[0]
    assert client.command(b"FETCH 1 FLAGS")[-1].startswith(b"t BAD [CLIENTBUG]")


def test_status_recent_counts_messages_no_session_has_claimed_yet(server, connect):
    deliver(server, USER, message("one"))
    deliver(server, USER, message("two"))
    watcher = connect()
    assert b"(RECENT 2)" in watcher.status("INBOX", "(RECENT)")[1][0]
    reader = connect()
    reader.select("INBOX")  # RFC 3501 §2.3.2: this session now holds \Recent for both
    assert b"(RECENT 0)" in watcher.status("INBOX", "(RECENT)")[1][0]
    deliver(server, USER, message("three"))
    assert b"(RECENT 1)" in watcher.status("INBOX", "(RECENT)")[1][0]
