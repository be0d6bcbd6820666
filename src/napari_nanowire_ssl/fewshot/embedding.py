"""A 2D map of image features (t-SNE or UMAP), to see which images the encoder groups together."""

from __future__ import annotations

import numpy as np

from ..errors import NanowireSSLError

METHODS = ("tsne", "umap")


def embed_2d(features: np.ndarray, method: str = "tsne", *, seed: int = 0) -> np.ndarray:
    """``(N, 2)`` coordinates of standardised ``(N, D)`` features.

    t-SNE (scikit-learn, PCA initialisation, perplexity min(30, (N - 1) / 3)
    so small sets work) or UMAP (only where the ``umap-learn`` package is
    installed). The same ``seed`` gives the same map.
    """
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    if method not in METHODS:
        raise NanowireSSLError(f"unknown embedding method {method!r}; choose one of {', '.join(METHODS)}")
    if features.ndim != 2 or len(features) < 3:
        raise NanowireSSLError(f"a feature map needs an (N, D) array of at least 3 images, got shape {features.shape}")
    x = StandardScaler().fit_transform(features)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise NanowireSSLError("UMAP is not installed (pip install umap-learn); use method 'tsne'") from None
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(x) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
