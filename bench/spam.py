"""Benchmark (not a test): precision and recall of the built-in spam filter on the SpamAssassin corpus.

k-fold cross validation. For each fold a fresh store is trained on the other
folds *only through the path a user takes*: every training message is in the
user's mailboxes, spam is moved from INBOX into Junk and ham out of Junk into
INBOX with the store's MOVE, and the trainer learns through the very hook the
IMAP MOVE handler calls (``SpamTrainer.moved``, which decides from the
mailboxes' special-use roles). Then every message of the held-out fold is
checked by the real ``SpamFilter`` (tokenizer, classifier, header heuristics,
reputation; no DNS lists, no SPF/DKIM since the corpus has no live senders),
from a spool file as the SMTP server would. The model lives in a temp folder
and is deleted: no model trained on this corpus is ever kept.

Reports the false-positive rate on ham (goal < 0.5 %), spam recall (goal > 95 %),
precision, and the filter's cost per message in ms.

    scripts/fetch-corpus.sh
    .venv/bin/python bench/spam.py [--folds 5] [--limit N] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: a module there could shadow one of the standard library

from postbote.config import SpamSettings  # noqa: E402
from postbote.filters.pipeline import Action, MessageContext  # noqa: E402
from postbote.filters.spam import SpamFilter  # noqa: E402
from postbote.filters.spam_training import SpamTrainer  # noqa: E402
from postbote.store.sqlite import SqliteStore  # noqa: E402

CORPUS = ROOT / ".cache" / "spamassassin"
USER = "user@example.com"
BATCH = 200


@dataclass
class Sample:
    raw: bytes
    spam: bool


@dataclass
class Tally:
    ham: int = 0
    spam: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    unsure: int = 0  # classifier between 0.2 and 0.8
    costs: list[float] | None = None


def load(limit: int | None, seed: int) -> list[Sample]:
    samples = []
    for folder in sorted(CORPUS.iterdir()):
        if not folder.is_dir():
            continue
        spam = folder.name.startswith("spam")
        for path in sorted(folder.glob("*.txt")):
            samples.append(Sample(_crlf(path.read_bytes()), spam))
    if not samples:
        sys.exit("no corpus: run scripts/fetch-corpus.sh first")
    random.Random(seed).shuffle(samples)
    return samples[:limit] if limit else samples


def _crlf(raw: bytes) -> bytes:
    if raw.startswith(b"From "):  # the mbox separator line is not part of the message
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def run_fold(train: list[Sample], test: list[Sample], folder: Path) -> Tally:
    store = SqliteStore(folder, workers=4)
    await store.open()
    try:
        await store.add_domain("example.com")
        account = await store.add_account(USER, "-")
        trainer = SpamTrainer(store)
        await train_like_a_user(store, trainer, account.id, train)
        return await check_all(store, test, folder)
    finally:
        await store.close()


async def train_like_a_user(store: SqliteStore, trainer: SpamTrainer, account_id: int, train: list[Sample]) -> None:
    inbox = await store.get_mailbox(account_id, "INBOX")
    junk = await store.get_mailbox(account_id, "Junk")
    assert inbox is not None and junk is not None and junk.special_use == "\\Junk"
    for start in range(0, len(train), BATCH):
        batch = train[start:start + BATCH]
        # Where the messages sit before the user sorts them: spam in INBOX, ham (misfiled) in Junk.
        placed = await asyncio.gather(*(store.append(account_id, "INBOX" if s.spam else "Junk", s.raw) for s in batch))
        for source, target in ((inbox, junk), (junk, inbox)):
            uids = [d.uid for d in placed if d.mailbox_id == source.id]
            if uids:
                pairs = await store.move_messages(source.id, uids, target.id)
                trainer.moved(account_id, source.id, target, [new for _, new in pairs])  # the IMAP MOVE hook
        await trainer.idle()


async def check_all(store: SqliteStore, test: list[Sample], folder: Path) -> Tally:
    spam_filter = SpamFilter(SpamSettings(reject_score=0), store, resolver=None)  # type: ignore[arg-type]
    tally = Tally(costs=[])
    spool = folder / "spool"
    for n, sample in enumerate(test):
        spool.write_bytes(sample.raw)
        ctx = MessageContext(queue_id=f"B{n}", service="smtp", peer_ip="192.0.2.1", helo="bench.example",
                             sender=_sender(sample.raw), recipients=(USER,), spool_path=spool)
        started = time.perf_counter()
        result = await spam_filter.check(ctx)
        tally.costs.append((time.perf_counter() - started) * 1000)
        judged_spam = result.action is not Action.ACCEPT
        bayes = next((r for r in ctx.notes["spam"].rules if r[0].startswith("BAYES_")), None)
        if bayes and abs(bayes[1]) < 0.6 * SpamSettings().bayes_weight:
            tally.unsure += 1
        if sample.spam:
            tally.spam += 1
            tally.false_negatives += not judged_spam
        else:
            tally.ham += 1
            tally.false_positives += judged_spam
    return tally


def _sender(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"return-path:"):
            return line.split(b":", 1)[1].strip().strip(b"<>").decode("latin-1")
    return ""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="use only this many messages (quick runs)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    samples = load(args.limit or None, args.seed)
    k = args.folds
    folds = [samples[i::k] for i in range(k)]
    print(f"corpus: {len(samples)} messages ({sum(s.spam for s in samples)} spam), {k}-fold cross validation")
    totals = Tally(costs=[])
    for i in range(k):
        train = [s for j, f in enumerate(folds) if j != i for s in f]
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="postbote-spam-bench-") as tmp:
            t = await run_fold(train, folds[i], Path(tmp))
        print(f"fold {i + 1}: trained {len(train)} in {time.perf_counter() - started:.0f} s; "
              f"FP {t.false_positives}/{t.ham} ham, FN {t.false_negatives}/{t.spam} spam, "
              f"median {statistics.median(t.costs or [0]):.2f} ms/message", flush=True)
        for name in ("ham", "spam", "false_positives", "false_negatives", "unsure"):
            setattr(totals, name, getattr(totals, name) + getattr(t, name))
        totals.costs += t.costs or []
    report(totals)


def report(t: Tally) -> None:
    caught = t.spam - t.false_negatives
    fp_rate = 100 * t.false_positives / max(t.ham, 1)
    recall = 100 * caught / max(t.spam, 1)
    precision = 100 * caught / max(caught + t.false_positives, 1)
    costs = sorted(t.costs or [0])
    print()
    print(f"false-positive rate on ham: {fp_rate:.2f} % ({t.false_positives} of {t.ham})   goal < 0.5 %")
    print(f"spam recall:                {recall:.2f} % ({caught} of {t.spam})   goal > 95 %")
    print(f"precision:                  {precision:.2f} %")
    print(f"classifier unsure:          {t.unsure} messages")
    print(f"cost per message:           median {statistics.median(costs):.2f} ms, "
          f"p95 {costs[int(len(costs) * 0.95) - 1]:.2f} ms, mean {statistics.fmean(costs):.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
