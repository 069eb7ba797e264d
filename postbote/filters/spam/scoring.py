"""One score from many signals, and the action it calls for.

Every signal is a named rule worth some points (SpamAssassin's shape), so the
verdict can say why: ``X-Spam-Status: Yes, score=9.1 required=5.0
tests=BAYES_99=5.9,DNSBL:bl.example=4.0,SPF_PASS=-0.5``. Pure: the filter gathers the
signals, this module weighs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postbote.config import SpamSettings
from postbote.filters.pipeline import Action

# Points for the mail authentication results (left in Authentication-Results by the filter before).
AUTH_POINTS = {
    ("spf", "fail"): ("SPF_FAIL", 2.0),
    ("spf", "softfail"): ("SPF_SOFTFAIL", 1.0),
    ("spf", "pass"): ("SPF_PASS", -0.5),
    ("dkim", "pass"): ("DKIM_VALID", -0.5),
    ("dkim", "fail"): ("DKIM_INVALID", 1.0),
    ("dmarc", "pass"): ("DMARC_PASS", -1.0),
    ("dmarc", "fail"): ("DMARC_FAIL", 3.0),
}


BAYES_CERTAIN = 0.3  # distance from 0.5 at which the classifier's points are full


@dataclass(frozen=True)
class AuthResults:
    """What SPF, DKIM and DMARC said, read back from our Authentication-Results."""

    spf: str = "none"
    dkim: str = "none"  # "pass" if any signature passed
    dmarc: str = "none"
    dkim_domains: tuple[str, ...] = ()  # domains with a passing signature
    spf_domain: str = ""


@dataclass(frozen=True)
class Signals:
    bayes: float | None = None  # None: the classifier is not trained enough to speak
    auth: AuthResults = field(default_factory=AuthResults)
    dnsbl: tuple[tuple[str, float], ...] = ()  # (zone, points) of each listing
    dnswl: tuple[tuple[str, float], ...] = ()
    reputation: tuple[int, int] = (0, 0)  # (spam, ham) earlier verdicts for this sender
    reputation_trusted: bool = False  # the sender is authenticated: a good name may count
    heuristics: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Verdict:
    score: float
    rules: tuple[tuple[str, float], ...]
    action: Action

    @property
    def spam(self) -> bool:
        return self.action is not Action.ACCEPT


def score(signals: Signals, settings: SpamSettings) -> Verdict:
    rules: list[tuple[str, float]] = []
    if signals.bayes is not None:
        rules.append(_bayes_rule(signals.bayes, settings.bayes_weight))
    for key in ("spf", "dkim", "dmarc"):
        rule = AUTH_POINTS.get((key, getattr(signals.auth, key)))
        if rule:
            rules.append(rule)
    rules += [(f"DNSBL:{zone}", points) for zone, points in signals.dnsbl]
    rules += [(f"DNSWL:{zone}", points) for zone, points in signals.dnswl]
    rep = _reputation_rule(signals, settings.reputation_weight)
    if rep:
        rules.append(rep)
    rules += signals.heuristics
    total = round(sum(points for _, points in rules), 2)
    return Verdict(total, tuple(rules), decide(total, settings))


def decide(total: float, settings: SpamSettings) -> Action:
    if settings.reject_score > 0 and total >= settings.reject_score:
        return Action.REJECT
    if total >= settings.junk_score:
        return Action.JUNK
    return Action.ACCEPT


def _bayes_rule(p: float, weight: float) -> tuple[str, float]:
    """BAYES_00 … BAYES_99 by probability band; the points grow linearly from ham to spam and
    reach ±weight at BAYES_CERTAIN from 0.5: chi-square combining gives extreme values, and
    what it puts past 0.8 is spam about as reliably as what it puts past 0.99 (bench/spam.py)."""
    band = min(99, int(p * 100)) // 10 * 10 if 0.01 <= p < 0.99 else (99 if p >= 0.99 else 0)
    return f"BAYES_{band:02d}", round(weight * max(-1.0, min(1.0, (p - 0.5) / BAYES_CERTAIN)), 2)


def _reputation_rule(signals: Signals, weight: float) -> tuple[str, float] | None:
    """Earlier verdicts for this sender and recipient; two are needed before they count.

    A good name only counts when the sender proved who it is (SPF or DKIM pass),
    else forging a friend's address would be a free pass.
    """
    spam, ham = signals.reputation
    if spam + ham < 2:
        return None
    points = round(weight * (spam - ham) / (spam + ham), 2)
    if points < 0 and not signals.reputation_trusted:
        return None
    if points == 0:
        return None
    return ("SENDER_REP_SPAM" if points > 0 else "SENDER_REP_HAM"), points


def status_headers(verdict: Verdict, settings: SpamSettings) -> bytes:
    """X-Spam-Status and X-Spam-Score, folded to stay under 78 characters a line."""
    flag = "Yes" if verdict.spam else "No"
    items = [f"{name}={points:g}" for name, points in verdict.rules] or ["none"]
    lines, line = [f"X-Spam-Status: {flag}, score={verdict.score:.1f} required={settings.junk_score:.1f}"], "\ttests="
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(line) + len(piece) > 76 and line != "\ttests=":
            lines.append(line)
            line = "\t"
        line += piece
    lines.append(line)
    return ("\r\n".join(lines) + f"\r\nX-Spam-Score: {verdict.score:.1f}\r\n").encode("ascii", "replace")


_AR_RESULT = re.compile(r"\b(spf|dkim|dmarc)=([a-z]+)((?:\s*\([^)]*\))?[^;]*)", re.I)
_PROP = re.compile(r"\b(header\.d|smtp\.mailfrom)=(\S+)", re.I)


def read_auth_results(fields: bytes) -> AuthResults:
    """The results in our own Authentication-Results (RFC 8601) among ``fields``."""
    text = fields.decode("utf-8", "replace").replace("\r\n\t", " ").replace("\r\n ", " ")
    found: dict[str, str] = {}
    dkim_domains: list[str] = []
    spf_domain = ""
    for line in text.split("\r\n"):
        if not line.lower().startswith("authentication-results:"):
            continue
        for method, result, rest in _AR_RESULT.findall(line):
            method, result = method.lower(), result.lower()
            props = dict((k.lower(), v.strip(";").lower()) for k, v in _PROP.findall(rest))
            if method == "dkim" and result == "pass":
                dkim_domains.append(props.get("header.d", ""))
            if method == "spf" and "smtp.mailfrom" in props:
                spf_domain = props["smtp.mailfrom"].rpartition("@")[2]
            if method not in found or result == "pass":
                found[method] = result
    return AuthResults(found.get("spf", "none"), found.get("dkim", "none"), found.get("dmarc", "none"),
                       tuple(d for d in dkim_domains if d), spf_domain)
