#!/usr/bin/env python
"""Time to a scene, upload -> cloud, through the real services as processes, per profile and
quality (``make bench``; the bench itself is ``scene_dev.bench_scene``):

    python scripts/bench_scene.py --quick                 # fast profile, 1 MP, standard + draft
    python scripts/bench_scene.py --profiles fast,balanced --json bench-results/scene.json
    python scripts/bench_scene.py --profiles quality --device cuda      # on a GPU box
    python scripts/bench_scene.py --threads-study         # depth || segment vs each alone

``--help`` lists every option.
"""

import sys

from scene_dev.bench_scene import main

if __name__ == "__main__":
    sys.exit(main())
