#!/usr/bin/env python
"""bfloat16 against float32 eager on what the user receives (depth, categories, SAM2 masks), with
a profile's full-size random-weight models on the shared photos, and the speed of each in the same
run (the bench itself is ``scene_dev.bench_precision``):

    python scripts/bench_precision.py                  # fast profile, every variant

``--help`` lists every option.
"""

import sys

from scene_dev.bench_precision import main

if __name__ == "__main__":
    sys.exit(main())
