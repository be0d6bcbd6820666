"""Choosing where the networks run: CUDA, then Apple MPS, then the CPU.

Mixed precision is used only on CUDA (bfloat16 autocast: no loss scaling
needed, and tensor cores make it several times faster). On CPU and MPS the
networks run in float32, where bf16 is slow or poorly supported.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import NanowireSSLError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(preference: str | torch.device = "auto") -> torch.device:
    """Return the device to run on: ``"auto"`` (CUDA, then MPS, then CPU) or an explicit one.

    Explicit choices are ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` and ``"mps"``.
    Asking for a device this machine lacks raises :class:`NanowireSSLError`
    rather than silently falling back, so a user who picked the GPU knows it
    is not being used.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    choice = str(preference).strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise NanowireSSLError(
            f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NanowireSSLError(
                "CUDA was requested but is not available on this machine "
                "(no NVIDIA GPU or a CPU-only PyTorch); use device 'auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise NanowireSSLError(
                f"{choice} was requested but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise NanowireSSLError(
                "MPS (Apple GPU) was requested but is not available on this machine; use device 'auto' or 'cpu'"
            )
        return device
    raise NanowireSSLError(f"unsupported device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'")


def autocast_context(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA; a null context (plain float32) on CPU and MPS."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
