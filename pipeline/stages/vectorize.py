"""Stage 2: the tutorial's TextVectorization, shard by shard on a Dask cluster: the vocabulary, per-word
counts and the integer sentences, in shards of `vectorize.shard_lines` lines or 16 MiB of text, whichever
comes first (memory stays bounded), the held-out lines (`vectorize.validation_fraction`) apart under
validation/. A line of more than 10,000 words is cut at whitespace into pieces of 10,000 words, each a
line of its own (gensim's MAX_WORDS_IN_BATCH; `vocabulary.cut_line`, `w2vpipe.corpus_shards`): the
summary says how many were.

Two passes over the shards, each shard a task: (1) count the tokens of its training lines; the counts
are summed here and give the vocabulary `TextVectorization.adapt` gives (`w2vpipe.tokens`); (2) turn
its lines into ids and write its folders. No TensorFlow: the layer is the tests' reference. Workers
read their shards of a plain corpus themselves; a compressed one (gzip, bz2, xz) is streamed by this
process at each pass, each shard's text sent to its task: no decompressed copy on disk.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import cluster, layout
from w2vpipe.corpus import check_corpus_text, corpus_filename
from w2vpipe.corpus_shards import ShardRange, find_shards, read_shard_lines
from w2vpipe.files import atomic_dir, shard_name
from w2vpipe.params import Params
from w2vpipe.tokens import count_tokens, prune_counts, token_index, vectorize_lines, vocabulary_from_counts
from w2vpipe.vocabulary import MAX_LINE_WORDS, load_vocabulary, save_sentences, save_vocabulary, split_block


def count_shard(shard: ShardRange, corpus: Path, validation_fraction: float) -> Counter[bytes]:
    """Task of pass 1: the token counts of the shard's training lines."""
    training, _ = split_block(read_shard_lines(corpus, shard), shard.first_line, validation_fraction)
    return count_tokens(training)


@functools.lru_cache(maxsize=1)
def index_of(vocabulary_file: Path, version: tuple[int, int]) -> tuple[dict[bytes, int], int]:
    """(token -> id, vocabulary size) of the vocabulary file at `version` (its mtime and size): read once
    per worker process from the shared filesystem. Sent with the tasks instead, a million-word dict held
    the first task back for minutes (measured: 153 s on 2 workers)."""
    vocabulary = load_vocabulary(vocabulary_file)
    return token_index(vocabulary), len(vocabulary)


def write_shard(shard: ShardRange, corpus: Path, validation_fraction: float, vocabulary_file: Path,
                sequence_length: int | None, out_dir: Path) -> tuple[np.ndarray, int, int]:
    """Task of pass 2: write the shard's ids (and its held-out lines'); (id counts, lines, held-out lines)."""
    stat = vocabulary_file.stat()
    index, vocabulary_size = index_of(vocabulary_file, (stat.st_mtime_ns, stat.st_size))
    training, validation = split_block(read_shard_lines(corpus, shard), shard.first_line, validation_fraction)
    sentences = vectorize_lines(training, index, sequence_length)
    save_sentences(sentences, out_dir / shard_name(shard.index))
    if validation:
        save_sentences(vectorize_lines(validation, index, sequence_length),
                       layout.shard_dir(out_dir, shard.index, validation=True))
    # Counted on the ids written (cut and padded lines included, as training reads them).
    return np.bincount(sentences.tokens, minlength=vocabulary_size).astype(np.int64), len(sentences), len(validation)


def run(params: Params) -> str:
    corpus = layout.CORPUS_DIR / corpus_filename(params.corpus.url)
    layout.require_input(corpus, "download")
    check_corpus_text(corpus)
    settings = params.vectorize
    with cluster.shard_runner(params.cluster) as shards, atomic_dir(layout.VECTORIZED_DIR) as out_dir:
        started = time.perf_counter()  # the stage's work, less a local cluster's start: what the benchmark compares
        out_dir = out_dir.resolve()  # workers may run elsewhere: absolute paths on the shared filesystem
        found = find_shards(corpus, settings.shard_lines)
        source = found.path.resolve()
        token_counts: Counter[bytes] = Counter()
        min_reduce = 1  # gensim's: the count below which the next pruning drops tokens

        def add_counts(index: int, shard_counts: Counter[bytes]) -> None:
            nonlocal min_reduce
            token_counts.update(shard_counts)  # sums of integers: the same in any order, unless pruned
            if settings.counting_limit is not None:
                min_reduce = prune_counts(token_counts, settings.counting_limit, min_reduce)

        shards.run(count_shard, found.sources(), add_counts, large_items=found.compressed, keep_results=False,
                   corpus=source, validation_fraction=settings.validation_fraction)
        vocabulary = vocabulary_from_counts(token_counts, settings.vocab_size, settings.min_count)
        pruned = (f"; past vectorize.counting_limit ({settings.counting_limit:,}), tokens seen fewer than "
                  f"{min_reduce - 1} times were dropped, so counts near that may be short" if min_reduce > 1 else "")
        print(f"  vocabulary: {len(vocabulary):,} tokens of {len(token_counts):,} distinct, counted in "
              f"{time.perf_counter() - started:.2f} s{pruned}", flush=True)
        save_vocabulary(vocabulary, out_dir / layout.VOCABULARY_FILE.name)
        counts = np.zeros(len(vocabulary), dtype=np.int64)  # training lines only, like the vocabulary
        lines = 0

        def progress(index: int, result: tuple[np.ndarray, int, int]) -> None:
            nonlocal lines
            counts[:] += result[0]
            lines += result[1]
            print(f"  shard {index}: {lines:,} lines, {counts[1:].sum() / (time.perf_counter() - started):,.0f} "
                  f"words/s", flush=True)

        results = shards.run(write_shard, found.sources(), progress, large_items=found.compressed, corpus=source,
                             validation_fraction=settings.validation_fraction,
                             vocabulary_file=out_dir / layout.VOCABULARY_FILE.name,
                             sequence_length=settings.sequence_length,
                             out_dir=out_dir)
        counts[0] = 0  # padding is not a word
        np.save(out_dir / layout.COUNTS_FILE.name, counts)
        held_out = sum(result[2] for result in results)
        stats = {"lines": lines, "validation_lines": held_out, "words": int(counts.sum()), "shards": len(results)}
        (out_dir / layout.STATS_FILE_NAME).write_text(json.dumps(stats, indent=2) + "\n")
        seconds = time.perf_counter() - started - shards.startup_seconds
        workers = shards.describe()
    shape = f"{settings.sequence_length} tokens" if settings.sequence_length else "whole lines"
    cut = (f"; {found.long_lines:,} line{'s' if found.long_lines != 1 else ''} of more than {MAX_LINE_WORDS:,} words "
           f"cut at whitespace into lines of {MAX_LINE_WORDS:,} (as gensim cuts them)" if found.long_lines else "")
    return (f"{lines:,} lines ({shape}) and {held_out:,} held out, {stats['words']:,} words in {stats['shards']} "
            f"shards, vocabulary of {len(vocabulary):,} tokens{cut}; {workers}; made in {seconds:.3f} s "
            f"({stats['words'] / seconds:,.0f} words/s)")
