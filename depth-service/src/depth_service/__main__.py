"""``python -m depth_service``: the shared bootstrap (``scene_rpc.service.main``)."""

from __future__ import annotations

from depth_service import NAME
from depth_service.settings import Settings
from scene_rpc.service import main as run


def main() -> None:
    run(NAME, Settings, "depth_service.server:build")


if __name__ == "__main__":
    main()
