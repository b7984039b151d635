"""Stage 2: adapt the tutorial's TextVectorization layer; save the vocabulary, per-word counts and
the integer sentences, in shards of `vectorize.shard_lines` lines (memory stays bounded), the
held-out lines (`vectorize.validation_fraction`) apart under validation/."""

from __future__ import annotations

import json
import time

import numpy as np

from pipeline import layout
from w2vpipe.corpus import check_corpus_text, corpus_filename
from w2vpipe.files import atomic_dir, shard_name
from w2vpipe.params import Params
from w2vpipe.vocabulary import (
    adapt_vectorizer,
    iter_line_blocks,
    save_sentences,
    save_vocabulary,
    split_block,
    vectorize_block,
)


def run(params: Params) -> str:
    corpus = layout.CORPUS_DIR / corpus_filename(params.corpus.url)
    layout.require_input(corpus, "download")
    check_corpus_text(corpus)
    shard_lines = params.vectorize.shard_lines
    fraction = params.vectorize.validation_fraction
    vectorize_layer = adapt_vectorizer(corpus, params.vectorize.vocab_size, params.vectorize.sequence_length,
                                       shard_lines, fraction)
    vocabulary = vectorize_layer.get_vocabulary()
    counts = np.zeros(len(vocabulary), dtype=np.int64)  # training lines only, like the vocabulary
    lines = held_out = 0
    started = time.perf_counter()
    with atomic_dir(layout.VECTORIZED_DIR) as out_dir:
        save_vocabulary(vocabulary, out_dir / layout.VOCABULARY_FILE.name)
        for shard, block in enumerate(iter_line_blocks(corpus, shard_lines)):
            training, validation = split_block(block, shard * shard_lines, fraction)
            sentences = vectorize_block(vectorize_layer, training)
            save_sentences(sentences, out_dir / shard_name(shard))
            if validation:
                save_sentences(vectorize_block(vectorize_layer, validation),
                               layout.shard_dir(out_dir, shard, validation=True))
            counts += np.bincount(sentences.tokens, minlength=len(vocabulary))
            lines += len(sentences)
            held_out += len(validation)
            print(f"  shard {shard}: {lines:,} lines, {counts[1:].sum() / (time.perf_counter() - started):,.0f} "
                  f"words/s", flush=True)
        counts[0] = 0  # padding is not a word
        np.save(out_dir / layout.COUNTS_FILE.name, counts)
        stats = {"lines": lines, "validation_lines": held_out, "words": int(counts.sum()), "shards": shard + 1}
        (out_dir / layout.STATS_FILE_NAME).write_text(json.dumps(stats, indent=2) + "\n")
    shape = f"{params.vectorize.sequence_length} tokens" if params.vectorize.sequence_length else "whole lines"
    return (f"{lines:,} lines ({shape}) and {held_out:,} held out, {stats['words']:,} words in {stats['shards']} "
            f"shards, vocabulary of {len(vocabulary):,} tokens")
