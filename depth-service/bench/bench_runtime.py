#!/usr/bin/env python
"""Which runtime runs the depth backbones fastest on this CPU, at equal outputs.

    python depth-service/bench/bench_runtime.py                        # DA-V2 Small, ~2 min
    python depth-service/bench/bench_runtime.py --models small,base,depthpro-vit
    python depth-service/bench/bench_runtime.py --models sam2-tiny,segformer-b0   # report only

Full-size architectures with random weights (speed does not depend on them), one input shape per
model, all figures from the same run: eager PyTorch float32 (the baseline), bfloat16 autocast,
OpenVINO float32 (through ``scene_rpc.ml.accel.CompiledModule``, the path the service
uses). For each: the median forward time, the speed-up over eager, the export + compile
time (once per shape, then cached on disk), and the agreement with eager on the same weights:
relative L2 of every output and the largest absolute difference of the depth map after the
service's normalisation (``normalize_disparity``: 0..1), both against the 1e-3 adoption bar.

Models:
- ``small``, ``base``: Depth Anything V2 (fast / balanced profiles) at its native 518 x 518 (the
  shape of every tile).
- ``depthpro-vit``: DepthPro's ViT-L/16 DINOv2 encoder at 384 x 384, one patch. A DepthPro pass
  at 1536 runs 37 of these (35 patches, the whole image, the fov head); they are nearly all of its
  time, so their ratio stands for the whole model's (a full pass takes minutes on 2 cores).
- ``sam2-tiny``, ``sam2-large``: the SAM2.1 vision encoder at 1024 (segment service, report only).
- ``segformer-b0``, ``segformer-b2``: SegFormer ADE20K at 512 (semantic model, report only).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from depth_service.normalize import normalize_disparity
from scene_dev.full_size_models import DEPTH_ANYTHING
from scene_rpc.ml.accel import CompiledModule, relative_l2, runtime_version
from scene_rpc.ml.torch_runtime import configure_threads
from scene_rpc.settings import Runtime

ADOPTION_SPEEDUP = 1.3
ADOPTION_TOLERANCE = 1e-3


class Outputs(torch.nn.Module):
    """Any transformers model as tensors in -> tuple of tensors out."""

    def __init__(self, model: torch.nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(pixel_values=pixel_values)
        return tuple(output[key] for key in self.keys)


def depth_anything(variant: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    spec = DEPTH_ANYTHING[variant.capitalize()]
    config = DepthAnythingConfig(
        backbone_config={"model_type": "dinov2", "hidden_size": spec["hidden"],
                         "num_hidden_layers": spec["layers"],
                         "num_attention_heads": spec["heads"], "image_size": 518,
                         "patch_size": 14, "out_indices": spec["out"],
                         "reshape_hidden_states": False},
        reassemble_hidden_size=spec["hidden"], neck_hidden_sizes=spec["neck"],
        fusion_hidden_size=spec["fusion"])
    return Outputs(DepthAnythingForDepthEstimation(config), ("predicted_depth",)), (1, 3, 518, 518)


def depthpro_vit() -> tuple[torch.nn.Module, tuple[int, ...]]:
    from transformers import Dinov2Config, Dinov2Model

    # DepthPro-hf's patch / image / fov encoders: DINOv2 ViT-L, patch 16, 384 px.
    config = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                          image_size=384, patch_size=16, layerscale_value=1.0)
    return Outputs(Dinov2Model(config), ("last_hidden_state",)), (1, 3, 384, 384)


def sam2_encoder(size: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig
    from transformers.models.sam2.modeling_sam2 import Sam2VisionModel

    # The config classes' defaults are sam2.1-hiera-tiny; large as in facebook/sam2.1-hiera-large.
    backbone = Sam2HieraDetConfig() if size == "tiny" else Sam2HieraDetConfig(
        hidden_size=144, embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 6, 36, 4],
        global_attention_blocks=[23, 33, 43], window_size_per_stage=[8, 4, 16, 8],
        num_attention_heads=2)
    config = Sam2VisionConfig(backbone_config=backbone,
                              backbone_channel_list=backbone.embed_dim_per_stage[::-1])
    return Outputs(Sam2VisionModel(config), ("last_hidden_state",)), (1, 3, 1024, 1024)


def segformer(size: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    shapes = {"b0": ([2, 2, 2, 2], [32, 64, 160, 256], 256),
              "b2": ([3, 4, 6, 3], [64, 128, 320, 512], 768)}
    depths, hidden, decoder = shapes[size]
    config = SegformerConfig(num_labels=150, depths=depths, hidden_sizes=hidden,
                             decoder_hidden_size=decoder)
    return Outputs(SegformerForSemanticSegmentation(config), ("logits",)), (1, 3, 512, 512)


BUILDERS = {
    "small": lambda: depth_anything("small"),
    "base": lambda: depth_anything("base"),
    "large": lambda: depth_anything("large"),
    "depthpro-vit": depthpro_vit,
    "sam2-tiny": lambda: sam2_encoder("tiny"),
    "sam2-large": lambda: sam2_encoder("large"),
    "segformer-b0": lambda: segformer("b0"),
    "segformer-b2": lambda: segformer("b2"),
}
DEPTH_MODELS = {"small", "base", "large"}


def timed(function, repeats: int) -> tuple[float, tuple[torch.Tensor, ...]]:
    outputs = function()  # warm-up (allocations, kernel choice)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        outputs = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), outputs


def agreement(name: str, outputs, reference) -> tuple[float, float | None]:
    """(largest relative L2 over the outputs, max |difference| of the normalised depth map)."""
    rel = max(relative_l2(o.float().numpy(), r.float().numpy())
              for o, r in zip(outputs, reference, strict=True))
    if name not in DEPTH_MODELS:
        return rel, None
    ours = normalize_disparity(outputs[0][0].float().numpy())
    theirs = normalize_disparity(reference[0][0].float().numpy())
    return rel, float(np.abs(ours - theirs).max())


def bench(name: str, runtimes: list[str], repeats: int, threads: int) -> list[dict]:
    torch.manual_seed(0)
    module, shape = BUILDERS[name]()
    module = module.eval()
    pixels = torch.randn(*shape)
    rows = []
    with torch.inference_mode():
        eager_s, reference = timed(lambda: module(pixels), repeats)
    rows.append({"model": name, "runtime": "torch (eager, float32)", "s": eager_s})
    print(f"{name} {tuple(shape)}: eager float32 {eager_s:.3f} s", flush=True)
    for runtime in runtimes:
        prepare_s = None
        if runtime == "bf16":
            label = "torch bf16 autocast"

            def run():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return module(pixels)
        else:
            chosen = Runtime(runtime)
            if runtime_version(chosen) is None:
                print(f"  {runtime}: not installed, skipped")
                continue
            cache = tempfile.mkdtemp(prefix=f"bench-{runtime}-")
            compiled = CompiledModule(module, chosen, cache_dir=cache, key=name, threads=threads)
            label = compiled.label
            started = time.perf_counter()
            try:
                compiled.prepare(pixels)
            except Exception as error:  # report a runtime that cannot take the model, go on
                print(f"  {label}: export failed: {type(error).__name__}: {str(error)[:200]}")
                continue
            prepare_s = time.perf_counter() - started

            def run(compiled=compiled):
                return compiled(pixels)
        seconds, outputs = timed(run, repeats)
        rel, max_abs = agreement(name, outputs, reference)
        within = rel <= ADOPTION_TOLERANCE and (max_abs is None or max_abs <= ADOPTION_TOLERANCE)
        speedup = eager_s / seconds
        verdict = "ADOPT" if within and speedup >= ADOPTION_SPEEDUP else "no"
        rows.append({"model": name, "runtime": label, "s": seconds, "speedup": speedup,
                     "rel_l2": rel, "max_abs_norm": max_abs, "prepare_s": prepare_s,
                     "verdict": verdict})
        extra = f", export+compile {prepare_s:.1f} s" if prepare_s is not None else ""
        norm = f", max|d| normalised {max_abs:.1e}" if max_abs is not None else ""
        print(f"  {label}: {seconds:.3f} s = {speedup:.2f}x eager, rel L2 {rel:.1e}{norm}"
              f"{extra} -> {verdict}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small", help=",".join(BUILDERS))
    parser.add_argument("--runtimes", default="bf16,openvino")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0 = one per core")
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    print(f"cpu, {threads} threads, torch {torch.__version__}; adopt at >= {ADOPTION_SPEEDUP}x "
          f"with outputs within {ADOPTION_TOLERANCE:g}", flush=True)
    rows = []
    for name in args.models.split(","):
        rows += bench(name, args.runtimes.split(","), args.repeats, threads)
    print("\n| model | runtime | s | vs eager | rel L2 | max abs (normalised depth) | "
          "export+compile s | verdict |\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        def fmt(key, spec, row=row):
            return format(row[key], spec) if row.get(key) is not None else "-"

        print(f"| {row['model']} | {row['runtime']} | {row['s']:.3f} | {fmt('speedup', '.2f')} | "
              f"{fmt('rel_l2', '.1e')} | {fmt('max_abs_norm', '.1e')} | {fmt('prepare_s', '.1f')} "
              f"| {row.get('verdict', 'baseline')} |")


if __name__ == "__main__":
    main()
