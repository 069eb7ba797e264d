"""Tokens of a message for the learning classifier: words, header clues, URLs, MIME shape.

Each message becomes a set of short strings; the classifier learns how often each
one appears in spam and in ham. Header words carry the field's name (``subject:free``
is a different clue from ``free`` in the body), body words also come in pairs, the
relays in Received fields and the HTML tags used are clues, very long words collapse into a
length class (``skip:h 40``) so random strings do not flood the model, and the fields
postbote itself adds (Return-Path, Authentication-Results, X-Spam-*) are left out, so a
message tokenizes the same at delivery and later when a user moves it into Junk.
"""

from __future__ import annotations

import re

from postbote.mail.message import ParsedMessage, parse_message

MAX_TOKENS = 3000
# Body text past this many characters is not read: its cost grows with the message, and on the
# SpamAssassin corpus (bench/spam.py) 50,000 gave the same false positives and recall as 100,000.
BODY_CHARS = 50_000
_WORD = re.compile(r"[^\W_]['\w.$-]*[\w$]|[^\W_]", re.UNICODE)
_URL = re.compile(rb"(?i)\b(?:https?|ftp)://([a-z0-9.-]{1,253})")
_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
# HTML shapes that bulk mail favours (fonts, tables, images, forms) are clues the text alone loses.
_HTML_TAG = re.compile(rb"(?i)<(font|img|table|td|center|a|b|p|div|span|script|style|iframe|form|input|map|area|"
                       rb"blink|marquee|body|html|meta)\b([^>]{0,200})")
_HTML_ATTR = re.compile(rb"(?i)\b(color|size|face|width|bgcolor|align|href|src)=")
BIGRAM_CHARS = 20_000
# Fields whose words are clues; the others only count by name.
_WORDY_FIELDS = ("subject", "from", "to", "cc", "reply-to", "sender", "x-mailer", "user-agent",
                 "content-type", "list-id", "organization")
# Fields we add (or a forwarder adds) ourselves: not the sender's words.
_OURS = ("return-path", "received-spf", "authentication-results", "x-spam-status",
         "x-spam-score", "x-spam-flag", "x-virus-status", "x-rspamd-status", "arc-seal", "arc-message-signature",
         "arc-authentication-results", "delivered-to", "x-original-to", "status", "x-status",
         "x-keywords", "x-uid", "content-length", "lines")
RECEIVED_HOSTS = 6  # per Received field: the relays' names and addresses


def tokenize(raw: bytes, msg: ParsedMessage | None = None) -> list[str]:
    """The distinct tokens of a message (at most ``MAX_TOKENS``). Never raises on odd mail.

    ``msg`` is ``raw`` already parsed, when the caller has it: parsing is a good part of the cost.
    """
    if msg is None:
        msg = parse_message(raw)
    tokens: dict[str, None] = {}
    for name, value in msg.headers:
        _header_tokens(name.lower(), value, tokens)
    if msg.subject is None:
        tokens["hdr:no-subject"] = None
    for part in msg.root.walk():
        tokens[f"mime:{part.type}/{part.subtype}"] = None
        if part.encoding.lower() not in ("7bit", "8bit"):
            tokens[f"mime-enc:{part.encoding.lower()}"] = None
        filename = part.disposition_params.get("filename") or part.params.get("name") or ""
        if "." in filename:
            tokens["filename-ext:" + filename.rsplit(".", 1)[1].lower()[:10]] = None
        charset = part.params.get("charset")
        if charset:
            tokens["charset:" + charset.lower()[:30]] = None
    text = msg.search_text(BODY_CHARS, raw)
    # The body's words are found once: all of them are tokens, the first BIGRAM_CHARS' also
    # pairs. Words never span white space, so cutting there keeps every word whole; the
    # rest goes in chunks, and once the token set is full no more words need finding.
    head = _words(text[:_cut(text, BIGRAM_CHARS)])
    _add(tokens, _word_candidates(head, ""))
    start = _cut(text, BIGRAM_CHARS)
    while start < len(text) and len(tokens) < MAX_TOKENS:
        end = _cut(text, start + BIGRAM_CHARS)
        _add(tokens, _word_candidates(_words(text[start:end]), ""))
        start = end
    if b"://" in raw:  # a plain find first: the regular expressions cost more than a miss
        for host in _URL.findall(raw[:1_000_000]):
            _url_tokens(host.decode("ascii").lower().rstrip("."), tokens)
    if b"<" in raw:
        _html_tokens(raw[:BODY_CHARS * 3], tokens)
    _bigram_tokens(head, tokens)  # last: they fill what room is left
    return list(tokens)[:MAX_TOKENS]


def _header_tokens(name: str, value: str, tokens: dict[str, None]) -> None:
    if name == "received":
        # The sender's relays; ours is not in the spool we check, and in stored mail it is in
        # every message alike, so it teaches nothing either way.
        for host in _HOST.findall(value.lower())[:RECEIVED_HOSTS]:
            tokens["received:" + host[:80]] = None
        return
    if name in _OURS or name.startswith("x-spam-") or name.startswith("dkim-"):
        if name.startswith("dkim-"):
            tokens["hdr:" + name] = None  # that the sender signed is a clue; the signature is noise
        return
    tokens["hdr:" + name[:40]] = None
    if name in _WORDY_FIELDS:
        _add(tokens, _word_candidates(_words(value.lower()), name + ":"))
        for address in re.findall(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)", value):
            tokens[f"{name}:domain:{address.lower()}"] = None
    elif name == "message-id":
        at = value.rfind("@")
        if at >= 0:
            tokens["message-id:" + value[at + 1:].strip(" >").lower()[:60]] = None


def _cut(text: str, limit: int) -> int:
    """Where to cut ``text`` near ``limit`` without cutting a word: after the last white space."""
    if limit >= len(text):
        return len(text)
    space = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    return space + 1 if space > 0 else limit


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _word_candidates(words: list[str], prefix: str) -> list[str]:
    # Whole-list comprehensions rather than a loop per word: this is the filter's hottest path.
    return [prefix + w if len(w) <= 20 else _long_word(prefix, w) for w in words if len(w) >= 3]


def _long_word(prefix: str, word: str) -> str:
    """A long "word" is mostly noise (base64, hashes); its first char and length class are a clue."""
    return f"{prefix}skip:{word[0]} {len(word) // 10 * 10}"


def _bigram_tokens(words: list[str], tokens: dict[str, None]) -> None:
    """Pairs of neighbouring body words: "click here" says more than "click" and "here"."""
    words = [w for w in words if 3 <= len(w) <= 20]
    _add(tokens, [f"bi:{first} {second}" for first, second in zip(words, words[1:])])


def _add(tokens: dict[str, None], candidates: list[str]) -> None:
    """Add ``candidates`` in order until ``tokens`` holds ``MAX_TOKENS``."""
    if len(tokens) + len(candidates) <= MAX_TOKENS:
        tokens.update(dict.fromkeys(candidates))
        return
    for token in candidates:
        if len(tokens) >= MAX_TOKENS:
            return
        tokens[token] = None


def _html_tokens(raw: bytes, tokens: dict[str, None]) -> None:
    for tag, attrs in _HTML_TAG.findall(raw):
        name = tag.lower().decode("ascii")
        tokens["html:" + name] = None
        for attr in _HTML_ATTR.findall(attrs):
            tokens[f"html:{name}:{attr.lower().decode('ascii')}"] = None


def _url_tokens(host: str, tokens: dict[str, None]) -> None:
    if not host:
        return
    tokens["url:" + host] = None
    labels = host.split(".")
    if len(labels) > 2:
        tokens["url:" + ".".join(labels[-2:])] = None
    if re.fullmatch(r"[\d.]+", host):
        tokens["url:ip-address"] = None
