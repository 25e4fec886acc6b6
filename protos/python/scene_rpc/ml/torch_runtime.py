"""Device, dtype and thread choices shared by the torch-based services.

Part of ``scene_rpc.ml``: imported only by the services that run models, after logging is
configured; the rest of ``scene_rpc`` does not import torch.
"""

from __future__ import annotations

import os

import torch


def select_device(preference: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with float16 when present, MPS with float32, else CPU with float32.

    ``preference`` is "auto", or an explicit torch device string ("cpu", "cuda:1", "mps").
    """
    if preference != "auto":
        device = torch.device(preference)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return device, dtype


def configure_threads(threads: int) -> int:
    """Set torch's intra-op threads; 0 means one per available core. Returns the count used.

    Deliberate, because torch's default can oversubscribe a container's CPU quota.
    """
    if threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads
