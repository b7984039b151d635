"""Stage 5: the embeddings in standard files, added to the training's MLflow run: word2vec text and
binary, gensim's KeyedVectors, and the Embedding Projector's vectors.tsv, metadata.tsv and config."""

from __future__ import annotations

from pipeline import layout, tracking
from w2vpipe.export import write_projector_files
from w2vpipe.files import atomic_dir
from w2vpipe.params import Params
from w2vpipe.vectors import keyed_vectors, write_standard_files
from w2vpipe.vocabulary import load_vocabulary


def run(params: Params) -> str:
    vocabulary = load_vocabulary(layout.VOCABULARY_FILE)
    weights = layout.load_embedding(vocabulary)
    tracking.prepare_store()
    with atomic_dir(layout.EXPORT_DIR) as out_dir:
        write_projector_files(out_dir, vocabulary, weights, tensor_name=layout.EMBEDDING_NAME)
        standard = write_standard_files(out_dir, keyed_vectors(vocabulary, weights))
    tracked = tracking.log_export(layout.EMBEDDING_FILE, layout.EXPORT_DIR)
    tracked = tracked or "no MLflow run to add them to (train's run is gone)"
    return (f"{len(vocabulary) - 1:,} vectors of {weights.shape[1]} dimensions in {layout.EXPORT_DIR}/ (Projector "
            f"files, {', '.join(standard)}), {tracked}")
