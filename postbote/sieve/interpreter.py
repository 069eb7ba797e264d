"""Runs a parsed Sieve script against one message, sans I/O (RFC 5228 §2.10, §4, §5).

The caller hands in the header fields, the raw message (for the body test), the envelope and
what it knows of the account; out comes the list of actions to perform. The interpreter
never touches a store or a socket: delivery performs the actions.

RFC 5228 §2.10.6: a runtime error cancels every action and falls back to an implicit keep;
``Outcome.error`` then says why, for the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from postbote.mail.charsets import decode_text
from postbote.mail.encodedwords import decode_words
from postbote.mail.headers import parse_address_list
from postbote.mail.mime import scan_message
from postbote.mail.transfer import decode_transfer

import re

from .grammar import Command, Script, Test
from .match import match_any, match_captures


# -- actions -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keep:
    """Store in the default mailbox (RFC 5228 §4.3), with IMAP flags (RFC 5232 §5)."""

    flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FileInto:
    mailbox: str
    flags: frozenset[str] = frozenset()
    create: bool = False  # RFC 5490 §3.2


@dataclass(frozen=True)
class Discard:
    pass


@dataclass(frozen=True)
class Redirect:
    address: str
    copy: bool = False  # RFC 3894


@dataclass(frozen=True)
class Reject:
    reason: str
    ereject: bool = False  # RFC 5429 §2.1: refuse in the SMTP dialogue when possible


@dataclass(frozen=True)
class Vacation:
    """An auto-reply the interpreter found due (RFC 5230 §4); delivery still checks the
    once-per-period record with ``handle`` and ``days``."""

    reason: str
    recipient: str  # the envelope sender the reply goes to
    subject: str
    from_: str | None
    days: int
    handle: str
    mime: bool
    in_reply_to: str | None
    references: str | None


Action = Keep | FileInto | Discard | Redirect | Reject | Vacation


@dataclass(frozen=True)
class Limits:
    max_actions: int = 32
    max_redirects: int = 4
    max_body_bytes: int = 1 << 20  # the body test reads at most this much of the message


@dataclass(frozen=True)
class Message:
    """What a script may look at. ``fields`` are unfolded but not RFC 2047-decoded."""

    fields: list[tuple[str, str]]
    size: int
    mail_from: str  # "" for the null reverse-path
    rcpt_to: str
    raw: bytes = b""
    # the account's own addresses (its address and aliases), for vacation (RFC 5230 §4.5)
    my_addresses: tuple[str, ...] = ()
    mailboxes: frozenset[str] = frozenset()  # existing mailbox names, for mailboxexists


@dataclass
class Outcome:
    actions: list[Action]
    error: str | None = None  # a runtime error: the actions are then just the implicit keep


class RuntimeSieveError(Exception):
    """RFC 5228 §2.10.6: an action that cannot be carried out."""


# -- interpreter -------------------------------------------------------------------------------

class _Stop(Exception):
    pass


@dataclass
class _State:
    message: Message
    limits: Limits
    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True
    flags: set[str] = field(default_factory=set)  # RFC 5232 §3: the internal variable
    redirects: int = 0
    body_cache: dict[str, list[str]] = field(default_factory=dict)
    variables: dict[str, str] | None = None  # None: the script did not require "variables"
    match_variables: list[str] = field(default_factory=list)


def run(script: Script, message: Message, limits: Limits = Limits()) -> Outcome:
    """The actions ``script`` takes on ``message``; never raises for a runtime problem."""
    state = _State(message, limits)
    if "variables" in script.requires:
        state.variables = {}
    try:
        try:
            _block(script.commands, state)
        except _Stop:
            pass
        _check_conflicts(state)
    except (RuntimeSieveError, ValueError, RecursionError) as err:
        return Outcome([Keep()], f"runtime error, implicit keep: {err}")
    actions = list(state.actions)
    if state.implicit_keep:
        # RFC 5228 §2.10.2 and RFC 5232 §3: the implicit keep carries the current flags
        actions.append(Keep(frozenset(state.flags)))
    if not any(isinstance(a, (Keep, FileInto, Redirect, Reject)) for a in actions):
        actions.append(Discard())  # RFC 5228 §4.4: nothing keeps the message; say so
    return Outcome(_dedupe(actions))


def _check_conflicts(state: _State) -> None:
    """RFC 5429 §2.1: reject is incompatible with keeping the message or answering it."""
    kinds = {type(a) for a in state.actions}
    if Reject in kinds and (kinds & {Keep, FileInto, Vacation}):
        raise RuntimeSieveError("reject cannot be combined with keep, fileinto or vacation")


def _dedupe(actions: list[Action]) -> list[Action]:
    """RFC 5228 §2.10.3: the same fileinto or redirect twice happens once; keeps merge."""
    out: list[Action] = []
    seen: set[object] = set()
    for action in actions:
        if isinstance(action, FileInto):
            key: object = ("fileinto", action.mailbox)
        elif isinstance(action, Keep):
            key = ("keep",)
        elif isinstance(action, Redirect):
            key = ("redirect", action.address.lower())
        else:
            key = action
        if key in seen:
            continue
        seen.add(key)
        out.append(action)
    return out


# -- variables (RFC 5229) ----------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")
MAX_VARIABLE_LENGTH = 4096  # RFC 5229 §6: an implementation limit; longer values are cut
_NOT_EXPANDED = ("comparator", "count", "value")


def _expand(text: str, state: _State) -> str:
    """RFC 5229 §3: replace ${name} and ${digit}; unknown names become the empty string,
    references that are not well formed stay as written. One pass, no re-expansion."""
    variables = state.variables
    if variables is None or "${" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.isdigit():
            index = int(name)
            return state.match_variables[index] if index < len(state.match_variables) else ""
        return variables.get(name.lower(), "")

    return _REFERENCE.sub(one, text)


def _view(node: Command | Test, state: _State) -> Command | Test:
    """``node`` with its string arguments expanded (a copy; the cached script stays as is)."""
    if state.variables is None:
        return node

    def value(v: object) -> object:
        if isinstance(v, str):
            return _expand(v, state)
        if isinstance(v, list):
            return [_expand(x, state) for x in v]
        return v

    copy = Command(node.name, node.arguments, node.tests, None, node.line) \
        if isinstance(node, Command) else Test(node.name, node.arguments, node.tests, node.line)
    copy.tags = {k: (v if k in _NOT_EXPANDED else value(v)) for k, v in node.tags.items()}
    start = 1 if node.name == "set" else 0  # the variable's name is not expanded
    copy.positional = node.positional[:start] + [value(v) for v in node.positional[start:]]
    return copy


def _set(cmd: Command, state: _State) -> None:
    """RFC 5229 §4: modifiers apply from the highest precedence down."""
    name, text = str(cmd.positional[0]).lower(), str(cmd.positional[1])
    tags = cmd.tags
    if "lower" in tags:
        text = text.lower()
    elif "upper" in tags:
        text = text.upper()
    if "lowerfirst" in tags:
        text = text[:1].lower() + text[1:]
    elif "upperfirst" in tags:
        text = text[:1].upper() + text[1:]
    if "quotewildcard" in tags:
        text = re.sub(r"([*?\\])", r"\\\1", text)
    if "length" in tags:
        text = str(len(text))
    assert state.variables is not None
    state.variables[name] = text[:MAX_VARIABLE_LENGTH]


def _capture(test: Test, state: _State) -> Callable[[str, str], None] | None:
    """The on_match hook that sets ${0}…${9} after a successful :matches (RFC 5229 §3.2)."""
    if state.variables is None or "matches" not in test.tags:
        return None

    def hook(value: str, key: str) -> None:
        state.match_variables = [c[:MAX_VARIABLE_LENGTH]
                                 for c in match_captures(test.tags, value, key)[:10]]
    return hook


def _block(commands: list[Command], state: _State) -> None:
    taken = False  # whether the current if/elsif chain already ran a branch
    for cmd in commands:
        name = cmd.name
        if name == "if":
            taken = _test(cmd.tests[0], state)
            if taken:
                _block(cmd.block or [], state)
        elif name == "elsif":
            if not taken and _test(cmd.tests[0], state):
                taken = True
                _block(cmd.block or [], state)
        elif name == "else":
            if not taken:
                _block(cmd.block or [], state)
        else:
            _action(cmd, state)


def _add(state: _State, action: Action, cancels_keep: bool) -> None:
    if len(state.actions) >= state.limits.max_actions:
        raise RuntimeSieveError(f"more than {state.limits.max_actions} actions")
    state.actions.append(action)
    if cancels_keep:
        state.implicit_keep = False


def _flag_set(values: list[str]) -> set[str]:
    """RFC 5232 §3: each string is a space-separated list of flags; flags compare case-
    insensitively, so keep the first spelling of each."""
    out: dict[str, str] = {}
    for value in values:
        for flag in value.split():
            out.setdefault(flag.lower(), flag)
    return set(out.values())


def _remove_flags(current: set[str], gone: set[str]) -> set[str]:
    lowered = {f.lower() for f in gone}
    return {f for f in current if f.lower() not in lowered}


def _flags_for(cmd: Command, state: _State) -> frozenset[str]:
    if "flags" in cmd.tags:
        return frozenset(_flag_set(cmd.tags["flags"]))  # type: ignore[arg-type]
    return frozenset(state.flags)


def _action(cmd: Command, state: _State) -> None:
    cmd = _view(cmd, state)  # type: ignore[assignment]
    name, args, tags = cmd.name, cmd.positional, cmd.tags
    if name == "require":
        return
    if name == "stop":
        raise _Stop
    if name == "keep":
        _add(state, Keep(_flags_for(cmd, state)), True)
    elif name == "discard":
        state.implicit_keep = False  # RFC 5228 §4.4: discard only cancels the implicit keep
    elif name == "fileinto":
        _add(state, FileInto(str(args[0]), _flags_for(cmd, state), "create" in tags),
             "copy" not in tags)
    elif name == "redirect":
        _redirect(cmd, state)
    elif name in ("reject", "ereject"):
        _add(state, Reject(str(args[0]), name == "ereject"), True)
    elif name == "vacation":
        _vacation(cmd, state)
    elif name == "setflag":
        state.flags = _flag_set(args[0])  # type: ignore[arg-type]
    elif name == "addflag":
        state.flags = _flag_set(sorted(state.flags) + list(args[0]))  # type: ignore[operator]
    elif name == "removeflag":
        state.flags = _remove_flags(state.flags, _flag_set(args[0]))  # type: ignore[arg-type]
    elif name == "set":
        _set(cmd, state)


def _redirect(cmd: Command, state: _State) -> None:
    address = str(cmd.positional[0]).strip()
    if "@" not in address or any(c in address for c in " <>,\r\n"):
        raise RuntimeSieveError(f'redirect to an invalid address "{address}"')
    if not any(isinstance(a, Redirect) and a.address.lower() == address.lower()
               for a in state.actions):
        state.redirects += 1
        if state.redirects > state.limits.max_redirects:
            raise RuntimeSieveError(f"more than {state.limits.max_redirects} redirects")
    _add(state, Redirect(address, "copy" in cmd.tags), "copy" not in cmd.tags)


# -- vacation (RFC 5230) -----------------------------------------------------------------------

_LIST_FIELDS = ("list-id", "list-help", "list-subscribe", "list-unsubscribe", "list-post",
                "list-owner", "list-archive")


def _fields(message: Message, name: str) -> list[str]:
    wanted = name.lower()
    return [v for k, v in message.fields if k.lower() == wanted]


def _addresses_in(message: Message, names: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for name in names:
        for value in _fields(message, name):
            for addr in parse_address_list(value):
                if addr.addr_spec:
                    out.add(addr.addr_spec.lower())
    return out


def _vacation_allowed(message: Message, mine: list[str]) -> bool:
    """RFC 5230 §4.5–4.6 and RFC 3834 §2: never answer the null sender, lists, bulk mail,
    automatic messages, or mail not addressed to one of the account's addresses."""
    sender = message.mail_from.lower()
    if not sender or sender.startswith(("mailer-daemon@", "owner-")) or "-request@" in sender:
        return False
    if any(_fields(message, f) for f in _LIST_FIELDS):
        return False
    if any(v.strip().lower() in ("bulk", "list", "junk") for v in _fields(message, "precedence")):
        return False
    if any(v.strip().lower() != "no" for v in _fields(message, "auto-submitted")):
        return False
    own = {m.lower() for m in mine} | {_without_detail(m.lower()) for m in mine}
    if sender in own:
        return False  # RFC 5230 §4.6: never answer oneself
    return bool(_addresses_in(message, ("to", "cc", "bcc", "resent-to", "resent-cc")) & own)


def _without_detail(address: str) -> str:
    """user+detail@domain → user@domain (RFC 5233): the account's address without the detail."""
    local, at, domain = address.rpartition("@")
    return local.split("+", 1)[0] + at + domain if at else address


def _vacation(cmd: Command, state: _State) -> None:
    tags, message = cmd.tags, state.message
    reason = str(cmd.positional[0])
    mine = list(message.my_addresses) + [message.rcpt_to] + list(tags.get("addresses") or [])
    if any(isinstance(a, Vacation) for a in state.actions):
        raise RuntimeSieveError("vacation used twice")
    if not _vacation_allowed(message, [m for m in mine if m]):
        return
    subject = tags.get("subject")
    if subject is None:  # RFC 5230 §4.1 / RFC 3834 §3.1.5: "Auto:" and the original subject
        original = decode_words(next(iter(_fields(message, "subject")), "")).strip()
        subject = f"Auto: {original}" if original else "Automated reply"
    days = tags.get("days")
    days = 7 if days is None else max(1, min(int(days), 365))  # type: ignore[arg-type]
    handle = tags.get("handle")
    if handle is None:  # RFC 5230 §4.2: derived from the arguments that shape the reply
        basis = "\0".join(str(x) for x in (reason, tags.get("subject"), tags.get("from"),
                                           tags.get("mime") is not None))
        handle = hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    message_id = next(iter(_fields(message, "message-id")), None)
    references = " ".join(x for x in (next(iter(_fields(message, "references")), None),
                                      message_id) if x) or None
    _add(state, Vacation(reason, message.mail_from, str(subject),
                         None if tags.get("from") is None else str(tags["from"]), days,
                         str(handle), "mime" in tags, message_id, references), False)


# -- tests -------------------------------------------------------------------------------------

def _test(test: Test, state: _State) -> bool:
    name = test.name
    if name == "true":
        return True
    if name == "false":
        return False
    if name == "not":
        return not _test(test.tests[0], state)
    if name == "allof":
        return all(_test(t, state) for t in test.tests)
    if name == "anyof":
        return any(_test(t, state) for t in test.tests)
    return _TESTS[name](_view(test, state), state)  # type: ignore[arg-type]


def _keys(test: Test) -> list[str]:
    return list(test.positional[-1])  # type: ignore[arg-type]


def _header_test(test: Test, state: _State) -> bool:
    # RFC 5228 §5.7: unfolded, decoded per RFC 2047, leading and trailing whitespace dropped
    values = [decode_words(v).strip() for name in test.positional[0]  # type: ignore[union-attr]
              for v in _fields(state.message, str(name))]
    if not values and "count" not in test.tags:
        return False
    return match_any(test.tags, values, _keys(test), _capture(test, state))


def _exists_test(test: Test, state: _State) -> bool:
    return all(_fields(state.message, str(n)) for n in test.positional[0])  # type: ignore[union-attr]


def _size_test(test: Test, state: _State) -> bool:
    limit = int(test.positional[0])  # type: ignore[arg-type]
    if "over" in test.tags:
        return state.message.size > limit
    return state.message.size < limit


def _part(tags: dict[str, object], address: str) -> str | None:
    """RFC 5228 §2.7.4 and RFC 5233 §4: the part of ``address`` the test compares."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if "localpart" in tags:
        return local
    if "domain" in tags:
        return domain
    if "user" in tags:
        return local.split("+", 1)[0]
    if "detail" in tags:
        user, plus, detail = local.partition("+")
        return detail if plus else None  # RFC 5233 §4: no separator, no detail to match
    return address


def _address_values(tags: dict[str, object], addresses: list[str]) -> list[str]:
    parts = (_part(tags, a) for a in addresses)
    return [p for p in parts if p is not None]


def _address_test(test: Test, state: _State) -> bool:
    addresses: list[str] = []
    for name in test.positional[0]:  # type: ignore[union-attr]
        for value in _fields(state.message, str(name)):
            for addr in parse_address_list(value):
                if addr.addr_spec is not None:
                    addresses.append(addr.addr_spec)
    values = _address_values(test.tags, addresses)
    if not values and "count" not in test.tags:
        return False
    return match_any(test.tags, values, _keys(test), _capture(test, state))


def _envelope_test(test: Test, state: _State) -> bool:
    addresses: list[str] = []
    for part in test.positional[0]:  # type: ignore[union-attr]
        part = str(part).lower()
        if part == "from":
            addresses.append(state.message.mail_from)
        elif part == "to":
            addresses.append(state.message.rcpt_to)
    values = [v for a in addresses for v in
              ([""] if a == "" else _address_values(test.tags, [a]))]  # RFC 5228 §5.4: null path
    if not values and "count" not in test.tags:
        return False
    return match_any(test.tags, values, _keys(test), _capture(test, state))


def _hasflag_test(test: Test, state: _State) -> bool:
    # RFC 5232 §4: each flag of the internal variable against each key (split into flags)
    keys = sorted(_flag_set(_keys(test)))
    return match_any(test.tags, sorted(state.flags), keys)


def _mailboxexists_test(test: Test, state: _State) -> bool:
    return all(str(n) in state.message.mailboxes for n in test.positional[0])  # type: ignore[union-attr]


def _body_texts(tags: dict[str, object], state: _State) -> list[str]:
    """RFC 5173 §5: the body as the transform shows it (:text by default)."""
    raw = state.message.raw[: state.limits.max_body_bytes]
    if "raw" in tags:
        cache_key = "raw"
    elif "content" in tags:
        cache_key = "content:" + "\0".join(tags["content"])  # type: ignore[arg-type]
    else:
        cache_key = "text"
    if cache_key in state.body_cache:
        return state.body_cache[cache_key]
    _fields_, root = scan_message(raw)
    if cache_key == "raw":
        out = [raw[root.bstart:].decode("utf-8", "replace")]
    else:
        wanted = list(tags["content"]) if "content" in tags else ["text"]  # type: ignore[call-overload]
        out = [_decode_part(raw, p) for p in root.walk()
               if not p.is_multipart and not p.is_message and _type_matches(p, wanted)]
    state.body_cache[cache_key] = out
    return out


def _type_matches(part: object, wanted: list[str]) -> bool:
    kind = f"{part.type}/{part.subtype}".lower()  # type: ignore[attr-defined]
    for w in wanted:
        w = w.lower()
        if w == "" or w == kind or ("/" not in w and kind.split("/")[0] == w):
            return True
    return False


def _decode_part(raw: bytes, part: object) -> str:
    data = decode_transfer(raw[part.bstart:part.bend], part.encoding)  # type: ignore[attr-defined]
    return decode_text(data, part.params.get("charset"))  # type: ignore[attr-defined]


def _body_test(test: Test, state: _State) -> bool:
    return match_any(test.tags, _body_texts(test.tags, state), _keys(test))


def _string_test(test: Test, state: _State) -> bool:
    # RFC 5229 §5: for :count, empty strings are not counted
    values = list(test.positional[0])  # type: ignore[call-overload]
    if "count" in test.tags:
        values = [v for v in values if v]
    return match_any(test.tags, values, _keys(test), _capture(test, state))


_TESTS = {
    "header": _header_test, "exists": _exists_test, "size": _size_test,
    "address": _address_test, "envelope": _envelope_test, "hasflag": _hasflag_test,
    "mailboxexists": _mailboxexists_test, "body": _body_test, "string": _string_test,
}
