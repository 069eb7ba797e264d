"""Configuration: defaults, validation, and one clear line per mistake."""

from __future__ import annotations

import subprocess
import sys

import pytest

from postbote.config import ConfigError, ListenAddress, load_settings


def write(tmp_path, text: str):
    path = tmp_path / "postbote.toml"
    path.write_text(text)
    return path


def test_no_file_gives_the_development_defaults():
    s = load_settings(None)
    assert s.hostname == "localhost" and s.domains == ("localhost",)
    assert s.listen.smtp == (ListenAddress("127.0.0.1", 2525),)
    assert s.listen.imaps == (ListenAddress("127.0.0.1", 2993),)
    assert s.listen.lmtp == ()
    assert s.dns.nameservers == ()


def test_file_values_override_defaults(tmp_path):
    s = load_settings(write(tmp_path, """
hostname = "mail.example.com"
domains = ["example.com"]
[dns]
nameservers = ["127.0.0.1:5353"]
[listen]
smtp = ["0.0.0.0:25", "[::]:25"]
lmtp = "127.0.0.1:24"
[limits]
max_message_size = 10485760
"""))
    assert s.hostname == "mail.example.com"
    assert s.listen.smtp == (ListenAddress("0.0.0.0", 25), ListenAddress("::", 25))
    assert s.listen.lmtp == (ListenAddress("127.0.0.1", 24),)
    assert s.dns.nameservers == ("127.0.0.1:5353",)
    assert s.limits.max_message_size == 10485760
    assert s.listen.imap == (ListenAddress("127.0.0.1", 2143),)  # untouched keys keep defaults


@pytest.mark.parametrize("text, message", [
    ('[limits]\nmax_recipients = "many"', "limits.max_recipients must be an integer from 1 to 100000"),
    ("[limits]\nmax_recipients = 0", "limits.max_recipients must be an integer"),
    ('[listen]\nsmtp = ["localhost"]', "listen.smtp must be \"IP:port\""),
    ('[listen]\nsmtp = ["1.2.3.4:99999"]', "listen.smtp must be"),
    ('[log]\nformat = "xml"', 'log.format must be "logfmt" or "json"'),
    ("[smtpd]\nx = 1", "unknown key smtpd"),
    ("[limits]\nmax_size = 1", "unknown key limits.max_size"),
    ('hostname = "not a host"', "hostname must be domain names"),
    ("hostname = = 1", "is not valid TOML"),
])
def test_wrong_values_name_the_key_and_the_expectation(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.toml")


def test_broken_config_stops_serve_with_exit_2_and_one_line(tmp_path):
    path = write(tmp_path, "[limits]\nmax_errors = -1\n")
    proc = subprocess.run([sys.executable, "-m", "postbote", "--config", str(path), "serve"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "limits.max_errors must be an integer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_key_has_a_row_in_docs_config_md():
    import dataclasses
    from pathlib import Path

    from postbote.config import Settings

    doc = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    missing = []

    def walk(cls: type, section: str) -> None:
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                walk(type(default), f.name)
            elif f"`{f.name}`" not in doc.split(f"## `[{section}]`")[-1 if section else 0]:
                missing.append(f"{section}.{f.name}" if section else f.name)

    walk(Settings, "")
    assert missing == []
