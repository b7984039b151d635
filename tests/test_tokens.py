"""The TensorFlow-free vectorization (w2vpipe.tokens, w2vpipe.corpus_shards) against the tutorial's
TextVectorization layer: the same vocabulary (tokens, order, ids) and the same ids, on Shakespeare and on
a text made to catch the differences between bytes and text, and the same lines in the same shards."""

from __future__ import annotations

import gzip
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from w2vpipe import corpus_shards
from w2vpipe.corpus_shards import find_shards, read_shard_lines
from w2vpipe.tokens import count_tokens, token_index, vectorize_lines, vocabulary_from_counts
from w2vpipe.vocabulary import adapt_vectorizer, iter_line_blocks, split_block, vectorize_block

# Non-ASCII letters, upper case ones included (TF lowers ASCII only), spaces that are not ASCII
# whitespace (no-break, em, zero-width, the \x1c-\x1f separators str.split would split at), ASCII
# whitespace (tab, \v, \f), punctuation inside words, [UNK] written out, a line of blanks, an interior
# NUL, and counts tied at the vocabulary's cut.
ADVERSARIAL = [
    "Émile ÉCOLE école straße STRASSE naïve NAÏVE", "a\xa0b a b c\u2003d c d", "tab\there\vvt\fff here",
    "x\x1cy\x1dz\x1e\x1fw x y", "don't re-enter (foo) [UNK] <b>bold</b> dont reenter", "   \t ",
    "İstanbul ǅ Σίσυφος ΣΊΣΥΦΟΣ", "a_b a__b ab", "ÀÀ àà Àà", "\u2028sep\u2029x\x85y", "b a c b a c",
    "zz yy zz yy xx ww xx ww vv uu", "nu\x00l \x00nul", "日本語 テキスト 日本語", "a\u200bb", "Z z ZZ zz",
]


def reference_vectorize(lines: list[str], vocab_size: int, sequence_length: int | None,
                        tmp_path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The tutorial's layer, adapted on `lines`: (vocabulary, ids, lengths)."""
    corpus = tmp_path / "reference.txt"
    corpus.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    layer = adapt_vectorizer(corpus, vocab_size, sequence_length)
    sentences = vectorize_block(layer, lines)
    return [str(token) for token in layer.get_vocabulary()], sentences.tokens, sentences.lengths


@pytest.mark.parametrize("sequence_length", [None, 10])
def test_shakespeare_gives_the_layers_vocabulary_and_ids(shakespeare: Path, tmp_path: Path,
                                                        sequence_length: int | None) -> None:
    (lines,) = iter_line_blocks(shakespeare, 100_000)
    vocabulary, ids, lengths = reference_vectorize(lines, 4096, sequence_length, tmp_path)
    encoded = [line.encode("utf-8") for line in lines]
    mine = vocabulary_from_counts(count_tokens(encoded), 4096)
    assert mine == vocabulary
    sentences = vectorize_lines(encoded, token_index(mine), sequence_length)
    np.testing.assert_array_equal(sentences.tokens, ids)
    np.testing.assert_array_equal(sentences.lengths, lengths)
    assert sentences.tokens.dtype == np.int32 and sentences.lengths.dtype == np.int32


@pytest.mark.parametrize(("vocab_size", "sequence_length"), [(1000, None), (1000, 3), (12, None), (9, 4)])
def test_an_adversarial_text_gives_the_layers_vocabulary_and_ids(tmp_path: Path, vocab_size: int,
                                                                 sequence_length: int | None) -> None:
    vocabulary, ids, lengths = reference_vectorize(ADVERSARIAL, vocab_size, sequence_length, tmp_path)
    encoded = [line.encode("utf-8") for line in ADVERSARIAL]
    counts = count_tokens(encoded)
    mine = vocabulary_from_counts(counts, vocab_size)
    assert mine == vocabulary
    if vocab_size < len(counts):  # the cut falls inside a group of equal counts: the tie-break decides
        cut = counts[mine[-1].encode("utf-8")]
        kept = sum(counts[token.encode("utf-8")] == cut for token in mine[2:])
        assert 0 < kept < sum(count == cut for count in counts.values())
    else:
        assert {"École", "a\xa0b", "x\x1cy\x1dz\x1e\x1fw", "nu\x00l"} <= set(mine)  # no split, no lowering
    sentences = vectorize_lines(encoded, token_index(mine), sequence_length)
    np.testing.assert_array_equal(sentences.tokens, ids)
    np.testing.assert_array_equal(sentences.lengths, lengths)


def test_counts_merged_from_shards_give_the_vocabulary_of_the_whole(shakespeare: Path) -> None:
    (lines,) = iter_line_blocks(shakespeare, 100_000)
    encoded = [line.encode("utf-8") for line in lines]
    merged: Counter[bytes] = Counter()
    for start in range(0, len(encoded), 3000):
        merged.update(count_tokens(encoded[start:start + 3000]))
    assert vocabulary_from_counts(merged, 4096) == vocabulary_from_counts(count_tokens(encoded), 4096)


def test_shards_hold_the_lines_the_text_reader_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Line ends "\\n", "\\r\\n" and a lone "\\r", also split across reads; empty lines; a byte-order mark;
    no final line end; gzip."""
    rng = random.Random(7)
    pieces = ["word", "two words", "\r", "\n", "\r\n", " ", "É", "\t", "\x0b", "\x1c", "\xa0", "\u2028", "\x85"]
    corpus, plain = tmp_path / "corpus.txt", tmp_path / "plain.txt"
    for trial in range(60):
        text = ("\ufeff" if trial % 3 == 0 else "") + "".join(rng.choice(pieces) for _ in range(rng.randint(1, 150)))
        data = text.encode("utf-8")
        corpus.write_bytes(gzip.compress(data) if trial % 4 == 0 else data)
        monkeypatch.setattr(corpus_shards, "SCAN_BYTES", rng.choice([1, 2, 5, 64]))
        for shard_lines in (1, 3, 1000):
            expected = [[line.encode("utf-8") for line in block] for block in iter_line_blocks(corpus, shard_lines)]
            found = find_shards(corpus, shard_lines, plain)
            assert [read_shard_lines(found.path, shard) for shard in found.shards] == expected, (text, shard_lines)
            assert [shard.first_line for shard in found.shards] == [i * shard_lines for i in range(len(expected))]


def test_held_out_lines_of_a_shard_are_the_streamed_blocks(shakespeare: Path, tmp_path: Path) -> None:
    found = find_shards(shakespeare, 5000, tmp_path / "unused.txt")
    assert found.path == shakespeare and found.lines == 32777 and len(found.shards) == 7
    for shard, block in zip(found.shards, iter_line_blocks(shakespeare, 5000), strict=True):
        mine = split_block(read_shard_lines(found.path, shard), shard.first_line, 0.02)
        theirs = split_block(block, shard.index * 5000, 0.02)
        assert mine == tuple([line.encode("utf-8") for line in part] for part in theirs)
