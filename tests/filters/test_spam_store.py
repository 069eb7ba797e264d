"""The store's spam state on the embedded backend: training is idempotent and reversible."""

from __future__ import annotations

from postbote.store.sqlite import SqliteStore


async def test_learning_counts_once_retrains_and_keeps_models_apart(tmp_path):
    store = SqliteStore(tmp_path, workers=2)
    await store.open()
    try:
        assert await store.spam_learn(7, 100, ["a", "b"], True, 1, "x@example.org")
        assert not await store.spam_learn(7, 100, ["a", "b"], True, 2, "x@example.org")  # again: no change
        assert await store.spam_learn(8, 200, ["a", "c"], False, 3)
        counts = await store.spam_counts([0, 7, 8], ["a", "b", "c", "d"])
        assert (counts[0].spam, counts[0].ham) == (1, 1)
        assert counts[0].tokens == {"a": (1, 1), "b": (1, 0), "c": (0, 1)}
        assert counts[7].tokens == {"a": (1, 0), "b": (1, 0)} and counts[8].tokens == {"a": (0, 1), "c": (0, 1)}
        assert await store.spam_reputation(7, "X@example.org") == (1, 0)

        assert await store.spam_learn(7, 100, ["a", "b"], False, 4, "x@example.org")  # the user changed their mind
        counts = await store.spam_counts([0, 7], ["a", "b"])
        assert (counts[7].spam, counts[7].ham) == (0, 1) and counts[7].tokens == {"a": (0, 1), "b": (0, 1)}
        assert counts[0].tokens == {"a": (0, 2), "b": (0, 1)}
        assert await store.spam_reputation(7, "x@example.org") == (0, 1)
    finally:
        await store.close()


async def test_greylist_triplets_restart_when_the_retry_is_too_late(tmp_path):
    store = SqliteStore(tmp_path, workers=2)
    await store.open()
    try:
        assert await store.greylist_touch("n/s/r", 100) == (100, 0)
        assert await store.greylist_touch("n/s/r", 200, restart_before=50) == (100, 0)
        assert await store.greylist_touch("n/s/r", 300, restart_before=150) == (300, 0)  # too late: starts over
        await store.greylist_pass("n/s/r", 400)
        assert await store.greylist_touch("n/s/r", 9000, restart_before=8000) == (300, 400)  # passed: kept
        assert await store.greylist_expire(9001) == 1
    finally:
        await store.close()


async def test_evidence_is_the_counts_and_reputations_in_one_read(tmp_path):
    store = SqliteStore(tmp_path, workers=2)
    await store.open()
    try:
        await store.spam_learn(7, 100, ["a", "b"], True, 1, "x@example.org")
        await store.spam_learn(8, 200, ["a"], False, 2, "y@example.org")
        counts, reputations = await store.spam_evidence((7, 8), ["a", "b"], "x@example.org")
        assert counts == await store.spam_counts((0, 7, 8), ["a", "b"])
        assert reputations == {7: (1, 0), 8: (0, 0)}
        assert (await store.spam_evidence((7,), ["a"], ""))[1] == {}  # the null sender has none
    finally:
        await store.close()
