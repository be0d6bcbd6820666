"""A picture of what an encoder sees: its feature maps projected to RGB.

The first three principal components of one stage's features, upsampled to the
image size. Wires that an encoder separates from the film show up in a colour
of their own; a useless encoder gives mush. Used by the Encoder widget and the
headless demo.
"""

from __future__ import annotations

import numpy as np
import torch

from ..io.normalize import check_network_input, normalize


def feature_pca_rgb(encoder, image: np.ndarray, *, stage: int = 2, device: str | torch.device = "cpu") -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: PCA of stage ``stage`` (stride 2**(stage+1)) features."""
    check_network_input(image)
    x = torch.from_numpy(normalize(image))[None, None].to(device)
    encoder = encoder.to(device).eval()
    with torch.inference_mode():
        feats = encoder.forward_features(x)[stage][0].float()  # (C, h, w)
        c, h, w = feats.shape
        flat = feats.reshape(c, -1).T
        flat = flat - flat.mean(0, keepdim=True)
        # Exact PCA (deterministic, unlike randomised low-rank PCA): the top
        # three eigenvectors of the C x C covariance, signs fixed so that each
        # one's largest loading is positive.
        _, vectors = torch.linalg.eigh(flat.T @ flat)
        v = vectors[:, -3:].flip(1)
        v = v * torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
        pcs = (flat @ v).T.reshape(3, 1, h, w)
        pcs = torch.nn.functional.interpolate(pcs, size=image.shape[-2:], mode="bilinear", align_corners=False)
    rgb = pcs[:, 0].permute(1, 2, 0).cpu().numpy()
    lo, hi = np.percentile(rgb, [1, 99], axis=(0, 1))
    return np.clip((rgb - lo) / np.maximum(hi - lo, 1e-8), 0, 1).astype(np.float32)
