"""The TensorFlow-free vectorization (w2vpipe.tokens, w2vpipe.corpus_shards) against the tutorial's
TextVectorization layer: the same vocabulary (tokens, order, ids) and the same ids, on Shakespeare and on
a text made to catch the differences between bytes and text, and the same lines in the same shards."""

from __future__ import annotations

import gzip
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from w2vpipe import corpus_shards, vocabulary
from w2vpipe.corpus_shards import find_shards, read_shard_lines
from w2vpipe.tokens import (
    count_tokens,
    prune_counts,
    standardized_tokens,
    token_index,
    vectorize_lines,
    vocabulary_from_counts,
)
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
    no final line end; gzip; lines cut after a few words (MAX_LINE_WORDS made small), cuts across reads."""
    rng = random.Random(7)
    pieces = ["word", "two words", "\r", "\n", "\r\n", " ", "É", "\t", "\x0b", "\x1c", "\xa0", "\u2028", "\x85",
              " a b\tc  d e ", "f,g h"]
    corpus = tmp_path / "corpus.txt"
    for trial in range(60):
        text = ("\ufeff" if trial % 3 == 0 else "") + "".join(rng.choice(pieces) for _ in range(rng.randint(1, 150)))
        data = text.encode("utf-8")
        corpus.write_bytes(gzip.compress(data) if trial % 4 == 0 else data)
        monkeypatch.setattr(corpus_shards, "SCAN_BYTES", rng.choice([1, 2, 5, 64]))
        monkeypatch.setattr(vocabulary, "MAX_LINE_WORDS", rng.choice([1, 2, 3, 10_000]))
        for shard_lines in (1, 3, 1000):
            expected = [[line.encode("utf-8") for line in block] for block in iter_line_blocks(corpus, shard_lines)]
            found = find_shards(corpus, shard_lines)
            assert [read_shard_lines(found.path, shard) for shard in found.sources()] == expected, (text, shard_lines)
            assert [shard.first_line for shard in found.shards] == [i * shard_lines for i in range(len(expected))]


def test_held_out_lines_of_a_shard_are_the_streamed_blocks(shakespeare: Path, tmp_path: Path) -> None:
    found = find_shards(shakespeare, 5000)
    assert found.path == shakespeare and found.lines == 32777 and len(found.shards) == 7
    for shard, block in zip(found.shards, iter_line_blocks(shakespeare, 5000), strict=True):
        mine = split_block(read_shard_lines(found.path, shard), shard.first_line, 0.02)
        theirs = split_block(block, shard.index * 5000, 0.02)
        assert mine == tuple([line.encode("utf-8") for line in part] for part in theirs)


def reference_shards(data: bytes, shard_lines: int, shard_bytes: int, max_words: int) -> list[tuple[int, int, int]]:
    """(start, end, lines) of each shard, by plain Python over the lines: a line (or a piece of `max_words`
    words of a longer one, which ends where the next piece's first word begins) closes the shard when it is
    the shard's `shard_lines`-th, or when it ends `shard_bytes` or more past the shard's start."""
    unit_ends, offset = [], 0
    for raw in data.splitlines(keepends=True):
        line = raw.rstrip(b"\r\n")
        if line:
            word_starts = [match.start() for match in re.finditer(rb"[^ \t\n\x0b\x0c\r]+", line)]
            unit_ends += [offset + start for start in word_starts[max_words::max_words]] + [offset + len(raw)]
        offset += len(raw)
    shards, start, lines = [], 0, 0
    for end in unit_ends:
        lines += 1
        if lines == shard_lines or end - start >= shard_bytes or end == unit_ends[-1]:
            shards.append((start, end, lines))
            start, lines = end, 0
    return shards


def test_shards_close_at_shard_bytes_and_together_hold_every_line(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard closes at `shard_lines` lines or at the first line end SHARD_BYTES or more past its start,
    whichever comes first, as plain Python over the lines finds them; its lines are the reader's."""
    rng = random.Random(11)
    corpus = tmp_path / "corpus.txt"
    for _ in range(60):
        choices = ["a", "bb", "ccc", "dd dd", "\n", "\r\n", "\r", "  ", "\t"]
        words = [rng.choice(choices) for _ in range(rng.randint(1, 300))]
        data = " ".join(words).encode()
        corpus.write_bytes(data)
        cap, shard_lines, max_words = rng.choice([1, 5, 16, 64]), rng.choice([1, 4, 1000]), rng.choice([2, 10_000])
        monkeypatch.setattr(corpus_shards, "SHARD_BYTES", cap)
        monkeypatch.setattr(corpus_shards, "SCAN_BYTES", rng.choice([3, 7, 1 << 20]))
        monkeypatch.setattr(vocabulary, "MAX_LINE_WORDS", max_words)
        found = find_shards(corpus, shard_lines)
        assert [(shard.start, shard.end, shard.lines) for shard in found.shards] == reference_shards(
            data, shard_lines, cap, max_words), (data, shard_lines, cap, max_words)
        read = [read_shard_lines(found.path, shard) for shard in found.shards]
        assert [line for lines in read for line in lines] == [line.encode() for block in iter_line_blocks(corpus, 10**6)
                                                              for line in block]
        assert [shard.first_line for shard in found.shards] == [sum(shard.lines for shard in found.shards[:index])
                                                                for index in range(len(found.shards))]


def long_line_corpus(path: Path, words: int) -> list[str]:
    """A corpus whose second line holds `words` words (lowercase letters, no punctuation: tokens as written);
    returns that line's words."""
    rng = random.Random(5)
    line = ["".join(rng.choices("abcdefgh", k=rng.randint(1, 6))) for _ in range(words)]
    path.write_text(f"A first line.\n{'  '.join(line[:3])}\t{' '.join(line[3:])}\nthe last line\n", encoding="utf-8")
    return line


def test_a_line_of_more_than_10000_words_is_cut_as_gensim_cuts_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of 10,000 words (gensim's LineSentence gives the same sentences), whatever the reads and the
    shards: a shard may begin and end inside the long line."""
    from gensim.models.word2vec import LineSentence

    corpus = tmp_path / "corpus.txt"
    line = long_line_corpus(corpus, 25_001)
    gensim_sentences = list(LineSentence(str(corpus)))
    assert [len(sentence) for sentence in gensim_sentences] == [3, 10_000, 10_000, 5_001, 3]
    expected: list[bytes] | None = None
    for scan_bytes, shard_bytes in ((1 << 24, 1 << 24), (4096, 1 << 24), (7, 30_000), (50_000, 1)):
        monkeypatch.setattr(corpus_shards, "SCAN_BYTES", scan_bytes)
        monkeypatch.setattr(corpus_shards, "SHARD_BYTES", shard_bytes)
        found = find_shards(corpus, 100_000)
        lines = [piece for shard in found.shards for piece in read_shard_lines(found.path, shard)]
        assert found.long_lines == 1 and found.lines == 5
        assert [piece.split() for piece in lines[1:4]] == [[word.encode() for word in sentence]
                                                          for sentence in gensim_sentences[1:4]]
        assert expected is None or lines == expected  # the same pieces, however read and sharded
        expected = lines
    vocabulary = vocabulary_from_counts(count_tokens(expected), 100)
    sentences = vectorize_lines(expected, token_index(vocabulary), None)
    assert sentences.lengths.tolist() == [3, 10_000, 10_000, 5_001, 3]
    assert b" ".join(expected[1:4]).split() == [word.encode() for word in line]  # no word lost or split


def test_a_one_line_corpus_is_read_in_shards_of_bounded_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No task reads the whole line: every shard's byte range is about SHARD_BYTES (one 10,000-word piece more
    at most), and the ranges cover the file."""
    corpus = tmp_path / "corpus.txt"
    long_line_corpus(corpus, 200_000)
    corpus.write_bytes(corpus.read_bytes().split(b"\n")[1])  # the long line alone, no line end
    monkeypatch.setattr(corpus_shards, "SHARD_BYTES", 100_000)
    found = find_shards(corpus, 100_000)
    sizes = [shard.end - shard.start for shard in found.shards]
    assert len(found.shards) > 5 and max(sizes) < 100_000 + 10_000 * 7  # a piece: 10,000 words of up to 6 letters
    assert [shard.start for shard in found.shards[1:]] == [shard.end for shard in found.shards[:-1]]
    assert found.shards[-1].end == corpus.stat().st_size and found.lines == 20


def vectorize_in(workdir: Path, corpus: Path, **settings: object) -> tuple[str, dict[str, bytes]]:
    """The vectorize stage (after download) on `corpus` in `workdir`: its summary line, and every file it wrote."""
    import shutil
    import subprocess
    import sys

    import yaml

    from conftest import REPO_ROOT, tool_env

    workdir.mkdir()
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["corpus"].update(url=str(corpus), sha256=None)
    for key, value in settings.items():
        section, _, name = key.partition("__")
        params[section][name] = value
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    summary = ""
    for name in ("download", "vectorize"):
        result = subprocess.run([sys.executable, "-m", "pipeline", name], cwd=workdir, capture_output=True, text=True,
                                env=tool_env(PYTHONPATH=str(REPO_ROOT)), timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        summary = result.stdout.strip().splitlines()[-1]
    out = workdir / "data" / "vectorized"
    files = {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
    shutil.rmtree(workdir)
    return summary, files


def test_the_vectorize_stage_cuts_a_long_line_the_same_on_any_workers_and_shards(tmp_path: Path) -> None:
    """Shards that begin and end inside the long line, read by 1 or 2 Dask workers, or the whole corpus in one
    shard: the same lines (pieces of 10,000 words), vocabulary and counts; the summary says what was cut."""
    corpus = tmp_path / "corpus.txt"
    long_line_corpus(corpus, 25_001)
    settings = {"vectorize__validation_fraction": 0.5}
    one_worker = vectorize_in(tmp_path / "one", corpus, vectorize__shard_lines=2, cluster__workers=1, **settings)
    two_workers = vectorize_in(tmp_path / "two", corpus, vectorize__shard_lines=2, cluster__workers=2, **settings)
    one_shard = vectorize_in(tmp_path / "whole", corpus, **settings)
    assert "1 line of more than 10,000 words cut at whitespace into lines of 10,000" in one_worker[0]
    assert "3 shards" in one_worker[0] and "2 workers" in two_workers[0] and "1 shards" in one_shard[0]
    assert one_worker[1] == two_workers[1]
    for name in ("vocab.txt", "counts.npy"):
        assert one_worker[1][name] == one_shard[1][name], name

    def lines(files: dict[str, bytes], held_out: bool) -> list[int]:
        import io

        return [length for name in sorted(files) if name.endswith("lengths.npy") and name.startswith("validation/")
                == held_out for length in np.load(io.BytesIO(files[name])).tolist()]

    # Lines 1 and 3 of 5 held out (one in every two): two of the three pieces.
    for files in (one_worker[1], one_shard[1]):
        assert lines(files, held_out=False) == [3, 10_000, 3] and lines(files, held_out=True) == [10_000, 5_001]


@pytest.mark.parametrize("min_count", [2, 5])
def test_min_count_gives_gensims_vocabulary_of_the_same_sentences(shakespeare: Path, min_count: int) -> None:
    from gensim.models import Word2Vec

    (lines,) = iter_line_blocks(shakespeare, 100_000)
    encoded = [line.encode("utf-8") for line in lines]
    counts = count_tokens(encoded)
    ours = vocabulary_from_counts(counts, None, min_count)
    sentences = [[token.decode() for token in standardized_tokens([line])] for line in encoded]
    model = Word2Vec(min_count=min_count)
    model.build_vocab([sentence for sentence in sentences if sentence])
    assert ours[:2] == ["", "[UNK]"]
    assert set(ours[2:]) == set(model.wv.index_to_key)
    assert [counts[word.encode()] for word in ours[2:]] == [model.wv.get_vecattr(word, "count")
                                                            for word in model.wv.index_to_key]
    assert len(ours) - 2 < len(counts)  # min_count dropped words
    capped = vocabulary_from_counts(counts, 1000, min_count)
    assert capped == ours[:1000]  # vocab_size caps what min_count keeps


def test_counting_limit_prunes_as_gensims_max_vocab_size(shakespeare: Path) -> None:
    """Past the limit, the counts after each shard are gensim's after each sentence when a shard is one
    sentence: the same tokens dropped, the same counts kept."""
    from gensim.models import Word2Vec

    blocks = [[line.encode("utf-8") for line in block] for block in iter_line_blocks(shakespeare, 2000)]
    counts: Counter[bytes] = Counter()
    min_reduce = 1
    for block in blocks:
        counts.update(count_tokens(block))
        min_reduce = prune_counts(counts, 3000, min_reduce)
    model = Word2Vec(min_count=1, max_vocab_size=3000)
    model.build_vocab([[token.decode() for token in standardized_tokens(block)] for block in blocks])
    assert min_reduce > 5  # pruned after several shards
    assert {token.decode(): n for token, n in counts.items()} == {
        word: model.wv.get_vecattr(word, "count") for word in model.wv.index_to_key}
    exact = count_tokens(line for block in blocks for line in block)
    assert len(counts) < len(exact) // 3 and counts.most_common(100) == exact.most_common(100)
