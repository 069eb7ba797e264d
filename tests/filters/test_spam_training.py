"""Training through the path a user takes: IMAP MOVE/COPY into and out of Junk, $Junk/$NotJunk."""

from __future__ import annotations

import imaplib

from postbote.filters.spam_training import training_for_keywords, training_for_move
from postbote.store import FlagMode

from .conftest import USER, header, message, send, stored

SPAM_WORDS = "cheap pills casino jackpot bitcoin investment guaranteed returns unsubscribe offer"
HAM_WORDS = "meeting agenda quarterly report review schedule budget draft minutes tomorrow"


def spam(n: int) -> bytes:
    return message(subject=f"Exclusive offer {n}", body=f"{SPAM_WORDS} ref{n}")


def ham(n: int) -> bytes:
    return message(subject=f"Project notes {n}", body=f"{HAM_WORDS} item{n}")


def imap(mx):
    client = imaplib.IMAP4("127.0.0.1", mx.port("imap"), timeout=30)
    client.login(USER, "password123")
    return client


def counts(mx):
    async def read():
        account = await mx.app.store.get_account(USER)
        await mx.app.spam.idle()
        return await mx.app.store.spam_counts([account.id, 0], [])
    return mx.run(read())


def test_moves_into_junk_and_not_junk_keyword_train_the_classifier(make_mx):
    mx = make_mx(spam={"min_trained": 2})
    for n in range(3):
        send(mx, spam(n))
        send(mx, ham(n))
    with imap(mx) as client:
        client.select("INBOX")
        client.uid("MOVE", "1,3,5", "Junk")  # the three spam messages
        client.uid("STORE", "2,4,6", "+FLAGS", "($NotJunk)")
    trained = counts(mx)
    assert (trained[0].spam, trained[0].ham) == (3, 3)  # the global model
    account_id = next(k for k in trained if k)
    assert (trained[account_id].spam, trained[account_id].ham) == (3, 3)

    send(mx, spam(99))
    send(mx, ham(99))
    [inbox_new] = [m for m in stored(mx) if b"item99" in m]
    assert b"BAYES_00" in header(inbox_new, b"X-Spam-Status")[0]
    [junk_new] = [m for m in stored(mx, "Junk") if b"ref99" in m]
    assert b"BAYES_99" in header(junk_new, b"X-Spam-Status")[0]


def test_moving_a_message_back_out_of_junk_retrains_it_as_ham(make_mx):
    mx = make_mx()
    send(mx, ham(1))
    with imap(mx) as client:
        client.select("INBOX")
        client.uid("MOVE", "1", "Junk")
        assert counts(mx)[0].spam == 1
        client.select("Junk")
        client.uid("COPY", "1", "INBOX")  # a copy out of Junk says "not spam" too
    trained = counts(mx)[0]
    assert (trained.spam, trained.ham) == (0, 1)


def test_moving_spam_twice_counts_once_and_deleting_from_junk_teaches_nothing(make_mx):
    mx = make_mx()
    send(mx, spam(1))
    with imap(mx) as client:
        client.select("INBOX")
        client.uid("COPY", "1", "Junk")
        client.uid("STORE", "1", "+FLAGS", "($Junk)")
        client.select("Junk")
        client.uid("MOVE", "1", "Trash")
    trained = counts(mx)[0]
    assert (trained.spam, trained.ham) == (1, 0)


def test_move_rules_follow_special_use():
    assert training_for_move(None, "\\Junk") is True
    assert training_for_move("\\Junk", None) is False
    assert training_for_move("\\Junk", "\\Trash") is None
    assert training_for_move("\\Junk", "\\Junk") is None
    assert training_for_move(None, "\\Archive") is None


def test_keyword_rules():
    assert training_for_keywords(FlagMode.ADD, ["$Junk"]) is True
    assert training_for_keywords(FlagMode.REPLACE, ["$notjunk", "\\Seen"]) is False
    assert training_for_keywords(FlagMode.REMOVE, ["$Junk"]) is None
    assert training_for_keywords(FlagMode.ADD, ["$Important"]) is None
