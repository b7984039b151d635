"""Stage 5: the embeddings in standard files, added to the training's MLflow run: word2vec text and
binary, gensim's KeyedVectors, the Embedding Projector's vectors.tsv, metadata.tsv and config, and a
2-D map of the most frequent words (map.png, map.html: pictures, which .dvcignore keeps out of the
folder's hash, as t-SNE's last bits differ between CPUs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline import layout, tracking
from w2vpipe.export import write_text_files
from w2vpipe.files import atomic_dir
from w2vpipe.params import Params
from w2vpipe.vectors import WORD2VEC_TEXT_FILE, keyed_vectors, write_standard_files
from w2vpipe.vocabulary import load_vocabulary
from w2vpipe.wordmap import MAP_HTML_FILE, MAP_PNG_FILE, map_coordinates, write_map_html, write_map_png

if TYPE_CHECKING:
    from gensim.models import KeyedVectors


def run(params: Params) -> str:
    vocabulary = load_vocabulary(layout.VOCABULARY_FILE)
    written, dimensions = write_exports(vocabulary, params)
    # Logged once the tables are freed: MLflow loads the logged model to check it, a table's worth again.
    tracked = tracking.track_outputs(layout.EMBEDDING_FILE, [["log_export", str(layout.EXPORT_DIR)]])
    text_words = params.export.text_words
    text_part = ""
    if text_words is not None and text_words < len(vocabulary) - 2:
        text_part = f"; the text files hold the {text_words:,} most frequent (export.text_words)"
    return (f"{len(vocabulary) - 1:,} vectors of {dimensions} dimensions in {layout.EXPORT_DIR}/ (Projector "
            f"files, {', '.join(written)}{text_part}), {tracked}")


def write_exports(vocabulary: list[str], params: Params) -> tuple[list[str], int]:
    """Every file of exports/; the names of the standard files and pictures, and the vectors' dimensions."""
    weights = layout.load_embedding(vocabulary)
    cores = len(os.sched_getaffinity(0))  # the text files' values are formatted on each
    with atomic_dir(layout.EXPORT_DIR) as out_dir:
        text_words = params.export.text_words
        write_text_files(out_dir, vocabulary, weights, tensor_name=layout.EMBEDDING_NAME, words=text_words,
                         workers=cores)
        vectors = keyed_vectors(vocabulary, weights)
        written = [WORD2VEC_TEXT_FILE, *write_standard_files(out_dir, vectors), *write_map(out_dir, vectors, params)]
    return written, vectors.vector_size


def write_map(out_dir: Path, vectors: KeyedVectors, params: Params) -> list[str]:
    """The map of the `export.map_words` most frequent words (the vocabulary's order); its file names."""
    words = vectors.index_to_key[:params.export.map_words]
    if len(words) < 3:  # t-SNE needs a few points
        return []
    coordinates = map_coordinates(vectors.vectors[:len(words)], params.export.seed)
    corpus = Path(urlparse(params.corpus.url).path).name or params.corpus.url
    title = f"word2vec: the {len(words)} most frequent words of {corpus}, {vectors.vector_size} dimensions"
    write_map_png(out_dir / MAP_PNG_FILE, words, coordinates, title)
    write_map_html(out_dir / MAP_HTML_FILE, words, coordinates, title)
    return [MAP_PNG_FILE, MAP_HTML_FILE]
