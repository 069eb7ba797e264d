"""SEARCH (with ESEARCH, SEARCHRES and CONDSTORE's MODSEQ), SORT and THREAD (RFC 5256), as
the `SearchCommands` mixin of `ImapSession`.

Which messages match a key is decided in `search.py`; how they sort and thread, in
`sortthread.py`. This module walks the selected mailbox in batches of `SEARCH_BATCH` and
sends the answers.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from postbote.imap import commands as c
from postbote.imap import encode
from postbote.imap.base import SessionBase, _bad, _no
from postbote.imap.fetch import load_parsed
from postbote.imap.search import (
    Candidate,
    HeaderView,
    SearchNeeds,
    SearchScope,
    esearch_response,
    esort_response,
    walk_keys,
    matches_all,
    saved_result,
)
from postbote.imap.selected import SelectedMailbox
from postbote.imap.sortthread import sort_messages, thread_messages
from postbote.mail.message import ParsedMessage
from postbote.store.types import Message

SEARCH_BATCH = 1000

T = TypeVar("T")


class SearchCommands(SessionBase):
    """The `do_*` handlers of SEARCH, SORT and THREAD (see the module doc)."""

    async def _check_charset(self, charset: str | None) -> None:
        if charset is None:
            return
        try:
            codecs.lookup(charset)
        except LookupError:
            raise _no(f"unknown charset {charset}", encode.code_badcharset(["UTF-8", "US-ASCII"])) from None

    async def matching(self, keys: Sequence[c.SearchKey]) -> list[Message]:
        """The selected messages matching every key, by ascending UID."""
        sel = self._sel()
        needs = SearchNeeds.of(keys)
        scope = SearchScope(sel.exists, sel.max_uid, frozenset(self.saved), time.time())
        found: list[Message] = []
        uids = await self._search_candidates(sel, keys)
        for start in range(0, len(uids), SEARCH_BATCH):
            chunk = uids[start:start + SEARCH_BATCH]
            batch, parsed = await self._load_batch(sel, chunk, needs.parse, needs.parse_keys)
            for m in batch:
                seq = sel.seq_of(m.uid)
                if seq is None or sel.is_expunged(m.uid):
                    continue
                raw = await self.store.read_blob(m.blob_id) if needs.body else None
                cand = Candidate(seq, m, m.uid in sel.recent)
                if needs.parse:
                    cand.parsed = HeaderView(parsed.get(m.blob_id), raw)
                if matches_all(keys, cand, scope):
                    found.append(m)
        return found

    async def _search_candidates(self, sel: SelectedMailbox, keys: Sequence[c.SearchKey]) -> list[int]:
        """The view's UIDs, narrowed by the store's subject column when a key allows it."""
        uids = sel.uids.tolist()
        for key in keys:
            if isinstance(key, c.SearchText) and key.field == "SUBJECT":
                narrowed = await self.store.uids_with_subject(sel.mailbox_id, key.value)
                if narrowed is not None:
                    keep = set(narrowed)
                    uids = [uid for uid in uids if uid in keep]
        return uids

    async def do_search(self, cmd: c.Search) -> None:
        sel = self._sel()
        await self._check_charset(cmd.charset)
        found = await self.matching(cmd.criteria)
        uses_modseq = _uses_modseq(cmd.criteria)
        if uses_modseq:
            self.enabled.condstore = True
        modseq = max((m.modseq for m in found), default=None) if uses_modseq else None
        numbers = [m.uid if cmd.uid else sel.seq_of(m.uid) or 0 for m in found]
        options = cmd.return_options
        if options is not None and "SAVE" in options:
            self.saved = saved_result([m.uid for m in found], options)
        if options is None and not self.enabled.rev2:
            self.out.send(encode.search(numbers, modseq=modseq))
        elif options is None or set(options) != {"SAVE"}:
            self.out.send(esearch_response(cmd.tag, numbers, options or (), uid=cmd.uid, modseq=modseq))

    async def do_sort(self, cmd: c.Sort) -> None:
        await self._check_charset(cmd.charset)
        sel = self._sel()
        found = await self.matching(cmd.search)
        parsed = await self.store.parsed_many([m.blob_id for m in found])
        ordered = await self._off_loop(lambda: sort_messages(found, _loaded(parsed), cmd.criteria))
        numbers = [m.uid if cmd.uid else sel.seq_of(m.uid) or 0 for m in ordered]
        if cmd.return_options is not None:
            self.out.send(esort_response(cmd.tag, numbers, cmd.return_options, uid=cmd.uid))
        else:
            self.out.send(encode.sort(numbers))

    async def do_thread(self, cmd: c.Thread) -> None:
        await self._check_charset(cmd.charset)
        if cmd.algorithm not in ("ORDEREDSUBJECT", "REFERENCES"):
            raise _bad(f"unknown threading algorithm {cmd.algorithm}", encode.CLIENTBUG)
        sel = self._sel()
        found = await self.matching(cmd.search)
        parsed = await self.store.parsed_many([m.blob_id for m in found])
        numbers = {m.uid: (m.uid if cmd.uid else sel.seq_of(m.uid) or 0) for m in found}
        roots = await self._off_loop(lambda: thread_messages(found, _loaded(parsed), cmd.algorithm, numbers))
        self.out.send(encode.thread(roots))

    async def _off_loop(self, work: Callable[[], T]) -> T:
        """CPU work that grows with the mailbox (SORT, THREAD: 0.4 s for 20,000
        messages) runs in a worker thread, so other sessions are not kept waiting."""
        return await asyncio.get_running_loop().run_in_executor(self.app.executor, work)


def _loaded(parsed: Mapping[int, object]) -> dict[int, ParsedMessage | None]:
    return {b: load_parsed(p, None) for b, p in parsed.items()}


def _uses_modseq(keys: Sequence[c.SearchKey]) -> bool:
    return any(isinstance(key, c.SearchModSeq) for key in walk_keys(keys))
