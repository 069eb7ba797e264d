"""Sieve mail filtering (RFC 5228) with the extensions listed in ``EXTENSIONS``.

``parse`` turns a script into a validated ``Script`` (or raises ``SieveError`` naming the line);
``interpreter.run`` evaluates it against one message, sans I/O, and returns the actions.
ManageSieve and the CLI use ``parse`` to refuse invalid scripts before storing them.
"""

from __future__ import annotations

from .grammar import Command, Script, SieveError, Test, parse_tree
from .validate import EXTENSIONS, validate

MAX_SCRIPT_SIZE: int = 64 * 1024  # bytes of UTF-8; ManageSieve's MAXSCRIPTSIZE as well

__all__ = ["EXTENSIONS", "MAX_SCRIPT_SIZE", "Command", "Script", "SieveError", "Test", "parse"]


def parse(text: str) -> Script:
    """The validated script, or SieveError for any syntax or semantic problem (RFC 5228 §8)."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise SieveError(1, "script is not valid UTF-8 text") from None
    if size > MAX_SCRIPT_SIZE:
        raise SieveError(1, f"script is {size} bytes, more than the limit of {MAX_SCRIPT_SIZE}")
    commands = parse_tree(text)
    requires = validate(commands)
    return Script(commands, requires)
