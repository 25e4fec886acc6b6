"""Device, dtype and thread choices shared by the torch-based services.

Part of ``scene_rpc.ml``: imported only by the services that run models, after logging is
configured; the rest of ``scene_rpc`` does not import torch.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from scene_rpc.settings import Precision

# CPU flags of native bfloat16 arithmetic: AVX512-BF16 (dot products) and AMX (tile multiply).
BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


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


@functools.cache
def cpu_runs_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), from its flags.

    Without them bfloat16 is emulated and slower than float32, so ``auto`` keeps float32 there.
    Unknown (no /proc/cpuinfo: macOS, Windows) counts as no.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return bool(BFLOAT16_CPU_FLAGS & set(value.split()))
    return False


def compute_dtype(device: torch.device, requested: Precision | str = Precision.AUTO, *,
                  bfloat16_on_cpu: bool = True) -> torch.dtype:
    """The dtype a model computes in on ``device``: ``requested``, with ``auto`` resolved.

    ``auto``: float16 on CUDA; bfloat16 on a CPU that runs it natively when the service's
    outputs stay within the bounds of ``scripts/bench_precision.py`` in bfloat16
    (``bfloat16_on_cpu``: measured so for segmentation, not for depth); float32 elsewhere (MPS,
    other CPUs).
    """
    requested = Precision(requested)
    if requested is Precision.FLOAT32:
        return torch.float32
    if requested is Precision.BFLOAT16:
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and bfloat16_on_cpu and cpu_runs_bfloat16():
        return torch.bfloat16
    return torch.float32
