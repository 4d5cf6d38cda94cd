"""A ``CLIPTokenizer`` over the toy vocabulary, built from scratch.

CLIP's tokenizer is byte-level BPE: text is lower-cased, split into words, each word spelt in
256 byte symbols with ``</w>`` marking its end, and merges join symbol pairs in rank order. We
keep the 512 byte symbols (so any prompt still tokenizes, letter by letter) and add, for each toy
word, the chain of merges that spells it whole. The result is the same class, files and
behaviour as Stable Diffusion's tokenizer, with 26 words instead of 49,408 tokens.
"""

from __future__ import annotations

from functools import cache

from transformers import CLIPTokenizer

from .captions import vocabulary

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@cache
def byte_symbols() -> tuple[str, ...]:
    """The 256 printable stand-ins byte-level BPE uses for bytes 0..255 (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in symbols:  # control bytes and space get code points past 255
            symbols[b], extra = chr(256 + extra), extra + 1
    return tuple(symbols[b] for b in range(256))


def build_tokenizer(words=None, max_length: int = 16) -> CLIPTokenizer:
    """A CLIP tokenizer that spells each of ``words`` (default: the toy vocabulary) as one token.

    ``max_length`` is what pipelines pad prompts to (SD uses 77; toy captions need under 12).
    """
    symbols = list(byte_symbols())
    vocab = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    for word in words or vocabulary():
        # Spell the word with the merges so far (earlier words may already join some of its
        # pairs), then append merges that join what is left, left to right. Appended merges rank
        # after every earlier one, so no word spelt before changes.
        pieces = _apply_merges([*word[:-1], word[-1] + "</w>"], merges)
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.append(pieces[0])
    vocab = list(dict.fromkeys(vocab)) + [BOS, EOS]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges, model_max_length=max_length)


def _apply_merges(pieces: list[str], merges: list[tuple[str, str]]) -> list[str]:
    """Byte-pair encoding: repeatedly join the adjacent pair whose merge ranks first."""
    rank = {pair: i for i, pair in enumerate(merges)}
    while len(pieces) > 1:
        pairs = [(rank.get(pair, len(rank)), i) for i, pair in enumerate(zip(pieces, pieces[1:]))]
        best, i = min(pairs)
        if best == len(rank):
            break
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2:]]
    return pieces
