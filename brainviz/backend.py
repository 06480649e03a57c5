"""Compute-device helpers shared by the subpackages that can use torch.

Nothing is imported at module import time: torch is only imported when asked.
"""

from __future__ import annotations


def default_device() -> str:
    """``"cuda"`` when torch is installed and sees a GPU, else ``"cpu"``."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
