"""`dynplan profile sweep`'s checks that run before any request (no server), and the optional
tokenizer path (scaler/profiling/sweep_cli.py, prompts.py)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from scaler.errors import OptionalDependencyMissing
from scaler.profiling.prompts import tokenizer_counter
from scaler.profiling.sweep_cli import sweep

URL = ["--url", "http://127.0.0.1:9", "--model", "m"]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(sweep, list(args))
    return result.exit_code, result.output


def test_flags_are_checked_before_the_endpoint_is_asked(tmp_path: Path) -> None:
    out = str(tmp_path / "p")
    cases = [
        ((*URL, "-o", out, "--resume", "--overwrite"), "error: --resume: --resume continues a sweep, --overwrite starts again: pick one"),
        (("--url", "http://k:secret@h:1", "--model", "m", "-o", out),
         "error: --url: must not carry credentials; put the API key in a file and pass --api-key-file"),
        ((*URL, "-o", out, "--metrics-url", "file:///etc/passwd"), "error: --metrics-url: must be an http:// or https:// URL with a host"),
        ((*URL, "-o", out, "--time-limit", "nan"), "error: --time-limit: must be in (0, 604800] seconds, got nan"),
        ((*URL, "-o", out, "--request-timeout", "0"), "error: --request-timeout: must be in (0, 86400] seconds, got 0"),
    ]
    for args, message in cases:
        code, output = _run(*args)
        assert (code, output) == (2, message + "\n"), args
        assert "secret" not in output
    assert not (tmp_path / "p").exists()


def test_an_existing_directory_or_journal_is_kept_unless_told(tmp_path: Path) -> None:
    out = tmp_path / "p"
    out.mkdir()
    (out / "x").write_text("mine")
    code, output = _run(*URL, "-o", str(out))
    assert (code, output) == (2, f"error: --output: {out} exists and is not empty; pass --overwrite to replace it\n")
    journal = tmp_path / ".q.sweep" / "journal.jsonl"
    journal.parent.mkdir()
    journal.write_text("{}\n")
    code, output = _run(*URL, "-o", str(tmp_path / "q"))
    assert code == 2 and "an interrupted sweep into" in output and "pass --resume (or --overwrite to start again)" in output
    assert (out / "x").read_text() == "mine"


def test_without_tokenizers_the_tokenizer_flag_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if not installed
    with pytest.raises(OptionalDependencyMissing) as exc:
        tokenizer_counter(tmp_path / "tokenizer.json")
    assert str(exc.value) == "--tokenizer needs the optional package 'tokenizers': pip install 'dynplan[tokenizer]'"


def test_a_tokenizer_counts_with_its_special_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded: list[str] = []

    class Encoding:
        def __init__(self, ids: list[int]) -> None:
            self.ids = ids

    class Tokenizer:
        @staticmethod
        def from_file(path: str) -> Tokenizer:
            loaded.append(path)
            return Tokenizer()

        def encode(self, text: str, add_special_tokens: bool) -> Encoding:
            return Encoding([0] * (len(text.split()) + (1 if add_special_tokens else 0)))

    monkeypatch.setitem(sys.modules, "tokenizers", types.SimpleNamespace(Tokenizer=Tokenizer))
    count = tokenizer_counter(tmp_path / "tokenizer.json")
    assert count("the of and") == 4  # a BOS, as the server counts it
    assert loaded == [str(tmp_path / "tokenizer.json")]
