"""Sieve lexer and parser (RFC 5228 §8): text in, a syntax tree out, nothing checked but form.

Validation of commands, tests and extensions lives in ``validate.py``; this module only knows the
grammar, so that every syntax error carries the line where it happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_NESTING = 32  # blocks, test lists and string lists together; keeps recursion bounded


class SieveError(Exception):
    """An invalid script (or, at run time, an impossible action); ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Tag:
    name: str  # lower case, without the colon
    line: int


@dataclass(frozen=True)
class Number:
    value: int
    line: int


@dataclass(frozen=True)
class StringList:
    """A string or a string list; ``is_list`` tells which was written (RFC 5228 §2.4.2.1)."""

    values: tuple[str, ...]
    is_list: bool
    line: int


Argument = Tag | Number | StringList


@dataclass
class Test:
    name: str
    arguments: list[Argument]
    tests: list[Test]
    line: int
    listed: bool = False  # the tests were written as a parenthesised test-list
    # filled in by validation: tag name -> its value (None for a bare tag)
    tags: dict[str, object] = field(default_factory=dict)
    positional: list[object] = field(default_factory=list)


@dataclass
class Command:
    name: str
    arguments: list[Argument]
    tests: list[Test]
    block: list[Command] | None
    line: int
    listed: bool = False
    tags: dict[str, object] = field(default_factory=dict)
    positional: list[object] = field(default_factory=list)


@dataclass
class Script:
    commands: list[Command]
    requires: frozenset[str]


# -- lexer -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # "id", "tag", "num", "str", "mstr", or the punctuation itself
    value: object
    line: int


_PUNCT = "[](){},;"
_QUANT = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MAX_NUMBER = (1 << 63) - 1


def _is_id_start(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_id_char(c: str) -> bool:
    return _is_id_start(c) or ("0" <= c <= "9")


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            self._skip_space()
            if self.pos >= len(self.text):
                return out
            out.append(self._token())

    def _skip_space(self) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c == "\n":
                self.line += 1
                self.pos += 1
            elif c in " \t\r":
                self.pos += 1
            elif c == "#":  # RFC 5228 §2.3: hash comment to end of line
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):  # bracket comment, not nested
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise SieveError(self.line, "unterminated /* comment")
                self.line += text.count("\n", self.pos, end)
                self.pos = end + 2
            else:
                return

    def _token(self) -> Token:
        text, line = self.text, self.line
        c = text[self.pos]
        if c in _PUNCT:
            self.pos += 1
            return Token(c, c, line)
        if c == '"':
            return Token("str", self._quoted(), line)
        if c == ":":
            self.pos += 1
            if self.pos >= len(text) or not _is_id_start(text[self.pos]):
                raise SieveError(line, "a tag needs a name after ':'")
            return Token("tag", self._identifier().lower(), line)
        if "0" <= c <= "9":
            return Token("num", self._number(), line)
        if _is_id_start(c):
            word = self._identifier()
            if word.lower() == "text" and self.pos < len(text) and text[self.pos] == ":":
                self.pos += 1
                return Token("mstr", self._multiline(), line)
            return Token("id", word.lower(), line)
        raise SieveError(line, f"unexpected character {c!r}")

    def _identifier(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and _is_id_char(self.text[self.pos]):
            self.pos += 1
        return self.text[start:self.pos]

    def _number(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and "0" <= self.text[self.pos] <= "9":
            self.pos += 1
        value = int(self.text[start:self.pos]) if self.pos - start < 25 else MAX_NUMBER + 1
        if self.pos < len(self.text) and self.text[self.pos].lower() in _QUANT:
            value *= _QUANT[self.text[self.pos].lower()]
            self.pos += 1
        if self.pos < len(self.text) and _is_id_char(self.text[self.pos]):
            raise SieveError(self.line, "a number is followed by letters")
        if value > MAX_NUMBER:
            raise SieveError(self.line, "number too large")
        return value

    def _quoted(self) -> str:
        # RFC 5228 §2.4.2: backslash escapes the next character; newlines may appear inside.
        text, start_line = self.text, self.line
        self.pos += 1
        parts: list[str] = []
        while True:
            if self.pos >= len(text):
                raise SieveError(start_line, "unterminated string")
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(parts)
            if c == "\\":
                if self.pos + 1 >= len(text):
                    raise SieveError(start_line, "unterminated string")
                c = text[self.pos + 1]
                self.pos += 1
            if c == "\n":
                self.line += 1
            parts.append(c)
            self.pos += 1

    def _multiline(self) -> str:
        # RFC 5228 §2.4.2 / §8.1: "text:" *(SP / HTAB) (hash-comment / CRLF), lines, "." CRLF
        text = self.text
        while self.pos < len(text) and text[self.pos] in " \t":
            self.pos += 1
        if self.pos < len(text) and text[self.pos] == "#":
            end = text.find("\n", self.pos)
            self.pos = len(text) if end < 0 else end
        if text.startswith("\r\n", self.pos):
            self.pos += 2
        elif text.startswith("\n", self.pos):
            self.pos += 1
        else:
            raise SieveError(self.line, "text: must be followed by a line break")
        start_line = self.line
        self.line += 1
        lines: list[str] = []
        while True:
            if self.pos >= len(text):
                raise SieveError(start_line, "unterminated text: string (no line with a single '.')")
            end = text.find("\n", self.pos)
            if end < 0:
                raw, nxt = text[self.pos:], len(text)
            else:
                raw, nxt = text[self.pos:end + 1], end + 1
            self.pos = nxt
            bare = raw.rstrip("\n").rstrip("\r")
            if bare == ".":
                self.line += 1 if raw.endswith("\n") else 0
                return "".join(lines)
            self.line += 1 if raw.endswith("\n") else 0
            # RFC 5228 §2.4.2: dot-stuffing, a leading ".." stands for "."
            lines.append(raw[1:] if raw.startswith("..") else raw)


# -- parser ------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, tokens: list[Token], last_line: int) -> None:
        self.tokens = tokens
        self.pos = 0
        self.last_line = last_line
        self.depth = 0

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _line(self) -> int:
        tok = self._peek()
        return tok.line if tok else self.last_line

    def _take(self, kind: str, what: str) -> Token:
        tok = self._peek()
        if tok is None or tok.kind != kind:
            found = "end of script" if tok is None else repr(tok.value)
            raise SieveError(self._line(), f"expected {what}, found {found}")
        self.pos += 1
        return tok

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise SieveError(self._line(), f"nesting deeper than {MAX_NESTING} levels")

    def commands(self, in_block: bool) -> list[Command]:
        out: list[Command] = []
        while True:
            tok = self._peek()
            if tok is None or (in_block and tok.kind == "}"):
                return out
            out.append(self.command())

    def command(self) -> Command:
        name = self._take("id", "a command")
        arguments = self.arguments()
        listed = self._listed()
        tests = self.test_part()
        tok = self._peek()
        if tok is not None and tok.kind == "{":
            self.pos += 1
            self._enter()
            block = self.commands(in_block=True)
            self.depth -= 1
            self._take("}", "'}'")
            return Command(str(name.value), arguments, tests, block, name.line, listed)
        if tok is None or tok.kind != ";":
            raise SieveError(self._line() if tok else name.line,
                             f"expected ';' or a block after {name.value}")
        self.pos += 1
        return Command(str(name.value), arguments, tests, None, name.line, listed)

    def _listed(self) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "("

    def arguments(self) -> list[Argument]:
        out: list[Argument] = []
        while True:
            tok = self._peek()
            if tok is None:
                return out
            if tok.kind == "tag":
                out.append(Tag(str(tok.value), tok.line))
            elif tok.kind == "num":
                out.append(Number(int(tok.value), tok.line))  # type: ignore[arg-type]
            elif tok.kind in ("str", "mstr"):
                out.append(StringList((str(tok.value),), False, tok.line))
            elif tok.kind == "[":
                out.append(self.string_list())
                continue
            else:
                return out
            self.pos += 1

    def string_list(self) -> StringList:
        start = self._take("[", "'['")
        values = [self._string()]
        while True:
            tok = self._peek()
            if tok is not None and tok.kind == ",":
                self.pos += 1
                values.append(self._string())
                continue
            self._take("]", "',' or ']' in a string list")
            return StringList(tuple(values), True, start.line)

    def _string(self) -> str:
        tok = self._peek()
        if tok is None or tok.kind not in ("str", "mstr"):
            found = "end of script" if tok is None else repr(tok.value)
            raise SieveError(self._line(), f"expected a string, found {found}")
        self.pos += 1
        return str(tok.value)

    def test_part(self) -> list[Test]:
        tok = self._peek()
        if tok is None:
            return []
        if tok.kind == "(":
            return self.test_list()
        if tok.kind == "id":
            return [self.test()]
        return []

    def test_list(self) -> list[Test]:
        self._take("(", "'('")
        self._enter()
        tests = [self.test()]
        while True:
            tok = self._peek()
            if tok is not None and tok.kind == ",":
                self.pos += 1
                tests.append(self.test())
                continue
            self._take(")", "',' or ')' in a test list")
            self.depth -= 1
            return tests

    def test(self) -> Test:
        name = self._take("id", "a test")
        self._enter()
        arguments = self.arguments()
        listed = self._listed()
        tests = self.test_part()
        self.depth -= 1
        return Test(str(name.value), arguments, tests, name.line, listed)


def parse_tree(text: str) -> list[Command]:
    """The commands of ``text`` as written, or SieveError at the first syntax error."""
    lexer = _Lexer(text)
    tokens = lexer.tokens()
    parser = _Parser(tokens, lexer.line)
    commands = parser.commands(in_block=False)
    leftover = parser._peek()
    if leftover is not None:
        raise SieveError(leftover.line, f"unexpected {leftover.value!r}")
    return commands
