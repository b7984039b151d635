#!/usr/bin/env bash
# Prepares what bench/gpu_train.py needs on the GPU machine, in two folders git ignores:
# .gpudata/ (example shards of the default recipe, params.yaml, made here by the pipeline's own
# stages on CORPUS, default Shakespeare) and .whl/ (the wheels the GPU machine lacks to run the
# library's training with JAX: keras, and pydantic and ruamel.yaml for its params, with those of their
# needs that its image does not hold (see the device tool's KINDS.md: absl-py, numpy, rich, h5py,
# ml-dtypes, packaging and typing-extensions are there already).
# For CPython 3.12 on manylinux x86_64, without dependencies, one version of each (two versions
# of one package stop the whole install there). Run from the repository's root; .whl/ is kept
# out of git through .git/info/exclude, and travels to the GPU machine as `carry: [".whl", ...]`.
#
#     bash bench/gpu_prepare.sh [CORPUS]
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
wheels=(keras==3.15.1 namex==0.1.0 optree==0.20.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
        typing-inspection==0.4.5 ruamel_yaml==0.19.1)

exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
for ignored in /.whl/ /.gpudata/; do
    grep -qxF "$ignored" "$exclude" 2>/dev/null || echo "$ignored" >>"$exclude"
done

corpus="$(realpath "${1:-../shared/corpora/shakespeare.txt}")"
python="${PYTHON:-.venv/bin/python}"
rm -rf .gpudata && mkdir -p .gpudata/vectorized
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$python" - "$scratch" "$corpus" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
import benchmark

# Stored pairs: the examples stage writes them only when every epoch trains on the same draw.
benchmark.project(Path(sys.argv[1]), Path(sys.argv[2]), {"examples.redraw_each_epoch": False})
PY
for stage in vectorize examples; do
    (cd "$scratch" && PYTHONPATH="$scratch:$OLDPWD/src" DO_NOT_TRACK=true "$OLDPWD/$python" -m pipeline "$stage" | tail -1)
done
cp -r "$scratch/data/examples" .gpudata/
cp "$scratch/data/vectorized/counts.npy" "$scratch/data/vectorized/stats.json" .gpudata/vectorized/
du -sh .gpudata

mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${wheels[@]}"

# Only the versions named above: an older download of any of them would make two.
for wheel in .whl/*.whl; do
    name="$(basename "$wheel" | cut -d- -f1-2 | tr _ -)"
    keep=0
    for pin in "${wheels[@]}"; do
        [ "${name,,}" = "$(echo "${pin%%==*}-${pin##*==}" | tr _ - | tr '[:upper:]' '[:lower:]')" ] && keep=1
    done
    [ "$keep" = 1 ] || { echo "removing $wheel (not pinned here)"; rm -f "$wheel"; }
done
ls -l .whl
du -ch .whl/*.whl | tail -1
