#!/usr/bin/env python
"""Writes tiny random-weight models of the real architectures, for tests and offline smoke runs.

Each model is saved with ``save_pretrained`` (weights + config + processor config) so that the
services load it through the very same ``from_pretrained`` path as the production weights. They
are a few hundred KB each and never a production default.

    python scripts/make_tiny_models.py .cache/tiny-models

The builders live in ``scripts/tiny_models/`` (one module per service); each returns a mapping of
sub-directory name -> a function that writes the model into that directory.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import depth, segment


def main(out_dir: Path) -> None:
    import torch

    torch.manual_seed(0)
    builders = {**depth.BUILDERS, **segment.BUILDERS}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".complete").unlink(missing_ok=True)
    for name, build in builders.items():
        # Write into a temporary sibling and rename, so a half-written model never looks complete.
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{name}-") as tmp:
            build(Path(tmp))
            target = out_dir / name
            shutil.rmtree(target, ignore_errors=True)
            Path(tmp).rename(target)
            Path(tmp).mkdir()  # TemporaryDirectory cleans up the (now empty) path it made
        size_kb = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 1024
        print(f"tiny model {name}: {size_kb:.0f} KB")
    (out_dir / ".complete").write_text("\n".join(builders) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/tiny-models"))
