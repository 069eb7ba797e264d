"""Checks a parsed Sieve tree against the commands, tests and tags this server knows.

RFC 5228 §2.10.5 and §3.2: a script that uses an unknown command, a wrong argument, or an
extension it did not ``require`` is invalid as a whole and must be refused before it runs.
Each command's arguments are resolved here into ``tags`` and ``positional`` so that the
interpreter never looks at raw tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .grammar import Command, Number, SieveError, StringList, Tag, Test

# Capability names as ManageSieve's SIEVE capability lists them (RFC 5804 §1.7).
EXTENSIONS: tuple[str, ...] = (
    "fileinto", "reject", "ereject", "envelope", "imap4flags", "copy", "vacation",
    "subaddress", "mailbox", "body", "relational", "comparator-i;ascii-numeric", "variables",
)
# Always available (RFC 5228 §2.7.3), but a script may still require them by name.
_IMPLICIT = ("comparator-i;octet", "comparator-i;ascii-casemap")

COMPARATORS = {"i;octet": None, "i;ascii-casemap": None,
               "i;ascii-numeric": "comparator-i;ascii-numeric"}
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RELATIONAL_OPS = ("gt", "ge", "lt", "le", "eq", "ne")


@dataclass(frozen=True)
class TagSpec:
    argument: str | None = None  # None, "string", "strlist", "number"
    group: str | None = None  # at most one tag of a group (RFC 5228 §2.7.1)
    extension: str | None = None


@dataclass(frozen=True)
class Spec:
    positional: tuple[str, ...] = ()
    tags: dict[str, TagSpec] = field(default_factory=dict)
    extension: str | None = None
    tests: str = "none"  # "none", "one", "list"
    block: bool = False
    required_group: str | None = None


_COMPARATOR = {"comparator": TagSpec("string", "comparator")}
_MATCH = {
    "is": TagSpec(None, "match"), "contains": TagSpec(None, "match"),
    "matches": TagSpec(None, "match"),
    "count": TagSpec("string", "match", "relational"),
    "value": TagSpec("string", "match", "relational"),
}
_ADDRESS_PART = {
    "all": TagSpec(None, "address-part"), "localpart": TagSpec(None, "address-part"),
    "domain": TagSpec(None, "address-part"),
    "user": TagSpec(None, "address-part", "subaddress"),
    "detail": TagSpec(None, "address-part", "subaddress"),
}
_TRANSFORM = {
    "raw": TagSpec(None, "transform"), "text": TagSpec(None, "transform"),
    "content": TagSpec("strlist", "transform"),
}
_FLAGS = {"flags": TagSpec("strlist", None, "imap4flags")}
_COPY = {"copy": TagSpec(None, None, "copy")}

TESTS: dict[str, Spec] = {
    "address": Spec(("strlist", "strlist"), {**_COMPARATOR, **_MATCH, **_ADDRESS_PART}),
    "envelope": Spec(("strlist", "strlist"), {**_COMPARATOR, **_MATCH, **_ADDRESS_PART},
                     "envelope"),
    "header": Spec(("strlist", "strlist"), {**_COMPARATOR, **_MATCH}),
    "exists": Spec(("strlist",)),
    "size": Spec(("number",), {"over": TagSpec(None, "size"), "under": TagSpec(None, "size")},
                 required_group="size"),
    "allof": Spec(tests="list"),
    "anyof": Spec(tests="list"),
    "not": Spec(tests="one"),
    "true": Spec(),
    "false": Spec(),
    "hasflag": Spec(("strlist",), {**_COMPARATOR, **_MATCH}, "imap4flags"),
    "mailboxexists": Spec(("strlist",), {}, "mailbox"),
    "body": Spec(("strlist",), {**_COMPARATOR, **_MATCH, **_TRANSFORM}, "body"),
    "string": Spec(("strlist", "strlist"), {**_COMPARATOR, **_MATCH}, "variables"),
}

COMMANDS: dict[str, Spec] = {
    "require": Spec(("strlist",)),
    "if": Spec(tests="one", block=True),
    "elsif": Spec(tests="one", block=True),
    "else": Spec(block=True),
    "stop": Spec(),
    "keep": Spec((), {**_FLAGS}),
    "discard": Spec(),
    "fileinto": Spec(("string",), {**_FLAGS, **_COPY,
                                   "create": TagSpec(None, None, "mailbox")}, "fileinto"),
    "redirect": Spec(("string",), {**_COPY}),
    "reject": Spec(("string",), {}, "reject"),
    "ereject": Spec(("string",), {}, "ereject"),
    "vacation": Spec(("string",), {
        "days": TagSpec("number"), "subject": TagSpec("string"), "from": TagSpec("string"),
        "addresses": TagSpec("strlist"), "mime": TagSpec(), "handle": TagSpec("string"),
    }, "vacation"),
    "setflag": Spec(("strlist",), {}, "imap4flags"),
    "addflag": Spec(("strlist",), {}, "imap4flags"),
    "removeflag": Spec(("strlist",), {}, "imap4flags"),
    # RFC 5229 §4: one modifier per precedence level
    "set": Spec(("string", "string"), {
        "lower": TagSpec(None, "case"), "upper": TagSpec(None, "case"),
        "lowerfirst": TagSpec(None, "first"), "upperfirst": TagSpec(None, "first"),
        "quotewildcard": TagSpec(None, "quote"), "length": TagSpec(None, "length"),
    }, "variables"),
}


def _needs(line: int, what: str, extension: str | None, requires: set[str]) -> None:
    if extension is not None and extension not in requires:
        raise SieveError(line, f'{what} requires "{extension}"')


def _resolve(node: Command | Test, spec: Spec, kind: str, requires: set[str]) -> None:
    """Sort the arguments into tags and positionals, checking kinds and extensions."""
    args = node.arguments
    i = 0
    groups: dict[str, str] = {}
    while i < len(args) and isinstance(args[i], Tag):
        tag = args[i]
        assert isinstance(tag, Tag)
        tspec = spec.tags.get(tag.name)
        if tspec is None:
            raise SieveError(tag.line, f"{kind} {node.name} has no tag :{tag.name}")
        _needs(tag.line, f":{tag.name}", tspec.extension, requires)
        if tag.name in node.tags:
            raise SieveError(tag.line, f":{tag.name} given twice to {node.name}")
        if tspec.group is not None:
            if tspec.group in groups:
                raise SieveError(tag.line, f":{tag.name} conflicts with :{groups[tspec.group]}"
                                           f" in {node.name}")
            groups[tspec.group] = tag.name
        i += 1
        value: object = None
        if tspec.argument is not None:
            if i >= len(args):
                raise SieveError(tag.line, f":{tag.name} needs a {_KIND_NAMES[tspec.argument]}")
            value = _value(args[i], tspec.argument, f":{tag.name}", tag.line)
            i += 1
        node.tags[tag.name] = value
    rest = args[i:]
    if len(rest) != len(spec.positional):
        if any(isinstance(a, Tag) for a in rest):
            bad = next(a for a in rest if isinstance(a, Tag))
            raise SieveError(bad.line, f"tag :{bad.name} must come before the other "
                                       f"arguments of {node.name}")
        raise SieveError(node.line, f"{node.name} takes {len(spec.positional)} argument(s)"
                                    f" besides tags, got {len(rest)}")
    node.positional = [_value(a, want, node.name, node.line)
                       for a, want in zip(rest, spec.positional)]
    if spec.required_group and spec.required_group not in groups:
        raise SieveError(node.line, f"{node.name} needs one of "
                         + ", ".join(f":{t}" for t, s in spec.tags.items()
                                     if s.group == spec.required_group))
    _check_match_values(node, requires)


_KIND_NAMES = {"string": "string", "strlist": "string list", "number": "number"}


def _value(arg: object, want: str, what: str, line: int) -> object:
    if want == "number":
        if isinstance(arg, Number):
            return arg.value
    elif isinstance(arg, StringList):
        if want == "strlist":
            return list(arg.values)
        if not arg.is_list:  # RFC 5228 §2.4.2.1: a list is not accepted where a string is
            return arg.values[0]
    raise SieveError(getattr(arg, "line", line), f"{what} needs a {_KIND_NAMES[want]}")


def _check_match_values(node: Command | Test, requires: set[str]) -> None:
    comparator = node.tags.get("comparator")
    if comparator is not None:
        assert isinstance(comparator, str)
        if comparator.lower() not in COMPARATORS:
            raise SieveError(node.line, f'unknown comparator "{comparator}"')
        _needs(node.line, f'comparator "{comparator}"', COMPARATORS[comparator.lower()], requires)
        node.tags["comparator"] = comparator.lower()
        # RFC 4790 §9.1: i;ascii-numeric offers equality and ordering, not substrings
        if comparator.lower() == "i;ascii-numeric" and ("contains" in node.tags
                                                        or "matches" in node.tags):
            raise SieveError(node.line, "comparator i;ascii-numeric cannot be used with "
                             + (":contains" if "contains" in node.tags else ":matches"))
    for rel in ("count", "value"):
        op = node.tags.get(rel)
        if rel in node.tags:
            if not isinstance(op, str) or op.lower() not in RELATIONAL_OPS:
                raise SieveError(node.line, f':{rel} needs one of "gt", "ge", "lt", "le", "eq",'
                                            f' "ne", got "{op}"')
            node.tags[rel] = op.lower()


def _test(test: Test, requires: set[str]) -> None:
    spec = TESTS.get(test.name)
    if spec is None:
        raise SieveError(test.line, f"unknown test {test.name}")
    _needs(test.line, test.name, spec.extension, requires)
    _resolve(test, spec, "test", requires)
    _test_part(test, spec, "test", requires)


def _test_part(node: Command | Test, spec: Spec, kind: str, requires: set[str]) -> None:
    count = len(node.tests)
    if spec.tests == "none" and count:
        raise SieveError(node.line, f"{kind} {node.name} takes no test")
    if spec.tests == "one" and (count != 1 or node.listed):
        raise SieveError(node.line, f"{kind} {node.name} needs exactly one test")
    if spec.tests == "list" and (count == 0 or not node.listed):
        raise SieveError(node.line, f"{node.name} needs a test list in parentheses")
    for t in node.tests:
        _test(t, requires)


def _commands(commands: list[Command], requires: set[str], top: bool) -> None:
    previous: str | None = None
    seen_other = False
    for cmd in commands:
        spec = COMMANDS.get(cmd.name)
        if spec is None:
            raise SieveError(cmd.line, f"unknown command {cmd.name}")
        if cmd.name == "require":
            # RFC 5228 §3.2: require only at the start of the script, before anything else
            if not top or seen_other:
                raise SieveError(cmd.line, "require must come before any other command")
            _resolve(cmd, spec, "command", requires)
            for ext in cmd.positional[0]:  # type: ignore[union-attr]
                if ext not in EXTENSIONS and ext not in _IMPLICIT:
                    raise SieveError(cmd.line, f'unsupported extension "{ext}"')
                requires.add(ext)
        else:
            seen_other = True
            _needs(cmd.line, cmd.name, spec.extension, requires)
            _resolve(cmd, spec, "command", requires)
            if cmd.name == "set" and not _VARIABLE_NAME.fullmatch(str(cmd.positional[0])):
                raise SieveError(cmd.line, f'invalid variable name "{cmd.positional[0]}"'
                                           " (RFC 5229 §4: letters, digits and _)")
        if cmd.name in ("elsif", "else") and previous not in ("if", "elsif"):
            raise SieveError(cmd.line, f"{cmd.name} without a preceding if")
        _test_part(cmd, spec, "command", requires)
        if spec.block and cmd.block is None:
            raise SieveError(cmd.line, f"{cmd.name} needs a block {{ ... }}")
        if not spec.block and cmd.block is not None:
            raise SieveError(cmd.line, f"{cmd.name} takes no block")
        if cmd.block is not None:
            _commands(cmd.block, requires, top=False)
        previous = cmd.name


def validate(commands: list[Command]) -> frozenset[str]:
    """Check ``commands`` in place; the set of required extensions, or SieveError."""
    requires: set[str] = set()
    _commands(commands, requires, top=True)
    return frozenset(requires)
