"""scene_rpc.ml.accel on a small convolutional module: export, disk cache, agreement with eager."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scene_rpc.ml.accel import (
    CompiledModule,
    fingerprint,
    relative_l2,
    resolve_runtime,
    return_freed_memory,
    runtime_version,
)
from scene_rpc.settings import Runtime

CPU = torch.device("cpu")
COMPILED = [pytest.param(Runtime.OPENVINO, marks=pytest.mark.skipif(
    runtime_version(Runtime.OPENVINO) is None, reason="openvino is not installed"))]


class TwoHeads(torch.nn.Module):
    """Shape-dependent like the vision models: an interpolation to the input's size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = torch.nn.Conv2d(8, 1, 1)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(pixels))
        depth = torch.nn.functional.interpolate(self.head(features), size=pixels.shape[-2:],
                                                mode="bilinear", align_corners=False)
        return depth[:, 0], features.mean(dim=(1, 2, 3))


@pytest.mark.parametrize("runtime", COMPILED)
def test_exports_once_per_shape_reads_back_from_disk_and_agrees_with_eager(runtime, tmp_path):
    module = TwoHeads().eval()
    compiled = CompiledModule(module, runtime, cache_dir=tmp_path, key="two-heads", threads=1)
    square, wide = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 48)
    # New shapes run eagerly while their graphs export in the background; then compiled.
    for pixels in (square, wide, square, None, square, wide):
        if pixels is None:
            compiled.wait_for_exports()
            assert set(compiled._compiled) == {((1, 3, 32, 32),), ((1, 3, 32, 48),)}
            continue
        outputs = compiled(pixels)
        with torch.inference_mode():
            expected = module(pixels)
        assert [o.shape for o in outputs] == [e.shape for e in expected]
        for output, reference in zip(outputs, expected, strict=True):
            assert relative_l2(output, reference) < 1e-5
    assert set(compiled.sources.values()) == {"exported"} and len(compiled.sources) == 2

    # A new process (a new object) finds both graphs on disk.
    again = CompiledModule(module, runtime, cache_dir=tmp_path, key="two-heads", threads=1)
    again(wide)
    assert list(again.sources.values()) == ["cached"]
    assert compiled.label.startswith(runtime.value)


@pytest.mark.parametrize("runtime", COMPILED)
def test_at_most_max_shapes_graphs_stay_compiled(runtime, tmp_path):
    compiled = CompiledModule(TwoHeads(), runtime, cache_dir=tmp_path, key="k", threads=1,
                              max_shapes=1)
    compiled(torch.rand(1, 3, 16, 16))
    compiled.wait_for_exports()
    compiled(torch.rand(1, 3, 16, 24))
    compiled.wait_for_exports()
    assert len(compiled._compiled) == 1


def test_only_openvino_compiles(tmp_path):
    with pytest.raises(ValueError, match="needs openvino"):
        CompiledModule(TwoHeads(), Runtime.TORCH, cache_dir=tmp_path, key="k", threads=1)


def test_auto_is_openvino_on_cpu_when_installed_and_torch_elsewhere():
    expected = Runtime.OPENVINO if runtime_version(Runtime.OPENVINO) else Runtime.TORCH
    assert resolve_runtime("auto", CPU) is expected
    assert resolve_runtime(Runtime.AUTO, torch.device("cuda")) is Runtime.TORCH
    assert resolve_runtime("torch", CPU) is Runtime.TORCH


def test_compiled_runtimes_are_refused_off_the_cpu_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="CPU only"):
        resolve_runtime("openvino", torch.device("cuda"))
    with pytest.raises(ValueError):
        resolve_runtime("tensorrt", CPU)
    # ONNX Runtime was taken out.
    with pytest.raises(ValueError):
        resolve_runtime("onnx", CPU)


def test_fingerprints_are_stable_and_tell_inputs_apart():
    assert fingerprint("m", {"a": 1, "b": 2}) == fingerprint("m", {"b": 2, "a": 1})
    assert fingerprint("m", 1) != fingerprint("m", 2)


def test_openvino_conversion_sends_no_telemetry():
    pytest.importorskip("openvino")
    # In a fresh interpreter: the converter decides between telemetry and its stub on import.
    code = (
        "from scene_rpc.ml.accel import import_openvino\n"
        "import_openvino()\n"
        "from openvino.tools.ovc import convert_impl\n"
        "print(convert_impl.tm.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "openvino.tools.ovc.telemetry_stub"


@pytest.mark.parametrize("runtime", COMPILED)
def test_a_bfloat16_graph_computes_in_bfloat16_from_the_same_float32_export(runtime, tmp_path):
    module = TwoHeads().eval()
    pixels = torch.rand(1, 3, 32, 32)
    single = CompiledModule(module, runtime, cache_dir=tmp_path, key="k", threads=1)
    half = CompiledModule(module, runtime, cache_dir=tmp_path, key="k", threads=1,
                          dtype=torch.bfloat16)
    single.prepare(pixels)
    half.prepare(pixels)
    # One export on disk serves both precisions: the precision is a compile option.
    assert list(half.sources.values()) == ["cached"]
    assert (single.precision_hint, half.precision_hint) == ("f32", "bf16")
    with torch.inference_mode():
        expected = module(pixels)
    for output, reference in zip(half(pixels), expected, strict=True):
        assert output.dtype == torch.float32
        # bfloat16 keeps 8 bits of mantissa: near float32, never equal to 1e-5 in general.
        assert relative_l2(output, reference) < 3e-2


@pytest.mark.parametrize("runtime", COMPILED)
def test_shapes_exported_ahead_run_compiled_from_their_first_call(runtime, tmp_path):
    module = TwoHeads().eval()
    compiled = CompiledModule(module, runtime, cache_dir=tmp_path, key="two-heads", threads=1)
    square, wide = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 48)
    # Exported without compiling; a second call finds them on the disk and exports nothing.
    assert compiled.export_ahead([[square], [wide], [square]]) == [
        ((1, 3, 32, 32),), ((1, 3, 32, 48),)]
    assert compiled.export_ahead([[wide]]) == [] and not compiled._compiled
    # The first call of either shape runs its graph (from the disk), not the eager module.
    outputs = compiled(wide)
    assert compiled.sources == {((1, 3, 32, 48),): "cached"} and not compiled._pending
    with torch.inference_mode():
        expected = module(wide)
    for output, reference in zip(outputs, expected, strict=True):
        assert relative_l2(output, reference) < 1e-5


def test_freed_memory_goes_back_to_the_os_without_error():
    # glibc's malloc_trim here; a no-op where the C library has none.
    return_freed_memory()
