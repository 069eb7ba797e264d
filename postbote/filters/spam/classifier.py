"""The learning classifier: Robinson's token probabilities, Fisher's chi-square combining.

Pure arithmetic over counts the store keeps; no I/O. Each token's spam
probability is Robinson's f(w), which pulls rarely seen tokens toward 0.5; the
most telling tokens are combined with Fisher's method into a spam and a ham
indication, and the answer is their balance: near 1 spam, near 0 ham, near 0.5
"unsure" (both or neither indicated). (G. Robinson, "A Statistical Approach to
the Spam Problem", 2003; the constants are those SpamBayes found to work.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from postbote.store.types import SpamCounts

STRENGTH = 0.45  # Robinson's s: how much an unknown token's 0.5 weighs
UNKNOWN = 0.5  # Robinson's x
MIN_DISTANCE = 0.1  # tokens closer than this to 0.5 say nothing
MAX_CLUES = 150
PERSONAL_WEIGHT = 2  # an account's own training counts this many more times than everyone's


@dataclass(frozen=True)
class Classification:
    probability: float  # 0 ham … 1 spam
    clues: tuple[tuple[str, float], ...]  # the strongest tokens and their f(w), most telling first


def merge(global_counts: SpamCounts, personal: SpamCounts | None) -> SpamCounts:
    """The global model with the account's own training weighted up (it is in both).

    The weighted counts are scaled back to the number of messages actually trained:
    weighting must shift the balance toward the user's own verdicts, not make the
    evidence look stronger than it is (Robinson's f(w) shrinks less with more of it).
    On a server with one user the result is the global model itself.
    """
    if personal is None or (personal.spam == 0 and personal.ham == 0):
        return global_counts
    extra = PERSONAL_WEIGHT - 1
    spam_total = global_counts.spam + extra * personal.spam
    ham_total = global_counts.ham + extra * personal.ham
    scale = (global_counts.spam + global_counts.ham) / max(spam_total + ham_total, 1)
    tokens = {}
    for token in global_counts.tokens.keys() | personal.tokens.keys():
        gs, gh = global_counts.tokens.get(token, (0, 0))
        ps, ph = personal.tokens.get(token, (0, 0))
        tokens[token] = ((gs + extra * ps) * scale, (gh + extra * ph) * scale)
    return SpamCounts(spam_total * scale, ham_total * scale, tokens)  # type: ignore[arg-type]  # float counts


def token_probability(spam: float, ham: float, spam_total: float, ham_total: float) -> float:
    """Robinson's f(w) for a token seen in ``spam`` of ``spam_total`` spam and ``ham`` of ``ham_total`` ham."""
    spam_ratio = spam / spam_total if spam_total else 0.0
    ham_ratio = ham / ham_total if ham_total else 0.0
    n = spam + ham
    if spam_ratio + ham_ratio == 0:
        return UNKNOWN
    p = spam_ratio / (spam_ratio + ham_ratio)
    return (STRENGTH * UNKNOWN + n * p) / (STRENGTH + n)


def classify(model: SpamCounts, tokens: Iterable[str]) -> Classification:
    """Chi-square combine the most telling of ``tokens`` under ``model``."""
    clues = []
    for token in set(tokens):
        s, h = model.tokens.get(token, (0, 0))
        if s + h == 0:
            continue
        f = token_probability(s, h, model.spam, model.ham)
        if abs(f - 0.5) >= MIN_DISTANCE:
            clues.append((abs(f - 0.5), token, f))
    clues.sort(reverse=True)
    chosen = [(t, f) for _, t, f in clues[:MAX_CLUES]]
    return Classification(chi_square_combine([f for _, f in chosen]), tuple(chosen))


def chi_square_combine(probabilities: Sequence[float]) -> float:
    """Fisher's combining of independent probabilities, as (1 + S - H) / 2."""
    n = len(probabilities)
    if n == 0:
        return 0.5
    ln_spam = sum(math.log(1.0 - p) for p in probabilities)  # evidence against ham
    ln_ham = sum(math.log(p) for p in probabilities)
    s = 1.0 - chi2q(-2.0 * ln_spam, 2 * n)
    h = 1.0 - chi2q(-2.0 * ln_ham, 2 * n)
    return (1.0 + s - h) / 2.0


def chi2q(x2: float, v: int) -> float:
    """P(chi² ≥ x2) with ``v`` (even) degrees of freedom."""
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)
