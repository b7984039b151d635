"""A map of the embedding: its most frequent words in 2-D, by PCA (the widest directions) and t-SNE
(who sits next to whom), as a picture (matplotlib) and an interactive page (plotly, self-contained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from w2vpipe.files import atomic_file

MAP_PNG_FILE = "map.png"
MAP_HTML_FILE = "map.html"
PROJECTIONS = ("PCA", "t-SNE")


def map_coordinates(vectors: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Each projection's (words, 2) coordinates of the unit-length vectors (cosine is what neighbours
    mean here). Barnes-Hut t-SNE, scikit-learn's default: 1.3 s for 500 words where the exact method took
    5 s. Neither gives the same last bits on every CPU (BLAS), which is why the map stays out of DVC's hashes."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    perplexity = min(30.0, (len(unit) - 1) / 3)  # t-SNE needs more points than 3x its perplexity
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return {"PCA": PCA(n_components=2, random_state=seed).fit_transform(unit),
            "t-SNE": tsne.fit_transform(unit)}


def write_map_png(path: Path, words: list[str], coordinates: dict[str, np.ndarray], title: str) -> None:
    """Both projections side by side, every word labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Fixed margins, not a layout engine: constrained layout draws the figure once more to measure it, and
    # drawing 1,000 labels is most of the picture's time.
    figure, axes = plt.subplots(1, len(PROJECTIONS), figsize=(24, 12))
    figure.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=0.93, wspace=0.01)
    for axis, projection in zip(axes, PROJECTIONS, strict=True):
        points = coordinates[projection]
        axis.scatter(points[:, 0], points[:, 1], s=6, color="tab:blue", alpha=0.5)
        for word, (x, y) in zip(words, points, strict=True):
            axis.annotate(word, (x, y), fontsize=6, alpha=0.8, xytext=(2, 2), textcoords="offset points")
        axis.set_title(projection)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png", metadata={"Software": None})  # no version stamp: same bytes
    plt.close(figure)


def write_map_html(path: Path, words: list[str], coordinates: dict[str, np.ndarray], title: str) -> None:
    """Both projections as zoomable scatter plots, each word named on hover; plotly.js inside the page,
    so it opens with no internet."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(PROJECTIONS), subplot_titles=PROJECTIONS)
    for column, projection in enumerate(PROJECTIONS, start=1):
        points = coordinates[projection]
        figure.add_trace(go.Scatter(x=points[:, 0], y=points[:, 1], mode="markers", text=words, name=projection,
                                    hovertemplate="%{text}<extra></extra>", marker={"size": 5, "opacity": 0.6}),
                         row=1, col=column)
    figure.update_layout(title=title, showlegend=False, height=800)
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    with atomic_file(path) as tmp:
        # A fixed element id (plotly draws a random one) keeps the page the same bytes for the same map.
        tmp.write_text(figure.to_html(include_plotlyjs=True, full_html=True, div_id="word-map"), encoding="utf-8")
