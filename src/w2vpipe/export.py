"""Export for the TensorFlow Embedding Projector: vectors.tsv, metadata.tsv, projector config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from w2vpipe.files import atomic_file
from w2vpipe.vectors import value_lines

VECTORS_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"
PROJECTOR_CONFIG_FILE = "projector_config.pbtxt"


def write_projector_files(out_dir: Path, vocabulary: list[str], weights: np.ndarray, tensor_name: str,
                          words: int | None = None, workers: int = 1) -> None:
    """Write the files exactly as the tutorial does (row 0, the padding token, skipped), the first `words`
    rows after it (all when None): the vocabulary's most frequent words.

    Each value is written with `str()` of its float32, the tutorial's format, so the files are
    byte-identical to the tutorial's for the same weights; on `workers` processes when the table is large
    (`w2vpipe.vectors.value_lines`).
    """
    if len(vocabulary) != len(weights):
        raise ValueError(f"vocabulary has {len(vocabulary)} tokens but the embedding has {len(weights)} rows")
    with atomic_file(out_dir / VECTORS_FILE) as tmp:
        with tmp.open("w", encoding="utf-8") as out:
            out.writelines(line.replace(" ", "\t") + "\n" for line in value_lines(weights[1:][:words], workers))
    with atomic_file(out_dir / METADATA_FILE) as tmp:
        tmp.write_text("".join(f"{word}\n" for word in vocabulary[1:][:words]), encoding="utf-8")
    with atomic_file(out_dir / PROJECTOR_CONFIG_FILE) as tmp:
        tmp.write_text(
            "embeddings {\n"
            f'  tensor_name: "{tensor_name}"\n'
            f'  tensor_path: "{VECTORS_FILE}"\n'
            f'  metadata_path: "{METADATA_FILE}"\n'
            "}\n",
            encoding="utf-8",
        )
