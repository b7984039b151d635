"""Stage 5: vectors.tsv, metadata.tsv and projector_config.pbtxt, added to the training's MLflow run."""

from __future__ import annotations

from pipeline import layout, tracking
from w2vpipe.export import write_projector_files
from w2vpipe.files import atomic_dir
from w2vpipe.params import Params
from w2vpipe.vocabulary import load_vocabulary


def run(params: Params) -> str:
    vocabulary = load_vocabulary(layout.VOCABULARY_FILE)
    weights = layout.load_embedding(vocabulary)
    tracking.prepare_store()
    with atomic_dir(layout.EXPORT_DIR) as out_dir:
        write_projector_files(out_dir, vocabulary, weights, tensor_name=layout.EMBEDDING_NAME)
    run_id = tracking.log_export(layout.EMBEDDING_FILE, layout.EXPORT_DIR)
    tracked = f"added to MLflow run {run_id}" if run_id else "no MLflow run to add them to (train's run is gone)"
    return f"{len(vocabulary) - 1:,} vectors of {weights.shape[1]} dimensions in {layout.EXPORT_DIR}/, {tracked}"
