"""Synthetic prompts of exact token counts (scaler/profiling/prompts.py), against the test
engine's tokenizer (scaler/devtools/openai_engine.count_tokens: a BOS, one token per word of
up to 6 characters, two per longer word)."""

from __future__ import annotations

from scaler.devtools.openai_engine import count_tokens
from scaler.profiling.prompts import WORDS, Calibrator, prompt_text


def test_shuffles_share_their_token_count_but_no_prefix() -> None:
    a, b = prompt_text(500, 1), prompt_text(500, 2)
    assert a != b and a.split()[:3] != b.split()[:3]  # a prefix cache cannot serve one from the other
    assert sorted(a.split()) == sorted(b.split())
    assert count_tokens(a) == count_tokens(b)
    assert prompt_text(500, 1) == a  # the salt decides the order


def test_the_calibrator_reaches_exact_counts_with_a_server_style_counter() -> None:
    calls: list[str] = []

    def server(text: str) -> int:  # what usage.prompt_tokens would say
        calls.append(text)
        return count_tokens(text)

    cal = Calibrator(server)
    cal.fit(50, 1000)
    assert 1.0 < cal.per_word < 1.1  # a few long words count two
    for target in (100, 575, 1050, 1525, 2000, 7777):
        s = cal.size(target)
        assert s.exact and s.tokens == target
        assert count_tokens(prompt_text(s.words, 12345)) == target  # any salt: same count
    before = len(calls)
    assert cal.size(1050).exact and len(calls) == before  # sized once per target


def test_a_target_no_word_count_hits_is_reported_at_the_closest() -> None:
    cal = Calibrator(lambda text: 2 * len(text.split()))  # two tokens a word: odd targets are out of reach
    cal.fit(10, 100)
    s = cal.size(101)
    assert not s.exact and abs(s.tokens - 101) == 1


def test_words_are_plain_lowercase_words() -> None:
    assert all(w.isalpha() and w.islower() for w in WORDS) and len(set(WORDS)) == len(WORDS) == 197
