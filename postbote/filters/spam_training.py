"""Training the spam classifier from what users do: moves into and out of Junk, $Junk/$NotJunk.

Protocol-free: the IMAP session tells the trainer which messages went where (or
which keywords changed), and the rules here decide what that teaches:

| the user …                                        | teaches |
|---------------------------------------------------|---------|
| moves or copies a message into Junk               | spam    |
| moves or copies it out of Junk (not to Trash)     | ham     |
| sets ``$Junk``                                    | spam    |
| sets ``$NotJunk``                                 | ham     |

Deleting spam from Junk (into Trash) teaches nothing. Training runs in the
background so a big move is not held up; the store makes it idempotent (a
message trained twice the same way counts once, and trained the other way it is
untrained first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Executor

from postbote.filters.spam.tokenizer import tokenize
from postbote.log import event
from postbote.mail.message import parse_message
from postbote.store import FlagMode, Mailbox, Message, Store, StoreError

log = logging.getLogger("postbote.spam")

JUNK = "\\Junk"
TRASH = "\\Trash"
JUNK_KEYWORD = "$junk"
NOT_JUNK_KEYWORD = "$notjunk"


def training_for_move(source_use: str | None, target_use: str | None) -> bool | None:
    """True: the move teaches spam; False: ham; None: nothing."""
    into_junk, from_junk = target_use == JUNK, source_use == JUNK
    if into_junk and not from_junk:
        return True
    if from_junk and not into_junk and target_use != TRASH:
        return False
    return None


def training_for_keywords(mode: FlagMode, keywords: Iterable[str]) -> bool | None:
    """What setting (or replacing with) ``keywords`` teaches; removing one teaches nothing."""
    if mode is FlagMode.REMOVE:
        return None
    names = {k.lower() for k in keywords}
    if NOT_JUNK_KEYWORD in names:
        return False
    if JUNK_KEYWORD in names:
        return True
    return None


def features(raw: bytes) -> tuple[list[str], str]:
    """(tokens, sender) of a stored message; the sender is its Return-Path (MAIL FROM) or From."""
    msg = parse_message(raw)
    sender = ""
    for name, value in msg.headers:
        if name.lower() == "return-path":
            sender = value.strip().strip("<>").strip()
            break
    if not sender and msg.from_:
        sender = msg.from_[0].addr_spec or ""
    return tokenize(raw), sender.lower()


class SpamTrainer:
    """``app.spam``: learns from users' verdicts on their messages."""

    def __init__(self, store: Store, executor: Executor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self._tasks: set[asyncio.Task] = set()

    async def learn(self, account_id: int, blob_ids: Sequence[int], spam: bool) -> int:
        """Train each message as spam (or ham) for the account; returns how many changed the model."""
        changed = 0
        loop = asyncio.get_running_loop()
        for blob_id in dict.fromkeys(blob_ids):
            raw = await self.store.read_blob(blob_id)
            tokens, sender = await loop.run_in_executor(self.executor, features, raw)
            changed += await self.store.spam_learn(account_id, blob_id, tokens, spam, int(self.clock()), sender)
        event(log, "spam training", account_id=account_id, spam=spam, messages=len(blob_ids), changed=changed)
        return changed

    # -- hooks the IMAP session calls (non-blocking) ---------------------------------------
    def moved(self, account_id: int, source_mailbox_id: int, target: Mailbox, target_uids: Sequence[int]) -> None:
        """Messages were moved or copied from one mailbox into ``target`` (now at ``target_uids``)."""
        self._background(self._moved(account_id, source_mailbox_id, target, list(target_uids)))

    def flagged(self, account_id: int, mode: FlagMode, keywords: Collection[str],
                changed: Sequence[Message]) -> None:
        """STORE changed the flags of ``changed`` with these keywords."""
        spam = training_for_keywords(mode, keywords)
        if spam is not None and changed:
            self._background(self.learn(account_id, [m.blob_id for m in changed], spam))

    async def idle(self) -> None:
        """Wait until the training started so far is done (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _moved(self, account_id: int, source_mailbox_id: int, target: Mailbox, uids: list[int]) -> None:
        source = await self.store.get_mailbox_by_id(source_mailbox_id)
        spam = training_for_move(source.special_use if source else None, target.special_use)
        if spam is None:
            return
        messages = await self.store.messages_by_uid(target.id, uids)
        await self.learn(account_id, [m.blob_id for m in messages], spam)

    def _background(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(coro) -> None:  # type: ignore[no-untyped-def]
        try:
            await coro
        except (StoreError, OSError) as exc:  # training is best effort: the user's command already succeeded
            event(log, "spam training failed", logging.WARNING, error=str(exc))
