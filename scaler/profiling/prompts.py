"""Synthetic prompts of an exact token count, without the model's tokenizer if need be.

A prompt of `k` words is the first `k` words of a fixed cycle through `WORDS` (common short
English words), shuffled by a per-request salt. Tokenizers split on spaces before merging
(GPT-2/Llama-3 style pre-tokenisers; SentencePiece keeps the leading space with the word),
so every shuffle of the same words has the same token count, while no two prompts share a
prefix: an engine's prefix cache never turns a measured prefill into a cache hit.

Counting tokens: `TokenCount` is any `text -> tokens` function. With `--tokenizer` it is the
model's tokenizer (`tokenizers`, an optional extra); without it, the server's own answer:
`usage.prompt_tokens` of a `max_tokens: 1` request (the documented fallback). `Calibrator`
fits tokens per word from two counts, then corrects the word count until the server reports
the target exactly, at most `MAX_CORRECTIONS` times; what it reached is kept, and the sweep
records the server's count of every measured request anyway (the profile's ISL is that
count, not the target).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Short, frequent words: one token each in the common tokenizers, so a count is close to exact
# from the first fit. A few longer words keep the fallback honest on tokenizers that differ.
WORDS = tuple(
    (
        "the of and to in is it you that he was for on are with as his they be at one have this from "
        "or had by word but what some we can out other were all there when up use your how said an "
        "each she which do their time if will way about many then them write would like so these her "
        "long make thing see him two has look more day could go come did number sound no most people "
        "my over know water than call first who may down side been now find any new work part take get "
        "place made live where after back little only round man year came show every good me give our "
        "under name very through just form sentence great think say help low line differ turn cause much "
        "mean before move right boy old too same tell does set three want air well also play small end put "
        "home read hand port large spell add even land here must big high such follow act why ask men "
        "change went light kind off need house picture try us again animal point mother world near build "
        "self earth father"
    ).split()
)
MAX_CORRECTIONS = 6
TokenCount = Callable[[str], int]


def prompt_text(words: int, salt: int) -> str:
    """`words` words of the fixed cycle, in an order only `salt` decides."""
    chosen = [WORDS[i % len(WORDS)] for i in range(max(words, 1))]
    random.Random(salt).shuffle(chosen)
    return " ".join(chosen)


@dataclass(frozen=True)
class Sizing:
    """How many words make `target` tokens, and what the counter said they make."""

    target: int
    words: int
    tokens: int

    @property
    def exact(self) -> bool:
        return self.tokens == self.target


class Calibrator:
    """Words per token count, fitted from a counter and corrected per target."""

    def __init__(self, count: TokenCount, *, salt: int = 0) -> None:
        self._count = count
        self._salt = salt
        self._cache: dict[int, Sizing] = {}
        self.per_word = 1.0
        self.offset = 0.0  # tokens the server adds (BOS, a template)
        self.calls = 0

    def _measure(self, words: int) -> int:
        self.calls += 1
        return self._count(prompt_text(words, self._salt))

    def fit(self, lo_words: int, hi_words: int) -> None:
        """Tokens per word and the fixed offset from two prompt lengths."""
        lo_words, hi_words = max(lo_words, 1), max(hi_words, lo_words + 1)
        a, b = self._measure(lo_words), self._measure(hi_words)
        self.per_word = max((b - a) / (hi_words - lo_words), 1e-3)
        self.offset = a - self.per_word * lo_words

    def size(self, target: int) -> Sizing:
        """The word count whose prompt the counter puts closest to `target` tokens."""
        if target in self._cache:
            return self._cache[target]
        words = max(1, round((target - self.offset) / self.per_word))
        tried: dict[int, int] = {}
        for _ in range(MAX_CORRECTIONS):
            tokens = tried[words] = self._measure(words)
            if tokens == target:
                break
            step = round((target - tokens) / self.per_word) or (1 if tokens < target else -1)
            nxt = max(1, words + step)
            if nxt in tried:  # oscillating between two counts: no word count hits the target
                break
            words = nxt
        best = min(tried, key=lambda w: (abs(tried[w] - target), w))
        sizing = Sizing(target, best, tried[best])
        self._cache[target] = sizing
        return sizing


def tokenizer_counter(path: str | Path) -> TokenCount:
    """A counter from a Hugging Face `tokenizer.json` (needs the optional `tokenizers`)."""
    from scaler.errors import FieldError, InputError, OptionalDependencyMissing

    try:
        from tokenizers import Tokenizer  # type: ignore[import-not-found]
    except ImportError:
        raise OptionalDependencyMissing("--tokenizer", "tokenizer", "tokenizers") from None
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises its own exception types
        raise InputError([FieldError(str(path), "--tokenizer", f"cannot load tokenizer.json: {str(exc)[:200]}")]) from None

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=True).ids)

    return count
