"""A synthetic corpus whose words follow Zipf's law: the realistic-scale rows of the benchmarks.

    python bench/zipf_corpus.py OUT --words 1e7 [--types 2e6] [--line-words 20] [--seed 0] [--gzip]

Word r (1-based rank) is drawn with probability proportional to 1/r over `--types` types, and is spelt
as r in base 26 with letters (a, b, ..., z, ba, ...), so the pipeline's standardization keeps every
token. At 10^7 words over 2*10^6 types, 126k types occur at least 5 times; at 10^8, about 1.08M.
Lines hold `--line-words` words. The same arguments give the same bytes; the file is written in
chunks (bounded memory) to a temporary name, then renamed.
"""

from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

import numpy as np

CHUNK_WORDS = 2_000_000
LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)


def spellings(types: int) -> np.ndarray:
    """Each rank's word in base 26 letters, as a byte string array (index 0 is rank 1)."""
    ranks = np.arange(1, types + 1)
    digits = []
    rest = ranks.copy()
    while True:
        digits.append(LETTERS[rest % 26])
        rest //= 26
        if not rest.any():
            break
    width = len(digits)
    letters = np.stack(digits[::-1], axis=1)  # most significant first, zero-padded with "a"
    length = np.ones(types, np.int64)
    for position in range(1, width):
        length[ranks >= 26 ** position] = position + 1
    words = np.empty(types, dtype=f"S{width}")
    for index in range(types):  # once per type: a few seconds at 2*10^6
        words[index] = letters[index, width - length[index]:].tobytes()
    return words


def write_corpus(out: Path, words: int, types: int, line_words: int, seed: int, compress: bool) -> None:
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(1.0 / np.arange(1, types + 1))
    cumulative /= cumulative[-1]
    spelt = spellings(types)
    temporary = out.with_name(out.name + ".tmp")
    opener = gzip.open if compress else open
    with opener(temporary, "wb") as sink:
        left = words - words % line_words
        while left:
            count = min(CHUNK_WORDS - CHUNK_WORDS % line_words, left)
            ranks = np.searchsorted(cumulative, rng.random(count), side="right")
            lines = spelt[np.minimum(ranks, types - 1)].reshape(-1, line_words)
            sink.write(b"\n".join(b" ".join(line) for line in lines) + b"\n")
            left -= count
    os.replace(temporary, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--words", type=float, default=1e7)
    parser.add_argument("--types", type=float, default=2e6)
    parser.add_argument("--line-words", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gzip", action="store_true", help="write gzip (name the file .gz)")
    args = parser.parse_args()
    write_corpus(args.out, int(args.words), int(args.types), args.line_words, args.seed, args.gzip)
    print(f"{args.out}: {int(args.words):,} words over {int(args.types):,} types")


if __name__ == "__main__":
    main()
