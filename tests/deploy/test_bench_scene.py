"""The scene bench's plumbing (``scene_dev.bench_scene``, ``scripts/bench_scene.py``), without
running models: every profile's model has a full-size builder, ``--quick`` plans the few-minute
check it is documented as, and the ratios are computed as labelled."""

from __future__ import annotations

from scene_dev import bench_scene
from scene_dev.full_size_models import BUILDERS
from scene_rpc.profiles import PROFILES, model_ids


def test_every_profile_model_has_a_full_size_builder():
    for profile in PROFILES:
        for model_id in model_ids(profile):
            assert model_id in BUILDERS, model_id


def test_quick_times_the_fast_photo_at_standard_and_draft_within_its_budget():
    args = bench_scene.parse_args(["--quick"])
    plan = bench_scene.scene_plan(args)
    assert plan == [("fast", bench_scene.PHOTO, "standard"), ("fast", bench_scene.PHOTO, "draft")]
    assert args.repeats == 1 and not args.toggles and not args.before
    # It starts from an empty graph cache and times the first scene after that start.
    assert args.first_scene
    # By the profile table's measured figures the timed scenes fit the budget of the check.
    expected = bench_scene.measured_scene_s(plan, args.repeats)
    assert expected is not None and expected <= bench_scene.QUICK_SCENES_BUDGET_S
    # The budget holds a plan to account: the full default plan (balanced, the panorama) has
    # scenes no figure covers, and the fast photo repeated ten times would overrun it.
    default = bench_scene.scene_plan(bench_scene.parse_args([]))
    assert bench_scene.measured_scene_s(default, 1) is None
    assert bench_scene.measured_scene_s(plan, 10) > bench_scene.QUICK_SCENES_BUDGET_S


def test_ratios_are_measured_in_the_same_run():
    runs = {"photo_1mp/standard": {"wall_s": 10.0}, "photo_1mp/draft": {"wall_s": 2.0}}
    results = {"fast": {"runs": runs},
               "quality": {"runs": {"photo_1mp/standard": {"wall_s": 100.0}}}}
    ratios = bench_scene.ratios(results)
    assert ratios["fast/photo_1mp: standard / draft wall time"] == 5.0
    assert ratios["quality / fast wall time, photo_1mp/standard"] == 10.0


def test_models_count_as_loaded_only_when_every_flag_says_so():
    health = {"depth": {"info": {"models": [{"loaded": True}]}},
              "segment": {"info": {"models": [{"loaded": True}, {"loaded": False}]}},
              "imagegen": {"info": {"models": [{"loaded": False}]}}}
    assert list(bench_scene._loaded_flags(health)) == [True, True, False]


def test_peak_memory_is_reported_per_service_and_summed():
    rss = {"depth": {"rss_mb": 500.0, "peak_rss_mb": 700.4},
           "segment": {"rss_mb": 900.0, "peak_rss_mb": 1000.0}}
    assert bench_scene.peak_rss(rss) == {"depth": 700, "segment": 1000, "total": 1700}
