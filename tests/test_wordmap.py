"""The map of the embedding: PCA and t-SNE coordinates, a PNG, and a page that needs no internet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from w2vpipe.wordmap import map_coordinates, write_map_html, write_map_png


def clustered_vectors() -> tuple[list[str], np.ndarray]:
    """Three groups of 20 words, each around its own direction."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    vectors = np.concatenate([centre + rng.normal(size=(20, 16)) for centre in centres])
    words = [f"{group}{index}" for group in ("a", "b", "c") for index in range(20)]
    return words, vectors.astype(np.float32)


def test_each_projection_keeps_the_groups_apart_and_is_reproducible() -> None:
    words, vectors = clustered_vectors()
    coordinates = map_coordinates(vectors, seed=42)
    assert set(coordinates) == {"PCA", "t-SNE"}
    for points in coordinates.values():
        assert points.shape == (60, 2)
        groups = [points[start:start + 20] for start in (0, 20, 40)]
        within = max(np.linalg.norm(group - group.mean(axis=0), axis=1).mean() for group in groups)
        between = min(np.linalg.norm(groups[i].mean(axis=0) - groups[j].mean(axis=0))
                      for i in range(3) for j in range(i + 1, 3))
        assert between > 2 * within  # the map shows who sits with whom
    again = map_coordinates(vectors, seed=42)
    assert all(np.array_equal(coordinates[name], again[name]) for name in coordinates)


def test_the_png_and_the_self_contained_page(tmp_path: Path) -> None:
    words, vectors = clustered_vectors()
    coordinates = map_coordinates(vectors, seed=42)
    for run in ("first", "second"):
        write_map_png(tmp_path / f"{run}.png", words, coordinates, "test map")
        write_map_html(tmp_path / f"{run}.html", words, coordinates, "test map")
    png = (tmp_path / "first.png").read_bytes()
    assert png.startswith(b"\x89PNG") and png == (tmp_path / "second.png").read_bytes()
    page = (tmp_path / "first.html").read_text(encoding="utf-8")
    assert page == (tmp_path / "second.html").read_text(encoding="utf-8")  # same map, same bytes
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inside: it opens with no internet
    assert "Plotly.newPlot" in page and "%{text}" in page  # the words are shown on hover
    data = json.loads(re.search(r'"word-map",\s*(\[.*?\]),\s*\{', page, re.S).group(1))
    assert [trace["text"] for trace in data] == [words, words]
