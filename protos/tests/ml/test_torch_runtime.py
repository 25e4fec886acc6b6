"""scene_rpc.ml.torch_runtime: the compute dtype from the device and the CPU's flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scene_rpc.ml.torch_runtime import compute_dtype, cpu_runs_bfloat16
from scene_rpc.settings import Precision

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 {extra}
bogomips\t: 4890.80
"""


@pytest.mark.parametrize(("extra", "native"), [
    ("avx512f avx512_bf16 avx512_vnni", True),
    ("avx512f amx_tile amx_bf16", True),
    ("avx512f avx512_vnni", False),
    ("", False),
])
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path: Path, extra: str, native: bool):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    assert cpu_runs_bfloat16(cpuinfo) is native


def test_no_cpuinfo_means_no_native_bfloat16(tmp_path: Path):
    assert cpu_runs_bfloat16(tmp_path / "absent") is False


def test_auto_is_float16_on_cuda_bfloat16_on_a_cpu_that_has_it_else_float32():
    assert compute_dtype(torch.device("cuda")) == torch.float16
    assert compute_dtype(torch.device("mps")) == torch.float32
    native = torch.bfloat16 if cpu_runs_bfloat16() else torch.float32
    assert compute_dtype(torch.device("cpu"), "auto") == native
    # A service whose outputs leave the bounds in bfloat16 keeps float32 under auto.
    assert compute_dtype(torch.device("cpu"), "auto", bfloat16_on_cpu=False) == torch.float32
    assert compute_dtype(torch.device("cpu"), "bfloat16", bfloat16_on_cpu=False) == torch.bfloat16


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_an_explicit_precision_wins_everywhere(device: str):
    assert compute_dtype(torch.device(device), Precision.FLOAT32) == torch.float32
    assert compute_dtype(torch.device(device), "bfloat16") == torch.bfloat16
