"""Every message of the SpamAssassin public corpus parses sanely (real, messy mail).

The corpus is fetched by scripts/fetch-corpus.sh into .cache/spamassassin/. Under CI
(CI=true) a corpus that cannot be fetched is a failure; elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from postbote.mail.message import parse_message

from .checks import assert_sane

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".cache" / "spamassassin"
FETCH = ROOT / "scripts" / "fetch-corpus.sh"


def _fetch() -> str | None:
    """Run the fetch script; the reason it failed, or None on success."""
    try:
        result = subprocess.run(
            ["bash", str(FETCH)], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{FETCH.name} could not run: {err}"
    if result.returncode != 0 or not (CORPUS / ".complete").exists():
        return f"{FETCH.name} failed: {result.stderr.strip()[-500:]}"
    return None


def _corpus_files() -> list[Path]:
    if not (CORPUS / ".complete").exists():
        failure = _fetch()
        if failure is not None:
            reason = f"SpamAssassin corpus unavailable: {failure}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
    return sorted(CORPUS.glob("*/*.txt"))


def test_every_corpus_message_parses_sanely_and_round_trips():
    corpus = _corpus_files()
    assert len(corpus) > 6000
    start = time.perf_counter()
    dated = with_from = multipart = embedded = 0
    for path in corpus:
        raw = path.read_bytes()
        parsed = parse_message(raw)
        try:
            assert_sane(parsed, raw)
            parsed.search_text(limit=10_000)
        except AssertionError as err:
            raise AssertionError(f"{path.relative_to(ROOT)}: {err}") from err
        dated += parsed.date is not None
        with_from += bool(parsed.from_)
        multipart += parsed.root.is_multipart
        embedded += any(part.is_message for part in parsed.root.walk())
    # Real mail is mostly well-formed: nearly all of it must yield the basics.
    assert dated > 0.99 * len(corpus)
    assert with_from > 0.99 * len(corpus)
    assert multipart > 500 and embedded > 0
    assert time.perf_counter() - start < 60
