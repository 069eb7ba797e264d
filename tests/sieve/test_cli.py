"""``postbote sieve …``: put validates before storing, activate/list/get read it back."""

from __future__ import annotations

from pathlib import Path

import pytest

from postbote.cli import main

SCRIPT = 'require "fileinto";\nif header :contains "subject" "x" { fileinto "X"; }\n'


def cli(data: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def data(tmp_path: Path, capsys, monkeypatch) -> Path:
    """A data folder with the account ann@example.test."""
    import io
    import sys
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a long enough password\n")))
    folder = tmp_path / "data"
    assert cli(folder, capsys, "domain", "add", "example.test")[0] == 0
    code, _, err = cli(folder, capsys, "user", "add", "ann@example.test", "--password-stdin")
    assert code == 0, err
    return folder


def test_put_activate_list_get_round_trip(data: Path, tmp_path: Path, capsys) -> None:
    script = tmp_path / "main.sieve"
    script.write_text(SCRIPT)
    assert cli(data, capsys, "sieve", "put", "ann@example.test", "main", str(script))[0] == 0
    assert cli(data, capsys, "sieve", "put", "ann@example.test", "spare", str(script))[0] == 0
    assert cli(data, capsys, "sieve", "activate", "ann@example.test", "main")[0] == 0
    code, out, _ = cli(data, capsys, "sieve", "list", "ann@example.test")
    assert code == 0 and out.splitlines() == ["main\tactive", "spare"]
    code, out, _ = cli(data, capsys, "sieve", "get", "ann@example.test", "main")
    assert code == 0 and out == SCRIPT


def test_invalid_script_is_refused_with_one_line_and_status_2(data: Path, tmp_path: Path,
                                                               capsys) -> None:
    script = tmp_path / "bad.sieve"
    script.write_text('keep;\n\nfileinto "x";\n')
    code, _, err = cli(data, capsys, "sieve", "put", "ann@example.test", "bad", str(script))
    assert code == 2
    assert err.strip().count("\n") == 0
    assert 'line 3: fileinto requires "fileinto"' in err and str(script) in err
    code, out, _ = cli(data, capsys, "sieve", "list", "ann@example.test")
    assert code == 0 and out == ""  # nothing was stored


def test_unknown_script_and_account_are_errors(data: Path, capsys) -> None:
    code, _, err = cli(data, capsys, "sieve", "get", "ann@example.test", "nope")
    assert code == 1 and "no script nope" in err
    code, _, err = cli(data, capsys, "sieve", "activate", "ann@example.test", "nope")
    assert code == 1
    code, _, err = cli(data, capsys, "sieve", "list", "nobody@example.test")
    assert code == 1 and "no account" in err
