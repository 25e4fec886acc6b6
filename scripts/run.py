#!/usr/bin/env python
"""`make run`: start the four services as separate processes on loopback and supervise them.

    python scripts/run.py                  # documented default models, orchestrator on :8000
    python scripts/run.py --smoke          # offline: tiny models + a fake OpenAI server
    python scripts/run.py --depth-replicas 2 --port-base 9000
    python scripts/run.py --profile fast   # CPU-sized models (or PROFILE=fast in the environment)

The plan of processes is ``scene_dev.run_plan``, their supervision ``scene_dev.supervisor``, this
command line ``scene_dev.run`` (``python -m scene_dev.run`` is the same).
"""

import sys

from scene_dev.run import main

if __name__ == "__main__":
    sys.exit(main())
