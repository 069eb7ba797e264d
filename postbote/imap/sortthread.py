"""SORT and THREAD (RFC 5256, with RFC 5957 DISPLAYFROM/DISPLAYTO).

Both work on the messages SEARCH found and their cached parses; no I/O happens here.
Ties in SORT fall back to the message's order in the mailbox (its UID), as RFC 5256 §3 asks.
THREAD=REFERENCES follows RFC 5256 §2.4 steps 1–4 and 6 (linking by References/In-Reply-To,
pruning empty containers, sorting siblings by date); step 5, regrouping root threads by base
subject, is left out, which only ever splits threads a client would otherwise see merged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from postbote.imap.commands import SortCriterion
from postbote.imap.encode import ThreadNode
from postbote.mail.headers import Address
from postbote.mail.message import ParsedMessage
from postbote.store.types import Message

_SUBJ_LEADER = re.compile(r"^(?:\s*(?:\[[^\[\]]*\]\s*)*(?:re|fwd?)\s*(?:\[[^\[\]]*\])?\s*:\s*)", re.I)
_SUBJ_BLOB = re.compile(r"^\s*\[[^\[\]]*\]\s*")
_SUBJ_TRAILER = re.compile(r"\s*\(fwd\)\s*$", re.I)
_WS = re.compile(r"\s+")


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1: the subject without Re:, Fwd:, [list] tags and (fwd) trailers."""
    text = _WS.sub(" ", subject or "").strip()
    while True:
        before = text
        text = _SUBJ_TRAILER.sub("", text)
        while True:
            stripped = _SUBJ_LEADER.sub("", text)
            blob = _SUBJ_BLOB.sub("", stripped)
            stripped = blob if blob else stripped
            if stripped == text:
                break
            text = stripped
        if text.lower().startswith("[fwd:") and text.endswith("]"):
            text = text[5:-1].strip()
        if text == before:
            return text.upper()


def _sent(message: Message, parsed: ParsedMessage | None) -> float:
    """RFC 5256 §2.2: the Date header, else the internal date."""
    if parsed is not None and parsed.date is not None:
        return parsed.date.timestamp()
    return float(message.internaldate)


def _first_mailbox(addresses: list[Address]) -> str:
    return (addresses[0].mailbox or "").upper() if addresses else ""


def _display(addresses: list[Address]) -> str:
    if not addresses:
        return ""
    a = addresses[0]
    return (a.name or f"{a.mailbox or ''}@{a.host or ''}").upper()


def _sort_key(name: str, m: Message, p: ParsedMessage | None) -> object:
    if name == "ARRIVAL":
        return m.internaldate
    if name == "SIZE":
        return m.size
    if name == "DATE":
        return _sent(m, p)
    if p is None:
        return ""
    if name == "SUBJECT":
        return base_subject(p.subject)
    if name == "FROM":
        return _first_mailbox(p.from_)
    if name == "TO":
        return _first_mailbox(p.to)
    if name == "CC":
        return _first_mailbox(p.cc)
    if name == "DISPLAYFROM":
        return _display(p.from_)
    if name == "DISPLAYTO":
        return _display(p.to)
    return ""


def sort_messages(messages: Sequence[Message], parsed: Mapping[int, ParsedMessage],
                  criteria: Sequence[SortCriterion]) -> list[Message]:
    """Messages in the order the criteria give; stable sorts applied last key first."""
    ordered = sorted(messages, key=lambda m: m.uid)
    for criterion in reversed(criteria):
        ordered.sort(key=lambda m: _sort_key(criterion.key, m, parsed.get(m.blob_id)),  # type: ignore[arg-type, return-value]
                     reverse=criterion.reverse)
    return ordered


# --- THREAD ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Container:
    message: Message | None = None
    parent: _Container | None = None
    children: list[_Container] = field(default_factory=list)
    date: float = 0.0

    def ancestor_of(self, other: _Container) -> bool:
        node: _Container | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def link(self, child: _Container) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)


def thread_messages(messages: Sequence[Message], parsed: Mapping[int, ParsedMessage],
                    algorithm: str, numbers: Mapping[int, int]) -> list[ThreadNode]:
    """THREAD roots for `algorithm`; `numbers` maps a UID to what the client is shown."""
    if algorithm == "ORDEREDSUBJECT":
        return _ordered_subject(messages, parsed, numbers)
    return _references(messages, parsed, numbers)


def _ordered_subject(messages: Sequence[Message], parsed: Mapping[int, ParsedMessage],
                     numbers: Mapping[int, int]) -> list[ThreadNode]:
    """RFC 5256 §2.3: threads by base subject, each flat under its earliest message."""
    groups: dict[str, list[Message]] = {}
    for m in sort_messages(messages, parsed, [SortCriterion("SUBJECT"), SortCriterion("DATE")]):
        groups.setdefault(base_subject(_subject(parsed.get(m.blob_id))), []).append(m)
    threads = sorted(groups.values(), key=lambda g: (_sent(g[0], parsed.get(g[0].blob_id)), g[0].uid))
    roots = []
    for group in threads:
        children = tuple(ThreadNode(numbers[m.uid]) for m in group[1:])
        roots.append(ThreadNode(numbers[group[0].uid], children))
    return roots


def _subject(p: ParsedMessage | None) -> str | None:
    return p.subject if p is not None else None


def _references(messages: Sequence[Message], parsed: Mapping[int, ParsedMessage],
                numbers: Mapping[int, int]) -> list[ThreadNode]:
    """RFC 5256 §2.4, steps 1–4 and 6 (see the module doc)."""
    table: dict[str, _Container] = {}
    for m in sorted(messages, key=lambda m: m.uid):
        p = parsed.get(m.blob_id)
        mid = p.message_id if p is not None and p.message_id else f"<postbote-{m.uid}>"
        node = table.get(mid)
        if node is None or node.message is not None:
            if node is not None:
                mid = f"<postbote-dup-{m.uid}>"  # RFC 5256 §2.4 1.A: a duplicate gets its own
            node = table[mid] = _Container()
        node.message, node.date = m, _sent(m, p)
        refs = list(p.references) if p is not None else []
        if p is not None and not refs and p.in_reply_to:
            refs = [p.in_reply_to]
        previous: _Container | None = None
        for ref in refs:
            current = table.setdefault(ref, _Container())
            if previous is not None and current.parent is None and not current.ancestor_of(previous):
                previous.link(current)
            previous = current
        if previous is not None and previous is not node and not node.ancestor_of(previous):
            previous.link(node)
        elif node.parent is not None and previous is None:
            node.parent.children.remove(node)
            node.parent = None
    roots = [c for c in table.values() if c.parent is None]
    return [t for t in (_prune(r, numbers) for r in _by_date(roots)) for t in t]


def _by_date(nodes: list[_Container]) -> list[_Container]:
    return sorted(nodes, key=lambda n: (_first_date(n), n.message.uid if n.message else 0))


def _first_date(node: _Container) -> float:
    """RFC 5256 §2.4 step 6: a dummy sorts by its first child's date."""
    while node.message is None and node.children:
        node = _by_date(node.children)[0]
    return node.date


def _prune(node: _Container, numbers: Mapping[int, int]) -> list[ThreadNode]:
    """A container as ThreadNodes: empty dummies vanish, a dummy with one child is replaced by
    it, and at the root a dummy's children are kept under a NIL parent (RFC 5256 step 4)."""
    children = [t for child in _by_date(node.children) for t in _prune(child, numbers)]
    if node.message is not None:
        return [ThreadNode(numbers[node.message.uid], tuple(children))]
    if len(children) <= 1 or node.parent is not None:
        return children
    return [ThreadNode(None, tuple(children))]
