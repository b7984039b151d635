"""One module per stage, each with `run(params) -> summary`: what `python -m pipeline STAGE` calls.

Stages import only what they need, so that `dvc repro` pays for TensorFlow and MLflow only in
the stages that use them.
"""
