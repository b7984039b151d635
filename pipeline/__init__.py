"""Orchestration of the w2vpipe library: stage entry points (run by DVC), MLflow tracking and
the Prefect flow. No word2vec logic lives here."""
