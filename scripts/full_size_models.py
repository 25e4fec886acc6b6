#!/usr/bin/env python
"""Full-size random-weight models of every profile's architectures, for benchmarks:

    python scripts/full_size_models.py .cache/full-size facebook/sam2.1-hiera-tiny ...

The builders live in ``scene_dev.full_size_models``.
"""

from scene_dev.full_size_models import main

if __name__ == "__main__":
    main()
