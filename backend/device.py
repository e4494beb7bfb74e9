"""Device choice: cuda > mps > cpu, overridable by argument or the SAE_EXPLORER_DEVICE variable."""

from __future__ import annotations

import os

import torch

from backend.errors import UserError

DEVICE_ENV = "SAE_EXPLORER_DEVICE"


class DeviceError(UserError):
    pass


def pick_device(requested: str | None = None) -> str:
    choice = (requested or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"Device '{choice}' was requested but no CUDA GPU is available; use 'cpu' or 'auto'.")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("Device 'mps' was requested but Apple MPS is not available; use 'cpu' or 'auto'.")
    if choice != "cpu" and not choice.startswith(("cuda", "mps")):
        raise DeviceError(f"Unknown device '{choice}'; use auto, cpu, cuda, cuda:N or mps.")
    return choice


def pick_dtype(device: str, requested: str | None = None) -> torch.dtype:
    """float32 on CPU (half precision is slow and lossy there); the request elsewhere."""
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if requested and requested not in names:
        raise DeviceError(f"Unknown dtype '{requested}'; use one of {', '.join(names)}.")
    if device == "cpu":
        return torch.float32
    return names[requested] if requested else torch.float32
