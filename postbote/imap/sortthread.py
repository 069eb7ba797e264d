"""SORT and THREAD (RFC 5256, with RFC 5957 DISPLAYFROM/DISPLAYTO).

Both work on the messages SEARCH found and their cached parses; no I/O happens here.
Ties in SORT fall back to the message's order in the mailbox (its UID), as RFC 5256 §3 asks.
THREAD=REFERENCES follows RFC 5256 §2.4 in full: linking by References/In-Reply-To, pruning
dummies, sorting the root set, grouping root threads by base subject (a reply below the
message it answers, same-subject threads under a dummy NIL parent), and sorting siblings by
date.
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
    return subject_info(subject)[0]


def subject_info(subject: str | None) -> tuple[str, bool]:
    """RFC 5256 §2.1's base subject (upper-cased, for case-insensitive comparison), and
    whether the message is a reply or forward, which §2.4 step 5 asks. The RFC leaves that
    to the subject grammar: a subj-refwd part ("Re:", "Fwd:"), a "(fwd)" subj-trailer or a
    "[fwd: …]" subj-fwd wrapper, as Dovecot reads it too."""
    text = _WS.sub(" ", subject or "").strip()  # step 1
    reply = False
    while True:
        before = text
        text, trailers = _SUBJ_TRAILER.subn("", text)  # step 2
        reply = reply or trailers > 0
        while True:  # steps 3 to 5
            stripped, leaders = _SUBJ_LEADER.subn("", text)
            reply = reply or leaders > 0
            blob = _SUBJ_BLOB.sub("", stripped)
            stripped = blob if blob else stripped  # step 4: only if a subject remains
            if stripped == text:
                break
            text = stripped
        if text.lower().startswith("[fwd:") and text.endswith("]"):  # step 6
            text, reply = text[5:-1].strip(), True
        if text == before:
            return text.upper(), reply


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
    """RFC 5256 §2.4's container: a message, or a dummy (message None) standing for one
    that was referenced but is not among the messages threaded."""

    message: Message | None = None
    parent: _Container | None = None
    children: list[_Container] = field(default_factory=list)
    date: float = 0.0
    subject: str = ""  # base subject, upper-cased (RFC 5256 §2.1)
    reply: bool = False  # a reply or forward by its subject (see subject_info)

    def ancestor_of(self, other: _Container) -> bool:
        """True when `other` is this container or lies below it."""
        node: _Container | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def link(self, child: _Container) -> None:
        child.unlink()
        child.parent = self
        self.children.append(child)

    def unlink(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None


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
    """RFC 5256 §2.4, steps 1 to 6 in order."""
    containers = _link_references(messages, parsed)
    roots = [c for c in containers if c.parent is None]  # step 2: the root set
    roots = _sort_roots(_prune(roots))
    return _thread_nodes(_group_by_subject(roots), numbers)


def _link_references(messages: Sequence[Message], parsed: Mapping[int, ParsedMessage]) -> list[_Container]:
    """RFC 5256 §2.4 step 1: one container per message and per referenced Message-ID,
    linked parent to child; every container made, in the order made."""
    table: dict[str, _Container] = {}
    made: list[_Container] = []
    for m in sorted(messages, key=lambda m: m.uid):  # UID order is sequence order
        p = parsed.get(m.blob_id)
        node = _own_container(table, made, p.message_id if p is not None else None)
        node.message, node.date = m, _sent(m, p)
        node.subject, node.reply = subject_info(_subject(p))
        previous: _Container | None = None
        for ref in _message_references(p):
            current = table.get(ref)
            if current is None:
                current = table[ref] = _Container()  # 1.A: a dummy for an unknown ID
                made.append(current)
            # 1.A: keep an existing parent (References may be truncated) and never make a loop
            if previous is not None and current.parent is None and not current.ancestor_of(previous):
                previous.link(current)
            previous = current
        # 1.B: the last reference is the parent; no references means no parent
        if previous is None:
            node.unlink()
        elif not node.ancestor_of(previous):
            previous.link(node)
    return made


def _own_container(table: dict[str, _Container], made: list[_Container],
                   message_id: str | None) -> _Container:
    """RFC 5256 §2.4 1.A: the container for a message's own Message-ID. A message without
    one, or repeating one an earlier message already has, gets a container nobody can
    reference (the unique ID the RFC asks for)."""
    node = table.get(message_id) if message_id else None
    if node is None or node.message is not None:
        node = _Container()
        if message_id and message_id not in table:
            table[message_id] = node
        made.append(node)
    return node


def _message_references(p: ParsedMessage | None) -> list[str]:
    """RFC 5256 §2.4 step 1: References, or else the first ID of In-Reply-To."""
    if p is None:
        return []
    # Only <bracketed> IDs count: the parser keeps bare words for display, but a References
    # field without any valid ID falls back to In-Reply-To.
    references = [r for r in p.references if _valid_id(r)]
    if references:
        return references
    return [p.in_reply_to] if p.in_reply_to and _valid_id(p.in_reply_to) else []


def _valid_id(message_id: str) -> bool:
    return len(message_id) > 2 and message_id.startswith("<") and message_id.endswith(">")


def _prune(roots: list[_Container]) -> list[_Container]:
    """RFC 5256 §2.4 step 3: a dummy with no children goes; a dummy with children gives
    way to them, except in the root set when it has two or more. Iterative, children
    before parents, since a References chain can be thousands of dummies deep."""
    stand_in: dict[_Container, list[_Container]] = {}
    for node in reversed(_preorder(roots)):
        kept = [k for child in node.children for k in stand_in.pop(child)]
        node.children = kept
        for k in kept:
            k.parent = node
        at_root = node.parent is None
        if node.message is not None or (at_root and len(kept) > 1):
            stand_in[node] = [node]
        else:
            stand_in[node] = kept
    pruned = [k for root in roots for k in stand_in[root]]
    for root in pruned:
        root.parent = None
    return pruned


def _preorder(roots: list[_Container]) -> list[_Container]:
    """Every container below `roots`, each before its children."""
    order: list[_Container] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    return order


def _date_key(node: _Container) -> tuple[float, int]:
    """RFC 5256 §2.2: sent date, ties by mailbox order; a dummy sorts as its first child."""
    while node.message is None and node.children:
        node = min(node.children, key=_date_key)
    return node.date, node.message.uid if node.message is not None else 0


def _by_date(nodes: list[_Container]) -> list[_Container]:
    return sorted(nodes, key=_date_key)


def _sort_roots(roots: list[_Container]) -> list[_Container]:
    """RFC 5256 §2.4 step 4: the root set by date; a dummy's children are sorted first,
    and the dummy sorts as its first child."""
    for root in roots:
        if root.message is None:
            root.children = _by_date(root.children)
    return _by_date(roots)


def _thread_subject(root: _Container) -> _Container:
    """RFC 5256 §2.4 5.B.i: the container whose subject is the thread's: the root, or
    a dummy root's first child."""
    return root if root.message is not None or not root.children else root.children[0]


def _group_by_subject(roots: list[_Container]) -> list[_Container]:
    """RFC 5256 §2.4 step 5: threads in the root set with one base subject are merged."""
    table = _subject_table(roots)
    made: list[_Container] = []
    for root in roots:
        subject = _thread_subject(root).subject
        # 5.C.ii: an empty subject groups nothing; a root this loop already put below a
        # new dummy is no longer a child of the root
        if not subject or root.parent is not None:
            continue
        held = table[subject]
        if held is root:  # 5.C.iv
            continue
        if held.message is None and root.message is None:
            # both dummies: the current one's children join the table's, and it goes
            for child in root.children:
                child.parent = held
            held.children += root.children
            root.children = []
        elif held.message is None or (root.reply and not held.reply):
            # below a dummy, or a reply/forward below the message it answers
            held.link(root)
        else:
            # otherwise both become children of a new dummy, which takes the table slot
            dummy = _Container()
            dummy.link(held)
            dummy.link(root)
            table[subject] = dummy
            made.append(dummy)
    return [r for r in roots + made if r.parent is None and (r.message is not None or r.children)]


def _subject_table(roots: list[_Container]) -> dict[str, _Container]:
    """RFC 5256 §2.4 5.A/5.B: one root per base subject, preferring a dummy, then a
    message that is not a reply or forward, then the earliest."""
    table: dict[str, _Container] = {}
    for root in roots:
        subject = _thread_subject(root).subject
        if not subject:  # 5.B.ii
            continue
        held = table.get(subject)
        if held is None:
            table[subject] = root
        elif held.message is not None and (root.message is None or (held.reply and not root.reply)):
            table[subject] = root
    return table


def _thread_nodes(roots: list[_Container], numbers: Mapping[int, int]) -> list[ThreadNode]:
    """RFC 5256 §2.4 step 6: siblings by date at every level, children before parents
    (iteratively, as in _prune); a dummy is a NIL parent."""
    built: dict[_Container, ThreadNode] = {}
    for node in reversed(_preorder(roots)):
        children = tuple(built.pop(child) for child in _by_date(node.children))
        built[node] = ThreadNode(numbers[node.message.uid] if node.message is not None else None, children)
    return [built[root] for root in _by_date(roots)]
