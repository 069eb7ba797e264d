"""Comparators (RFC 4790 via RFC 5228 §2.7.3) and match types (RFC 5228 §2.7.1, RFC 5231).

``:matches`` is evaluated with a greedy two-pointer walk that remembers only the last ``*``:
its cost is bounded by len(value) × len(pattern), whatever the number of wildcards, so a
hostile pattern cannot make delivery backtrack exponentially.
"""

from __future__ import annotations

from collections.abc import Callable

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def casefold(comparator: str, text: str) -> str:
    """i;ascii-casemap folds only A-Z (RFC 4790 §9.2); i;octet and numeric compare as is."""
    return text.translate(_ASCII_LOWER) if comparator == "i;ascii-casemap" else text


def numeric_value(text: str) -> int | None:
    """RFC 4790 §9.1: the leading digits; a string without them is positive infinity (None)."""
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return int(text[:end]) if end else None


def _order(comparator: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, with, or after ``b`` under ``comparator``."""
    if comparator == "i;ascii-numeric":
        x, y = numeric_value(a), numeric_value(b)
        if x is None or y is None:
            return (x is None) - (y is None)
        return (x > y) - (x < y)
    a, b = casefold(comparator, a), casefold(comparator, b)
    return (a > b) - (a < b)


_RELATIONS = {
    "gt": lambda c: c > 0, "ge": lambda c: c >= 0, "lt": lambda c: c < 0,
    "le": lambda c: c <= 0, "eq": lambda c: c == 0, "ne": lambda c: c != 0,
}


def relation(comparator: str, op: str, value: str, key: str) -> bool:
    """RFC 5231 §4: ``value op key`` under the comparator's ordering."""
    return _RELATIONS[op](_order(comparator, value, key))


def _pattern(key: str) -> list[str | None]:
    """The key as a list of literal characters, "?" and "*" (None for "*" keeps types simple)."""
    out: list[str | None] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):  # RFC 5228 §2.7.1: backslash quotes the next char
            out.append("\\" + key[i + 1])
            i += 2
            continue
        out.append(None if c == "*" else c)
        i += 1
    return out


def glob(value: str, key: str) -> bool:
    """``value`` matches ``key`` with * (any run) and ? (one character), without backtracking."""
    pat = _pattern(key)
    v = p = 0
    star_p, star_v = -1, 0
    while v < len(value):
        if p < len(pat) and pat[p] is not None and (
            pat[p] == "?" or pat[p] == value[v] or pat[p] == "\\" + value[v]
        ):
            v += 1
            p += 1
        elif p < len(pat) and pat[p] is None:
            star_p, star_v = p, v
            p += 1
        elif star_p >= 0:
            star_v += 1
            v, p = star_v, star_p + 1
        else:
            return False
    while p < len(pat) and pat[p] is None:
        p += 1
    return p == len(pat)


def match_captures(tags: dict[str, object], value: str, key: str) -> list[str]:
    """The match variables of a successful ``:matches`` (RFC 5229 §3.2): ``${0}`` the whole
    value, then what each wildcard matched, in pattern order. Offsets are found on the folded
    octets and cut from the original ones (ASCII folding keeps offsets), so case survives."""
    comparator = str(tags.get("comparator") or "i;ascii-casemap")
    spans = _spans(_octets(casefold(comparator, value)), _octets(casefold(comparator, key)))
    original = _octets(value)
    return [value] + [original[a:b].encode("latin-1").decode("utf-8", "replace")
                      for a, b in spans]


def _spans(value: str, key: str) -> list[tuple[int, int]]:
    """``glob``'s walk, remembering where each wildcard started and ended: each "*" takes as
    little as it can, the leftmost first; only the last "*" is ever widened."""
    pat = _pattern(key)
    v = p = 0
    star_p, star_v, star_start = -1, 0, 0
    caps: dict[int, tuple[int, int]] = {}
    while v < len(value):
        if p < len(pat) and pat[p] is not None and (
            pat[p] == "?" or pat[p] == value[v] or pat[p] == "\\" + value[v]
        ):
            if pat[p] == "?":
                caps[p] = (v, v + 1)
            v += 1
            p += 1
        elif p < len(pat) and pat[p] is None:
            star_p, star_v, star_start = p, v, v
            caps[p] = (v, v)
            p += 1
        elif star_p >= 0:
            star_v += 1
            caps = {k: c for k, c in caps.items() if k < star_p}
            caps[star_p] = (star_start, star_v)
            v, p = star_v, star_p + 1
        else:
            return []
    while p < len(pat) and pat[p] is None:
        caps[p] = (v, v)
        p += 1
    return [c for _, c in sorted(caps.items())]


def _octets(text: str) -> str:
    """The UTF-8 octets of ``text``, one character each."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def match_one(tags: dict[str, object], value: str, key: str) -> bool:
    """One value against one key under the test's comparator and match type."""
    comparator = str(tags.get("comparator") or "i;ascii-casemap")
    if "value" in tags:
        return relation(comparator, str(tags["value"]), value, key)
    if "contains" in tags:
        if comparator == "i;ascii-numeric":
            raise ValueError("i;ascii-numeric cannot do :contains")
        return casefold(comparator, key) in casefold(comparator, value)
    if "matches" in tags:
        if comparator == "i;ascii-numeric":
            raise ValueError("i;ascii-numeric cannot do :matches")
        # RFC 4790 §9.2–9.3: both comparators work on octets, so "?" is one octet of UTF-8
        return glob(_octets(casefold(comparator, value)), _octets(casefold(comparator, key)))
    if comparator == "i;ascii-numeric":
        return _order(comparator, value, key) == 0
    return casefold(comparator, value) == casefold(comparator, key)


def match_any(tags: dict[str, object], values: list[str], keys: list[str],
              on_match: Callable[[str, str], None] | None = None) -> bool:
    """RFC 5228 §2.7.1: true if any value matches any key; :count counts the values
    (RFC 5231 §4.2) and compares the number with each key. ``on_match`` hears the first
    value and key that matched (for RFC 5229 match variables)."""
    if "count" in tags:
        comparator = str(tags.get("comparator") or "i;ascii-casemap")
        count = str(len(values))
        return any(relation(comparator, str(tags["count"]), count, k) for k in keys)
    for v in values:
        for k in keys:
            if match_one(tags, v, k):
                if on_match is not None:
                    on_match(v, k)
                return True
    return False
