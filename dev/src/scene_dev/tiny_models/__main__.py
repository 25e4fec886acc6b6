"""``python -m scene_dev.tiny_models [OUT_DIR]``: build every tiny model."""

from scene_dev.tiny_models import main

main()
