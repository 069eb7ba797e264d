"""The spam filter's pure parts: tokenizer, classifier arithmetic, scoring, DNS list names, config."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postbote.config import ConfigError, SpamSettings, load_settings
from postbote.filters.clamav import ScannerError, parse_reply
from postbote.filters.pipeline import Action
from postbote.filters.spam.classifier import chi2q, chi_square_combine, classify, merge, token_probability
from postbote.filters.spam.dnsbl import parse_zones, reversed_name
from postbote.filters.spam.scoring import AuthResults, Signals, read_auth_results, score, status_headers
from postbote.filters.spam.tokenizer import MAX_TOKENS, tokenize
from postbote.store.types import SpamCounts


def test_tokenizer_prefixes_header_words_and_drops_our_own_fields():
    raw = (b"From: Bob <bob@example.com>\r\nSubject: Cheap watches\r\nX-Spam-Status: No\r\n"
           b"Authentication-Results: mx; spf=pass\r\nReceived: from x by y\r\n\r\nVisit http://shop.example.net/a now\r\n")
    tokens = set(tokenize(raw))
    assert {"subject:cheap", "subject:watches", "from:domain:example.com", "visit", "url:shop.example.net",
            "url:example.net", "mime:text/plain"} <= tokens
    assert not any("spf" in t or "x-spam" in t or "hdr:received" == t for t in tokens)


def test_tokenizer_reads_encoded_html_bodies_and_attachment_names():
    raw = (b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"PHA+R3JlYXQgZGVhbHM8L3A+\r\n--b\r\nContent-Type: application/octet-stream; name=run.exe\r\n\r\nMZ\r\n--b--\r\n")
    tokens = set(tokenize(raw))
    assert {"great", "deals", "filename-ext:exe", "mime:text/html", "mime-enc:base64", "charset:utf-8"} <= tokens


def test_relays_html_tags_and_word_pairs_are_clues():
    raw = (b"Received: from relay.example.net ([192.0.2.9]) by mx.example.com\r\nSubject: x\r\n"
           b"Content-Type: text/html\r\n\r\n<font color=red>Click here</font>\r\n")
    tokens = set(tokenize(raw))
    assert {"received:relay.example.net", "received:192.0.2.9", "html:font", "html:font:color",
            "bi:click here"} <= tokens


def test_long_words_collapse_into_a_length_class():
    tokens = tokenize(b"Subject: x\r\n\r\n" + b"q" * 45 + b"\r\n")
    assert "skip:q 40" in tokens


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_tokenizer_never_raises_and_is_bounded(raw):
    assert len(tokenize(raw)) <= MAX_TOKENS


def test_robinson_probability_pulls_rare_tokens_toward_half():
    assert token_probability(1, 0, 10, 10) < token_probability(20, 0, 20, 20) < 1
    assert token_probability(0, 0, 10, 10) == 0.5
    assert token_probability(5, 5, 10, 10) == pytest.approx(0.5)


def test_chi_square_combining():
    assert chi_square_combine([]) == 0.5
    assert chi_square_combine([0.99] * 20) > 0.99
    assert chi_square_combine([0.01] * 20) < 0.01
    assert 0.3 < chi_square_combine([0.99] * 10 + [0.01] * 10) < 0.7  # conflicting evidence: unsure
    assert chi2q(0.0, 4) == 1.0 and math.isclose(chi2q(2.0, 2), math.exp(-1.0))


def test_classify_and_personal_weighting():
    glob = SpamCounts(15, 10, {"viagra": (10, 0), "meeting": (0, 10), "golf": (5, 5)})
    assert classify(glob, ["viagra"]).probability > 0.9
    assert classify(glob, ["meeting"]).probability < 0.1
    others = SpamCounts(15, 20, {"golf": (5, 10)})  # golf mail is mostly ham to everyone …
    mine = SpamCounts(5, 0, {"golf": (5, 0)})  # … but this user moved all of theirs into Junk

    def golf(m: SpamCounts) -> float:
        return token_probability(*m.tokens["golf"], m.spam, m.ham)

    assert golf(merge(others, mine)) > golf(others)
    alone = merge(glob, glob)  # one user: weighting changes nothing
    assert classify(alone, ["golf", "viagra"]).probability == pytest.approx(classify(glob, ["golf", "viagra"]).probability)


def test_score_combines_rules_and_decides():
    settings_ = SpamSettings()
    quiet = score(Signals(), settings_)
    assert quiet.score == 0 and quiet.action is Action.ACCEPT
    spammy = score(Signals(bayes=1.0, dnsbl=(("bl.test", 4.0),), auth=AuthResults(spf="fail")), settings_)
    assert spammy.score == 12.0 and spammy.action is Action.REJECT
    assert [name for name, _ in spammy.rules] == ["BAYES_99", "SPF_FAIL", "DNSBL:bl.test"]
    assert score(Signals(bayes=0.0), settings_).rules == (("BAYES_00", -6.0),)
    assert score(Signals(bayes=1.0), SpamSettings(reject_score=0, junk_score=5)).action is Action.JUNK


def test_reputation_needs_two_verdicts_and_proof_for_a_good_name():
    s = SpamSettings()
    assert score(Signals(reputation=(1, 0)), s).rules == ()
    assert score(Signals(reputation=(2, 0)), s).rules == (("SENDER_REP_SPAM", 3.0),)
    assert score(Signals(reputation=(0, 4)), s).rules == ()
    assert score(Signals(reputation=(0, 4), reputation_trusted=True), s).rules == (("SENDER_REP_HAM", -3.0),)


def test_status_headers_are_folded_and_ascii():
    rules = tuple((f"zone{i}.example", 1.0) for i in range(12))
    verdict = score(Signals(dnsbl=rules), SpamSettings())
    text = status_headers(verdict, SpamSettings()).decode("ascii")
    assert text.startswith("X-Spam-Status: Yes, score=12.0 required=5.0\r\n\ttests=DNSBL:zone0.example=1,")
    assert all(len(line) <= 78 for line in text.split("\r\n"))
    assert text.endswith("X-Spam-Score: 12.0\r\n")


def test_auth_results_are_read_back():
    fields = (b"Authentication-Results: mx.example.net;\r\n\tspf=pass smtp.mailfrom=a@example.org;\r\n"
              b"\tdkim=fail header.d=x.example;\r\n\tdkim=pass (good) header.d=example.org header.s=s;\r\n"
              b"\tdmarc=pass (p=none dis=none) header.from=example.org\r\n")
    auth = read_auth_results(fields)
    assert (auth.spf, auth.dkim, auth.dmarc) == ("pass", "pass", "pass")
    assert auth.dkim_domains == ("example.org",) and auth.spf_domain == "example.org"


def test_dnsbl_names_and_zones():
    assert reversed_name("192.0.2.99") == "99.2.0.192"
    assert reversed_name("2001:db8::1").startswith("1.0.0.0.") and reversed_name("2001:db8::1").endswith(".8.b.d.0.1.0.0.2")
    assert reversed_name("::ffff:192.0.2.1") == "1.2.0.192"
    assert reversed_name("x") is None
    assert [(z.name, z.points) for z in parse_zones(("a.test", "B.test.=2.5"), 4.0)] == [("a.test", 4.0), ("b.test", 2.5)]


def test_clamd_replies():
    assert not parse_reply("stream: OK").infected
    assert parse_reply("stream: Win.Test.EICAR_HDB-1 FOUND").signature == "Win.Test.EICAR_HDB-1"
    with pytest.raises(ScannerError):
        parse_reply("INSTREAM size limit exceeded. ERROR")


@pytest.mark.parametrize("toml, message", [
    ('[spam]\ndnsbl_zones = ["zen.example=lots"]\n', "spam.dnsbl_zones"),
    ('[spam]\njunk_score = "high"\n', "spam.junk_score"),
    ('[clamav]\naddress = "/run/clamd.ctl"\n', "clamav.address"),
    ('[rspamd]\nurl = "127.0.0.1:11333"\n', "rspamd.url"),
    ('[rspamd]\non_error = "ignore"\n', "rspamd.on_error"),
    ('[greylist]\ndelay = -1\n', "greylist.delay"),
])
def test_config_errors_name_the_key(tmp_path, toml, message):
    path = tmp_path / "postbote.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(path)
