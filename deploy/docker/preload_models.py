"""Download a model service's weights into the image's Hugging Face cache at build time.

    python preload_models.py depth 1 --profile fast           # the fast profile's depth models
    python preload_models.py segment facebook/sam2.1-hiera-large,facebook/maskformer-swin-large-ade

Run by the depth and segment Dockerfiles when the ``PRELOAD_MODELS`` build argument is not 0.
"1" (or "true", "yes", "default") means the models of the build's ``PROFILE`` argument, from the
profile table (``scene_rpc.profiles``), fallback included; anything else is a comma-separated
list of hub ids. Local directories are skipped: they are not downloadable. Nothing here becomes
the container's configuration: at run time the service reads its own PROFILE and *_MODEL
settings, and loads whatever they name (from this cache when it is there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scene_rpc.profiles import DEFAULT_PROFILE, get_profile

# Only what transformers' from_pretrained reads; other frameworks' weights are skipped.
SKIPPED = ["*.onnx", "*.msgpack", "*.h5", "*.tflite", "*.ot", "*.mlmodel", "*.mlpackage/*",
           "coreml/*", "onnx/*", "flax_model*", "tf_model*", "*.gguf"]


def profile_models(service: str, profile_name: str) -> list[str]:
    """The hub ids the service loads under the profile (the depth fallback included)."""
    profile = get_profile(profile_name)
    if service == "depth":
        return [profile.depth_model, profile.depth_fallback_model]
    if service == "segment":
        return [profile.sam_model, profile.semantic_model]
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


def requested_models(service: str, request: str, profile_name: str) -> list[str]:
    if request.strip().lower() in {"1", "true", "yes", "default"}:
        models = profile_models(service, profile_name)
    else:
        models = [m.strip() for m in request.split(",")]
    return list(dict.fromkeys(m for m in models if m))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=["depth", "segment"])
    parser.add_argument("request",
                        help='"1" for the profile\'s models, or hub ids, comma-separated')
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help="whose models '1' means (default: %(default)s)")
    args = parser.parse_args(argv)
    for model in requested_models(args.service, args.request, args.profile or DEFAULT_PROFILE):
        if Path(model).is_dir():
            print(f"skipping {model}: a local directory", flush=True)
            continue
        download(model)


if __name__ == "__main__":
    main()
