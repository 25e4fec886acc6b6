"""scripts/bench_scene.py's plumbing, without running models: every profile's model has a
full-size builder, --quick is what the issue asks, and the ratios are computed as labelled."""

from __future__ import annotations

import importlib.util
import sys

from scene_rpc.profiles import PROFILES, model_ids
from tests.stack import REPO_ROOT


def load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_every_profile_model_has_a_full_size_builder():
    builders = load("full_size_models").BUILDERS
    for profile in PROFILES:
        for model_id in model_ids(profile):
            assert model_id in builders, model_id


def test_quick_is_fast_on_a_photo_at_standard_and_draft():
    args = load("bench_scene").parse_args(["--quick"])
    assert (args.profiles, args.qualities, args.no_panorama) == ("fast", "standard,draft", True)


def test_ratios_are_measured_in_the_same_run():
    bench = load("bench_scene")
    runs = {"photo_1mp/standard": {"wall_s": 10.0}, "photo_1mp/draft": {"wall_s": 2.0}}
    results = {"fast": {"runs": runs},
               "quality": {"runs": {"photo_1mp/standard": {"wall_s": 100.0}}}}
    ratios = bench.ratios(results)
    assert ratios["fast/photo_1mp: standard / draft wall time"] == 5.0
    assert ratios["quality / fast wall time, photo_1mp/standard"] == 10.0


def test_models_count_as_loaded_only_when_every_flag_says_so():
    bench = load("bench_scene")
    health = {"depth": {"info": {"models": [{"loaded": True}]}},
              "segment": {"info": {"models": [{"loaded": True}, {"loaded": False}]}},
              "imagegen": {"info": {"models": [{"loaded": False}]}}}
    assert list(bench._loaded_flags(health)) == [True, True, False]
