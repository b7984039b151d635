"""The tutorial's TextVectorization on UTF-8 bytes, without TensorFlow: the same tokens, the same
vocabulary in the same order, the same ids.

Why this is exact (tests/test_tokens.py checks it against the layer on Shakespeare and on an
adversarial text):
- `tf.strings.lower` without an encoding lowers ASCII bytes only ('É' stays 'É'): a byte table;
- the regex class of `string.punctuation` deletes ASCII bytes only: `bytes.translate(..., delete=)`;
- `tf.strings.split` with no separator splits on ASCII whitespace (" \\t\\n\\v\\f\\r"), as
  `bytes.split()` does (`str.split()` would also split on '\\xa0' or '\\x1c': bytes, not text);
- Keras's `IndexLookup.finalize_state` orders tokens by `np.lexsort((tokens, counts))[::-1]`:
  most frequent first, equal counts by the token's bytes in descending order; padding and
  [UNK] come first and count in `max_tokens`.
ASCII bytes never occur inside a multi-byte UTF-8 sequence, so every token stays valid UTF-8.

One difference, in the layer, not here: `get_vocabulary()` goes through a numpy string array,
which drops a token's trailing NUL characters ("a\\x00" is listed as "a"); this vocabulary keeps them.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import repeat

import numpy as np

from w2vpipe.vocabulary import PAD_TOKEN, UNKNOWN_TOKEN, Sentences

LOWERCASE_ASCII = bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode())
PUNCTUATION = string.punctuation.encode()
UNKNOWN_ID = 1
# Standardization deletes "." from every line, so no token is ever "."; put between lines it marks
# where each line's tokens end, and one C-level pass splits and looks up a whole shard.
LINE_END = b"."
LINE_END_ID = -1


def standardized_tokens(lines: Iterable[bytes]) -> list[bytes]:
    """Every token of `lines` (UTF-8, no line terminators), in order."""
    return b"\n".join(lines).translate(LOWERCASE_ASCII, PUNCTUATION).split()


def count_tokens(lines: Iterable[bytes]) -> Counter[bytes]:
    """How often each token occurs in `lines`: what `TextVectorization.adapt` counts."""
    return Counter(standardized_tokens(lines))


def prune_counts(counts: Counter[bytes], limit: int, min_reduce: int) -> int:
    """gensim's vocabulary scan with `max_vocab_size`, there after each sentence, here after each shard's
    counts are added: when more than `limit` tokens are counted, drop (in place: no second table) those
    counted fewer than `min_reduce` times (`utils.prune_vocab`), and the next time drop one more; returns
    the next `min_reduce`. A token dropped and seen again later counts again from zero."""
    if len(counts) <= limit:
        return min_reduce
    for token in [token for token, n in counts.items() if n < min_reduce]:
        del counts[token]
    return min_reduce + 1


def vocabulary_from_counts(counts: Mapping[bytes, int], vocab_size: int | None, min_count: int = 1) -> list[str]:
    """Padding, [UNK], then the tokens seen at least `min_count` times, most frequent first, at most
    `vocab_size - 2` of them (None: all), ties by descending bytes: the order
    `TextVectorization.get_vocabulary()` gives after `adapt`."""
    kept = counts.items() if min_count <= 1 else [(token, n) for token, n in counts.items() if n >= min_count]
    ranked = sorted(kept, key=lambda item: (item[1], item[0]), reverse=True)[: None if vocab_size is None
                                                                            else vocab_size - 2]
    return [PAD_TOKEN, UNKNOWN_TOKEN, *(token.decode("utf-8") for token, _ in ranked)]


def token_index(vocabulary: list[str]) -> dict[bytes, int]:
    """Token bytes -> id, for `vectorize_lines` (padding and [UNK] are never tokens of a line)."""
    index = {token.encode("utf-8"): i for i, token in enumerate(vocabulary) if i >= 2}
    index[LINE_END] = LINE_END_ID
    return index


def vectorize_lines(lines: list[bytes], index: dict[bytes, int], sequence_length: int | None) -> Sentences:
    """Ids of `lines` as the layer returns them: whole lines (ragged), or each cut or padded with 0 to
    `sequence_length`. Unknown tokens are [UNK] (1)."""
    if not lines:
        return Sentences(tokens=np.zeros(0, dtype=np.int32), lengths=np.zeros(0, dtype=np.int32))
    # Lines hold no "\n" (they are split at it), so after standardization every "\n" is a line's end.
    standardized = b"\n".join(lines).translate(LOWERCASE_ASCII, PUNCTUATION)
    tokens = (standardized.replace(b"\n", b" " + LINE_END + b" ") + b" " + LINE_END).split()
    ids = np.fromiter(map(index.get, tokens, repeat(UNKNOWN_ID)), dtype=np.int32, count=len(tokens))
    ends = np.flatnonzero(ids == LINE_END_ID)
    lengths = (np.diff(ends, prepend=-1) - 1).astype(np.int32)
    words = ids[ids != LINE_END_ID]
    if sequence_length is None:
        return Sentences(tokens=words, lengths=lengths)
    # Row r takes its line's first `sequence_length` tokens, then zeros.
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(len(words)) - starts
    row = np.repeat(np.arange(len(lines)), lengths)
    kept = position < sequence_length
    rows = np.zeros((len(lines), sequence_length), dtype=np.int32)
    rows[row[kept], position[kept]] = words[kept]
    return Sentences(tokens=rows.reshape(-1), lengths=np.full(len(lines), sequence_length, dtype=np.int32))
