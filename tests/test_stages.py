"""The stages on real files: sharded, streaming vectorize and examples; results independent of workers."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT, tool_env


def stage_output(workdir: Path, name: str, limit: Sequence[str] = (), **env: str) -> str:
    """Run stage `name` in `workdir` (under `limit`, a command such as prlimit's that runs it); its output."""
    result = subprocess.run([*limit, sys.executable, "-m", "pipeline", name], cwd=workdir,
                            env=tool_env(PYTHONPATH=str(REPO_ROOT), **env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # TensorFlow's start-up lines (printed by C++ before TF_CPP_MIN_LOG_LEVEL applies) are filtered out.
    assert "absl::InitializeLog" not in result.stderr and "cuda drivers" not in result.stderr, result.stderr
    if name in ("vectorize", "examples"):
        assert not result.stderr.strip(), result.stderr  # nor Dask's log lines
    return result.stdout


def stage(workdir: Path, name: str, **env: str) -> str:
    """Run stage `name` in `workdir`; its summary line."""
    return stage_output(workdir, name, **env).strip().splitlines()[-1]


def every_file(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, by relative path."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shakespeare vectorized whole-line, in shards of 5,000 lines."""
    root = tmp_path_factory.mktemp("stages")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["vectorize"].update(sequence_length=None, shard_lines=5000)
    params["examples"].update(negatives="per_batch", noise="unigram")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    stage(root, "download")
    stage(root, "vectorize")
    return root


def test_vectorize_writes_bounded_shards_of_whole_lines(workdir: Path) -> None:
    stats = json.loads((workdir / "data" / "vectorized" / "stats.json").read_text())
    held_out = 655  # 2% of 32,777 lines, one in 50
    shards = sorted((workdir / "data" / "vectorized").glob("shard-*"))
    words = sum(int((np.load(shard / "tokens.npy") != 0).sum()) for shard in shards)  # padding is no word
    assert stats == {"lines": 32777 - held_out, "validation_lines": held_out, "words": words, "shards": 7}
    counts = np.load(workdir / "data" / "vectorized" / "counts.npy")
    assert counts[0] == 0 and counts.sum() == stats["words"]  # the training lines' words
    # Whole lines: more words than the tutorial's 10-token cut keeps of all lines (201,638), less 2%.
    assert stats["words"] > 201_638 * 0.98
    assert len(list((workdir / "data" / "vectorized" / "validation").glob("shard-*"))) == 7


def set_cluster(workdir: Path, **values: object) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["cluster"].update(values)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def test_outputs_do_not_depend_on_the_number_of_workers(workdir: Path) -> None:
    """vectorize and examples, bit for bit: every file of data/vectorized and data/examples."""
    results = {}
    for workers in (1, 2):
        set_cluster(workdir, workers=workers)
        summaries = [stage(workdir, name) for name in ("vectorize", "examples")]
        assert all(f"; {workers} worker{'s' if workers > 1 else ''}; made in" in line for line in summaries)
        results[workers] = {name: every_file(workdir / "data" / name) for name in ("vectorized", "examples")}
    assert len(results[1]["vectorized"]) == 7 * 2 * 2 + 3  # tokens and lengths per shard, twice; vocab, counts, stats
    assert len(results[1]["examples"]) == 7 * 2 + 1  # inputs and outputs of each held-out shard; stats
    assert results[1] == results[2]
    stats = json.loads((workdir / "data" / "examples" / "stats.json").read_text())
    assert stats["negatives"] == "per_batch" and stats["shards"] == 7 and not stats["pairs_stored"]


def test_training_draws_the_pairs_the_examples_stage_counted(workdir: Path, tmp_path: Path) -> None:
    """With examples.redraw_each_epoch (the default) the stage stores no training pair, only their count, and
    training draws them itself: one epoch trains to the same bytes as on the pairs the stage stores without it."""
    embeddings, stored = {}, {}
    for redraw in (True, False):
        project = tmp_path / f"redraw-{redraw}"
        shutil.copytree(workdir, project)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["examples"]["redraw_each_epoch"] = redraw
        params["train"].update(epochs=1, embedding_dim=16)
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        summary = stage(project, "examples")
        assert ("counted, not stored" in summary) == redraw
        stored[redraw] = sorted(path.name for path in (project / "data" / "examples").glob("shard-*"))
        stage(project, "train")
        embeddings[redraw] = (project / "models" / "w2v_embedding.npy").read_bytes()
    assert stored == {True: [], False: [f"shard-{index:05d}" for index in range(7)]}
    assert embeddings[True] == embeddings[False]


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bz2", "xz"])
def test_a_compressed_corpus_is_streamed_to_the_same_outputs(workdir: Path, tmp_path: Path,
                                                             compress: Callable[[bytes], bytes]) -> None:
    """Its 7 shards streamed to 2 workers, with no decompressed copy on disk: the stage and its workers may
    write no file larger than a third of the text (prlimit's RLIMIT_FSIZE; the largest shard file is ~0.15 MB)."""
    project = tmp_path / "compressed"
    shutil.copytree(workdir, project)
    shutil.rmtree(project / "data" / "vectorized")
    corpus = project / "data" / "corpus" / "shakespeare.txt"
    text = corpus.read_bytes()
    corpus.write_bytes(compress(text))
    output = stage_output(project, "vectorize", ["prlimit", f"--fsize={len(text) // 3}"])
    assert "2 workers; made in" in output
    assert every_file(project / "data" / "vectorized") == every_file(workdir / "data" / "vectorized")


def test_counting_limit_drops_the_rarest_tokens_and_says_so(workdir: Path, tmp_path: Path) -> None:
    """7 shards counted on 2 workers, pruned at 3,000 distinct tokens: the most frequent words keep their exact
    counts and places; the vocabulary line names the limit."""
    project = tmp_path / "limited"
    shutil.copytree(workdir, project)
    shutil.rmtree(project / "data" / "vectorized")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["vectorize"].update(counting_limit=3000, vocab_size=None)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert "past vectorize.counting_limit (3,000), tokens seen fewer than" in stage_output(project, "vectorize")
    limited = (project / "data" / "vectorized" / "vocab.txt").read_text().splitlines()
    full = (workdir / "data" / "vectorized" / "vocab.txt").read_text().splitlines()
    assert len(limited) < 3000 < len(full)  # pruned below the limit; the unlimited run keeps 4,096 (vocab_size)
    assert limited[:100] == full[:100]  # the most frequent: in every shard, never dropped
    counts = np.load(project / "data" / "vectorized" / "counts.npy")
    exact = dict(zip(full, np.load(workdir / "data" / "vectorized" / "counts.npy").tolist(), strict=True))
    assert all(count == exact[word] for word, count in zip(limited[2:100], counts[2:100].tolist(), strict=True))


def test_stages_run_on_the_cluster_a_scheduler_address_names(workdir: Path, tmp_path: Path,
                                                           dask_scheduler: str) -> None:
    """W2V_DASK_SCHEDULER (the operator's, or what the Prefect flow sets) names the cluster: the same outputs."""
    shutil.copytree(workdir, tmp_path / "remote")
    project = tmp_path / "remote"
    for name in ("vectorize", "examples"):
        assert f"2 workers at {dask_scheduler}; made in" in stage(project, name, W2V_DASK_SCHEDULER=dask_scheduler)
    for name in ("vectorized", "examples"):
        assert every_file(project / "data" / name) == every_file(workdir / "data" / name)


def test_tutorial_recipe_makes_ten_token_lines_log_uniform_negatives_and_adam(tmp_path: Path) -> None:
    """recipes/tutorial.yaml, one documented command away, still gives the tutorial's pipeline."""
    import numpy as np

    params = yaml.safe_load((REPO_ROOT / "recipes" / "tutorial.yaml").read_text())
    params["train"]["epochs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    summaries = {name: stage(tmp_path, name) for name in ("download", "vectorize", "examples", "train")}
    assert "with Adam (Keras's model.fit)" in summaries["train"]
    lengths = np.load(tmp_path / "data" / "vectorized" / "shard-00000" / "lengths.npy")
    assert set(lengths.tolist()) == {10} and len(lengths) == 32777  # every line, 10 tokens, none held out
    assert not (tmp_path / "data" / "vectorized" / "validation").exists()
    outputs = np.load(tmp_path / "data" / "examples" / "shard-00000" / "outputs.npy")
    assert outputs.shape[1] == 5  # the true context and 4 stored negatives
    # Log-uniform over the vocabulary: low ids dominate, and padding (id 0) is drawn too, as in the tutorial.
    negatives = outputs[:, 1:].reshape(-1)
    assert (negatives == 0).mean() > 0.05 and np.median(negatives) < 100
    target, context = (np.load(tmp_path / "models" / name) for name in ("w2v_embedding.npy", "context_embedding.npy"))
    assert target.shape == context.shape == (4096, params["train"]["embedding_dim"])


def test_a_training_shard_that_is_not_there_raises_and_a_missing_held_out_shard_is_empty(tmp_path: Path) -> None:
    """A training shard gone from `data/vectorized/` is an error, never zero examples (which would read as a
    corpus too small to train on); a shard whose lines were too few to hold one out has no held-out shard."""
    from pipeline.stages.examples import shard_examples
    from w2vpipe.params import Params

    params = Params().examples
    counts = np.ones(10, np.int64)
    with pytest.raises(FileNotFoundError):
        shard_examples(0, params, "skipgram", counts, epoch=3, vectorized_dir=tmp_path)
    lines, examples = shard_examples(0, params, "skipgram", counts, validation=True, vectorized_dir=tmp_path)
    assert lines == 0 and len(examples) == 0
