"""The process plan of ``make run`` (``scene_dev.run_plan``): what each service is started with.

One environment reaches every process, so the plan is checked against the settings classes:
each variable it sets is one its service reads, and a variable two services read means one
thing to both.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from scene_dev import run, run_plan, supervisor
from tests.deploy import settings_env

SERVICE_OF = {"depth": "depth", "segment": "segment", "imagegen": "imagegen",
              "orchestrator": "orchestrator"}
# Read by more than one service, on purpose. One environment reaches all four processes under
# `make run`, so a shared name sets two things at once: only PROFILE is, deliberately (the one
# switch that picks every model service's models from scene_rpc.profiles).
SHARED_ON_PURPOSE: dict[str, set[str]] = {"PROFILE": {"depth", "segment"}}


def plan(**options) -> dict[str, run_plan.ServiceSpec]:
    specs = run_plan.plan_services(run_plan.StackOptions(**options), environ={"HOME": "/h"})
    return {spec.name: spec for spec in specs}


def set_by_plan(spec: run_plan.ServiceSpec) -> dict[str, str]:
    return {k: v for k, v in spec.env.items() if k not in {"HOME", "PYTHONUNBUFFERED"}}


def test_default_plan_is_the_four_services_on_their_documented_ports():
    specs = plan()
    assert list(specs) == ["depth", "segment", "imagegen", "orchestrator"]
    assert {name: s.port for name, s in specs.items()} == {
        "depth": 50051, "segment": 50052, "imagegen": 50053, "orchestrator": 8000}
    assert all(s.host == "127.0.0.1" for s in specs.values())
    orchestrator = specs["orchestrator"].env
    assert orchestrator["DEPTH_SERVICE_ADDR"] == "127.0.0.1:50051"
    assert orchestrator["SEGMENT_SERVICE_ADDR"] == "127.0.0.1:50052"
    assert orchestrator["IMAGEGEN_SERVICE_ADDR"] == "127.0.0.1:50053"
    # Nothing about models: the services' documented defaults apply.
    assert not any("MODEL" in key for spec in specs.values() for key in spec.env)


def test_every_variable_the_plan_sets_is_read_by_its_service():
    for name, spec in plan(data_dir=Path("/d")).items():
        names = settings_env.env_names(SERVICE_OF[name])
        for variable, value in set_by_plan(spec).items():
            assert variable in names, f"{name} reads no {variable}"
            settings_env.parse_as(SERVICE_OF[name], variable, value)


def test_a_variable_read_by_two_services_is_shared_on_purpose():
    readers = defaultdict(set)
    for service in settings_env.SETTINGS_MODULES:
        for variable in settings_env.env_names(service):
            readers[variable].add(service)
    shared = {variable: services for variable, services in readers.items() if len(services) > 1}
    assert all(SHARED_ON_PURPOSE.get(v) == s for v, s in shared.items()), shared


def test_replicas_share_one_balanced_address():
    specs = plan(depth_replicas=3, ports=dict(run_plan.DEFAULT_PORTS), replica_port=9100)
    assert [n for n in specs if n.startswith("depth")] == ["depth-1", "depth-2", "depth-3"]
    assert [specs[f"depth-{i}"].env["DEPTH_PORT"] for i in (1, 2, 3)] == ["50051", "9100", "9101"]
    assert specs["orchestrator"].env["DEPTH_SERVICE_ADDR"] == (
        "127.0.0.1:50051,127.0.0.1:9100,127.0.0.1:9101")


def test_smoke_plan_is_offline_with_tiny_models_and_the_fake_openai_server(tmp_path):
    specs = plan(smoke=True, tiny_models_dir=tmp_path, data_dir=tmp_path / "data")
    fake = specs["openai-fake"]
    assert fake.argv[1:3] == ["-m", "scene_dev.fakes.openai_server"]
    assert specs["imagegen"].env["OPENAI_BASE_URL"] == f"http://127.0.0.1:{fake.port}/v1"
    depth, segment = specs["depth"].env, specs["segment"].env
    assert depth["DEPTH_MODEL"] == str(tmp_path / "depth-anything")
    assert segment["SAM_MODEL"] == str(tmp_path / "sam2")
    assert segment["SEG_MODEL"] == str(tmp_path / "maskformer")
    assert depth["HF_HUB_OFFLINE"] == "1"
    assert specs["orchestrator"].env["DATA_DIR"] == str(tmp_path / "data")


def test_the_callers_environment_overrides_smoke_defaults_but_not_the_tiny_models(tmp_path):
    environ = {"SEG_POINTS_PER_SIDE": "16", "DEPTH_MODEL": "someone/else"}
    specs = run_plan.plan_services(
        run_plan.StackOptions(smoke=True, tiny_models_dir=tmp_path), environ=environ)
    segment = next(s for s in specs if s.name == "segment")
    depth = next(s for s in specs if s.name == "depth")
    assert segment.env["SEG_POINTS_PER_SIDE"] == "16"
    assert segment.env["SEG_CROP_POINTS_PER_SIDE"] == run_plan.SMOKE_DEFAULTS[
        "SEG_CROP_POINTS_PER_SIDE"]
    assert depth.env["DEPTH_MODEL"] == str(tmp_path / "depth-anything")


def test_wildcard_binds_are_reached_on_loopback_and_hosts_can_differ():
    specs = plan(host="0.0.0.0", hosts={"depth": "10.0.0.3"})
    assert specs["segment"].env["SEG_HOST"] == "0.0.0.0"
    assert specs["segment"].address == "127.0.0.1:50052"
    assert specs["depth"].env["DEPTH_HOST"] == "10.0.0.3"
    assert specs["orchestrator"].env["DEPTH_SERVICE_ADDR"] == "10.0.0.3:50051"
    assert specs["orchestrator"].env["SEGMENT_SERVICE_ADDR"] == "127.0.0.1:50052"


def test_port_base_lays_out_every_port():
    args = run.parse_args(["--port-base", "9000", "--depth-replicas", "2",
                                  "--segment-port", "7777"])
    options = run.options_from_args(args)
    assert options.ports == {"orchestrator": 9000, "depth": 9001, "segment": 7777,
                             "imagegen": 9003, "openai": 9004}
    assert options.replica_port == 9010


def test_depth_replicas_get_a_metrics_port_each():
    specs = run_plan.plan_services(run_plan.StackOptions(depth_replicas=3),
                                     environ={"DEPTH_METRICS_PORT": "9091"})
    ports = [s.env["DEPTH_METRICS_PORT"] for s in specs if s.name.startswith("depth")]
    assert ports == ["9091", "9092", "9093"]
    off = run_plan.plan_services(run_plan.StackOptions(depth_replicas=2), environ={})
    assert all("DEPTH_METRICS_PORT" not in s.env for s in off)


def test_profile_reaches_every_model_service_and_smoke_maps_it_to_tiny_twins(tmp_path):
    specs = plan(smoke=True, tiny_models_dir=tmp_path, profile="fast")
    depth, segment = specs["depth"].env, specs["segment"].env
    assert depth["PROFILE"] == segment["PROFILE"] == "fast"
    assert depth["DEPTH_MODEL"] == str(tmp_path / "depth-anything")
    assert depth["DEPTH_FALLBACK_MODEL"] == ""
    assert segment["SAM_MODEL"] == str(tmp_path / "sam2")
    assert segment["SEG_MODEL"] == str(tmp_path / "segformer")
    quality = plan(smoke=True, tiny_models_dir=tmp_path, profile="quality")
    assert quality["depth"].env["DEPTH_MODEL"] == str(tmp_path / "depth-pro")
    assert quality["segment"].env["SEG_MODEL"] == str(tmp_path / "maskformer")


def test_every_profile_model_has_a_tiny_twin_that_the_builder_makes(tmp_path):
    from scene_dev.tiny_models import BUILDERS
    from scene_rpc.profiles import PROFILES, model_ids

    for name in PROFILES:
        for model_id in model_ids(name):
            assert Path(run_plan.tiny_twin(tmp_path, model_id)).name in BUILDERS


def test_make_run_profile_flag_and_the_banner(monkeypatch):
    args = run.parse_args(["--profile", "fast"])
    options = run.options_from_args(args)
    specs = run_plan.plan_services(options, environ={})
    assert {s.env["PROFILE"] for s in specs} == {"fast"}
    banner = "\n".join(supervisor.profile_lines({"PROFILE": "balanced"}))
    assert "profile   balanced" in banner
    assert "per 1 MP photo" in banner or "not measured" in banner


def test_an_unknown_profile_is_refused_naming_the_valid_ones():
    import pytest

    with pytest.raises(ValueError, match="quality, balanced, fast"):
        run_plan.active_profile({"PROFILE": "turbo"})


def test_model_services_split_the_cores_unless_threads_are_set():
    fast = {"PROFILE": "fast"}
    assert run_plan.model_threads(fast, depth_processes=1, cores=2) == {
        "depth": {"DEPTH_THREADS": 1}, "segment": {"SEG_THREADS": 2}}
    # Under quality DepthPro is the long pole: one depth process gets every core too.
    assert run_plan.model_threads({}, depth_processes=1, cores=2) == {
        "depth": {"DEPTH_THREADS": 2}, "segment": {"SEG_THREADS": 2}}
    assert run_plan.model_threads({}, depth_processes=2, cores=8) == {
        "depth": {"DEPTH_THREADS": 2}, "segment": {"SEG_THREADS": 8}}
    assert run_plan.model_threads({"DEPTH_THREADS": "3", "SEG_THREADS": "5"}, 1, 2) == {
        "depth": {}, "segment": {}}
    specs = plan()
    assert "DEPTH_THREADS" in specs["depth"].env and "SEG_THREADS" in specs["segment"].env
    assert "DEPTH_THREADS" not in specs["segment"].env
    assert "SEG_THREADS" not in specs["orchestrator"].env
