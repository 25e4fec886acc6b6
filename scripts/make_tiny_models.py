#!/usr/bin/env python
"""Writes tiny random-weight models of the real architectures, for tests and offline smoke runs:

    python scripts/make_tiny_models.py .cache/tiny-models     # `make tiny-models`

The builders live in ``scene_dev.tiny_models`` (dev/src/scene_dev/tiny_models/, one module per
service).
"""

from scene_dev.tiny_models import main

if __name__ == "__main__":
    main()
