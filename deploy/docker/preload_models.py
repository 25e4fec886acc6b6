"""Download a model service's weights into the image's Hugging Face cache at build time.

    python preload_models.py depth 1                          # the service's configured models
    python preload_models.py segment facebook/sam2.1-hiera-large,facebook/maskformer-swin-large-ade

Run by the depth and segment Dockerfiles when the ``PRELOAD_MODELS`` build argument is not 0.
"1" (or "true", "yes", "default") means the models the service's own settings name, read from
the image's environment exactly as the service will read them at run time; anything else is a
comma-separated list of hub ids. Local directories are skipped: they are not downloadable.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Only what transformers' from_pretrained reads; other frameworks' weights are skipped.
SKIPPED = ["*.onnx", "*.msgpack", "*.h5", "*.tflite", "*.ot", "*.mlmodel", "*.mlpackage/*",
           "coreml/*", "onnx/*", "flax_model*", "tf_model*", "*.gguf"]


def configured_models(service: str) -> list[str]:
    if service == "depth":
        from depth_service.settings import Settings as DepthSettings

        depth = DepthSettings()
        return [depth.model, depth.fallback_model]
    if service == "segment":
        from segment_service.settings import Settings as SegmentSettings

        segment = SegmentSettings()
        return [segment.sam_model, segment.semantic_model]
    raise SystemExit(f"unknown service {service!r} (depth or segment)")


def download(repo_id: str) -> None:
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi().list_repo_files(repo_id)
    skipped = list(SKIPPED)
    # The same weights often ship twice; transformers prefers safetensors, so skip the pickles.
    if any(f.endswith(".safetensors") for f in files):
        skipped += ["*.bin", "*.pt", "*.pth"]
    path = snapshot_download(repo_id, ignore_patterns=skipped)
    size_mb = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20
    print(f"preloaded {repo_id}: {size_mb:.0f} MB in {path}", flush=True)


def main(service: str, request: str) -> None:
    if request.strip().lower() in {"1", "true", "yes", "default"}:
        models = configured_models(service)
    else:
        models = [m.strip() for m in request.split(",")]
    for model in dict.fromkeys(m for m in models if m):
        if Path(model).is_dir():
            print(f"skipping {model}: a local directory", flush=True)
            continue
        download(model)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
