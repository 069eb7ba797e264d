"""NOTIFY (RFC 5465): what one session asked to be told about, and which mailboxes that covers.

Sans-I/O: the session hands in a parsed `Notify` command and mailbox names; this module checks
the command against the RFC's rules and answers "which events does this mailbox get". It holds
only the command's filters, so an idle connection with NOTIFY on costs a few hundred bytes.

Decisions:
- Supported events: MessageNew, MessageExpunge, FlagChange, MailboxName, SubscriptionChange.
  AnnotationChange, the METADATA events and QuotaChange are refused with NO [BADEVENT].
- `inboxes` is INBOX: Sieve may file elsewhere, but INBOX is where delivery aims.
- A mailbox matching several groups gets the events of the first one (in the client's order).
- The selected mailbox is reported only through `selected`/`selected-delayed`; it never gets a
  STATUS notification (RFC 5465 §5.2: STATUS is for mailboxes other than the selected one).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from postbote.imap import commands as c
from postbote.store.types import DELIMITER

SUPPORTED_EVENTS = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"})
# The change feed's kinds and the message events that report them.
KIND_EVENTS = {"new": "MessageNew", "expunge": "MessageExpunge", "flags": "FlagChange"}


@dataclass(frozen=True)
class Refusal:
    """Why a NOTIFY SET is refused: `status` is BAD or NO; `badevent` asks for the BADEVENT code."""

    status: str
    text: str
    badevent: bool = False


def check(cmd: c.Notify) -> Refusal | None:
    """The RFC 5465 §3.1 and §5 rules a NOTIFY SET must follow; None when it is acceptable."""
    for group in cmd.groups:
        names = {event.name for event in group.events}
        unknown = sorted(names - set(SUPPORTED_EVENTS))
        if unknown:
            # RFC 5465 §3.1: an unsupported event is NO [BADEVENT (the supported ones)]
            return Refusal("NO", f"unsupported event {unknown[0]}", badevent=True)
    selected = [g for g in cmd.groups if g.filter in ("SELECTED", "SELECTED-DELAYED")]
    if len(selected) > 1:
        return Refusal("BAD", "selected and selected-delayed may be given once, not both")
    for group in cmd.groups:
        problem = _check_group(group)
        if problem is not None:
            return Refusal("BAD", problem)
    return None


def _check_group(group: c.NotifyGroup) -> str | None:
    names = {event.name for event in group.events}
    # RFC 5465 §5: MessageNew and MessageExpunge go together; FlagChange needs both
    if ("MessageNew" in names) != ("MessageExpunge" in names):
        return "MessageNew and MessageExpunge must be requested together"
    if "FlagChange" in names and "MessageNew" not in names:
        return "FlagChange needs MessageNew and MessageExpunge"
    with_atts = any(event.fetch_atts for event in group.events)
    if with_atts and group.filter not in ("SELECTED", "SELECTED-DELAYED"):
        # RFC 5465 §5.2: fetch attributes only make sense where messages have numbers
        return "MessageNew fetch attributes are only for the selected mailbox"
    return None


@dataclass(slots=True)
class NotifyState:
    """One session's active NOTIFY SET (see the module doc)."""

    selected: frozenset[str] | None  # events for the selected mailbox; None: no selected filter
    delayed: bool  # selected-delayed: expunges wait for a command that allows them
    fetch_atts: tuple[c.FetchItem, ...]  # MessageNew (...) for the selected mailbox
    groups: tuple[c.NotifyGroup, ...]  # the filters for other mailboxes, in order

    @classmethod
    def of(cls, cmd: c.Notify) -> NotifyState:
        selected: frozenset[str] | None = None
        delayed = False
        atts: tuple[c.FetchItem, ...] = ()
        others = []
        for group in cmd.groups:
            if group.filter in ("SELECTED", "SELECTED-DELAYED"):
                selected = frozenset(event.name for event in group.events)
                delayed = group.filter == "SELECTED-DELAYED"
                atts = next((e.fetch_atts for e in group.events if e.fetch_atts), ())
            else:
                others.append(group)
        return cls(selected, delayed, atts, tuple(others))

    @property
    def needs_subscriptions(self) -> bool:
        """Whether matching or reporting needs the account's subscription list."""
        return any(g.filter == "SUBSCRIBED" or any(e.name == "SubscriptionChange" for e in g.events)
                   for g in self.groups)

    def events_for(self, name: str, subscribed: Collection[str] = ()) -> frozenset[str]:
        """The events asked for a mailbox other than the selected one (first matching group)."""
        for group in self.groups:
            if _matches(group, name, subscribed):
                return frozenset(event.name for event in group.events)
        return frozenset()

    def status_wanted(self, name: str, subscribed: Collection[str] = ()) -> bool:
        return bool(self.events_for(name, subscribed) & MESSAGE_EVENTS)

    def reports(self, name: str, kinds: Iterable[str], subscribed: Collection[str] = ()) -> bool:
        """Whether a change of these feed kinds to this mailbox is a STATUS notification."""
        events = self.events_for(name, subscribed)
        return any(KIND_EVENTS.get(kind) in events for kind in kinds)


def _matches(group: c.NotifyGroup, name: str, subscribed: Collection[str]) -> bool:
    """RFC 5465 §6: the mailbox filters."""
    if group.filter == "PERSONAL":
        return True
    if group.filter == "INBOXES":
        return name == "INBOX"
    if group.filter == "SUBSCRIBED":
        return name in subscribed
    if group.filter == "MAILBOXES":
        return name in group.mailboxes
    if group.filter == "SUBTREE":
        return any(name == root or name.startswith(root + DELIMITER) for root in group.mailboxes)
    return False
