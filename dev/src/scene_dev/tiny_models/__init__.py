"""Tiny random-weight models of the real architectures, for tests and offline smoke runs.

Each model is saved with ``save_pretrained`` (weights + config + processor config) so that the
services load it through the very same ``from_pretrained`` path as the production weights. They
are a few hundred KB each and never a production default.

    python -m scene_dev.tiny_models .cache/tiny-models     # what `make tiny-models` runs

One module per service (:mod:`.depth`, :mod:`.segment`); each has ``BUILDERS``, a mapping of
sub-directory name -> a function that writes the model into that directory.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from scene_dev.paths import TINY_MODELS_DIR
from scene_dev.tiny_models import depth, segment

BUILDERS: dict[str, Callable[[Path], None]] = {**depth.BUILDERS, **segment.BUILDERS}


def build(out_dir: Path) -> None:
    """Write every tiny model into ``out_dir/<name>``; ``out_dir/.complete`` marks the end."""
    import torch

    torch.manual_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".complete").unlink(missing_ok=True)
    for name, build_one in BUILDERS.items():
        # Write into a temporary sibling and rename, so a half-written model never looks complete.
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{name}-") as tmp:
            build_one(Path(tmp))
            target = out_dir / name
            shutil.rmtree(target, ignore_errors=True)
            Path(tmp).rename(target)
            Path(tmp).mkdir()  # TemporaryDirectory cleans up the (now empty) path it made
        size_kb = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 1024
        print(f"tiny model {name}: {size_kb:.0f} KB")
    (out_dir / ".complete").write_text("\n".join(BUILDERS) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=TINY_MODELS_DIR,
                        help=f"where to write them (default: {TINY_MODELS_DIR})")
    build(parser.parse_args(argv).out_dir)
