"""Stage 5: the embeddings in standard files, added to the training's MLflow run: word2vec text and
binary, gensim's KeyedVectors, the Embedding Projector's vectors.tsv, metadata.tsv and config, and a
2-D map of the most frequent words (map.png, map.html)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from pipeline import layout, tracking
from w2vpipe.export import write_projector_files
from w2vpipe.files import atomic_dir
from w2vpipe.params import Params
from w2vpipe.vectors import keyed_vectors, write_standard_files
from w2vpipe.vocabulary import PAD_TOKEN, UNKNOWN_TOKEN, load_vocabulary
from w2vpipe.wordmap import MAP_HTML_FILE, MAP_PNG_FILE, map_coordinates, write_map_html, write_map_png


def run(params: Params) -> str:
    vocabulary = load_vocabulary(layout.VOCABULARY_FILE)
    weights = layout.load_embedding(vocabulary)
    tracking.prepare_store()
    with atomic_dir(layout.EXPORT_DIR) as out_dir:
        write_projector_files(out_dir, vocabulary, weights, tensor_name=layout.EMBEDDING_NAME)
        written = write_standard_files(out_dir, keyed_vectors(vocabulary, weights))
        written += write_map(out_dir, vocabulary, weights, params)
    tracked = tracking.log_export(layout.EMBEDDING_FILE, layout.EXPORT_DIR)
    tracked = tracked or "no MLflow run to add them to (train's run is gone)"
    return (f"{len(vocabulary) - 1:,} vectors of {weights.shape[1]} dimensions in {layout.EXPORT_DIR}/ (Projector "
            f"files, {', '.join(written)}), {tracked}")


def write_map(out_dir: Path, vocabulary: list[str], weights: np.ndarray, params: Params) -> list[str]:
    """The map of the `export.map_words` most frequent words (the vocabulary's order); its file names."""
    rows = [index for index, token in enumerate(vocabulary) if token not in (PAD_TOKEN, UNKNOWN_TOKEN)]
    rows = rows[:params.export.map_words]
    if len(rows) < 3:  # t-SNE needs a few points
        return []
    words = [vocabulary[index] for index in rows]
    coordinates = map_coordinates(weights[rows], params.export.seed)
    corpus = Path(urlparse(params.corpus.url).path).name or params.corpus.url
    title = f"word2vec: the {len(words)} most frequent words of {corpus}, {weights.shape[1]} dimensions"
    write_map_png(out_dir / MAP_PNG_FILE, words, coordinates, title)
    write_map_html(out_dir / MAP_HTML_FILE, words, coordinates, title)
    return [MAP_PNG_FILE, MAP_HTML_FILE]
