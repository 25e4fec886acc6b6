"""The shared service metrics: the interceptor over a real socket, the lifecycle's load state, the
pass meter, and the HTTP endpoint parsed with prometheus-client's own parser."""

import socket
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from scene_rpc import metrics
from scene_rpc import server as rpc_server
from scene_rpc.errors import InvalidInput, ModelUnavailable
from scene_rpc.lifecycle import LoadResult, ManagedModel


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Servicer(health_pb2_grpc.HealthServicer):
    """Health's Check (unary) and Watch (streaming) stand in for a model service's methods."""

    async def Check(self, request, context):
        if request.service == "bad":
            raise InvalidInput("bad image")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(self, request, context):
        yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        if request.service == "bad":
            raise RuntimeError("a bug")


@pytest.fixture
async def stub():
    # As build_server orders them, without the health filter (Health is the stand-in here).
    server = grpc.aio.server(interceptors=[metrics.MetricsInterceptor(skip=()),
                                           rpc_server.ErrorMappingInterceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield health_pb2_grpc.HealthStub(channel)
    await server.stop(0)


async def test_the_interceptor_counts_calls_by_method_and_final_status(stub):
    check, watch = "Health/Check", "Health/Watch"
    before = {key: sample("scene_grpc_server_handled_total", method=m, code=c)
              for key, (m, c) in {"ok": (check, "OK"), "bad": (check, "INVALID_ARGUMENT"),
                                  "stream": (watch, "OK"), "bug": (watch, "INTERNAL")}.items()}
    seconds_before = sample("scene_grpc_server_handling_seconds_count", method=check, code="OK")

    await stub.Check(health_pb2.HealthCheckRequest(service=""))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Check(health_pb2.HealthCheckRequest(service="bad"))
    async for _ in stub.Watch(health_pb2.HealthCheckRequest(service="")):
        pass
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in stub.Watch(health_pb2.HealthCheckRequest(service="bad")):
            pass

    assert sample("scene_grpc_server_handled_total", method=check, code="OK") == before["ok"] + 1
    assert sample("scene_grpc_server_handled_total", method=check,
                  code="INVALID_ARGUMENT") == before["bad"] + 1
    assert sample("scene_grpc_server_handled_total", method=watch,
                  code="OK") == before["stream"] + 1
    assert sample("scene_grpc_server_handled_total", method=watch,
                  code="INTERNAL") == before["bug"] + 1
    assert sample("scene_grpc_server_handling_seconds_count", method=check,
                  code="OK") == seconds_before + 1
    assert sample("scene_grpc_server_in_flight", method=check) == 0


class Model(ManagedModel):
    role = "test-metrics"

    def __init__(self, fail: bool) -> None:
        super().__init__("some/model")
        self.fail = fail

    def _load(self) -> LoadResult:
        if self.fail:
            raise OSError("no weights")
        return LoadResult(model_id="some/model", device="cpu", dtype="float32")


async def test_the_lifecycle_reports_load_state_and_time():
    failing = Model(fail=True)
    assert sample("scene_model_state", role="test-metrics", scene_model_state="unloaded") == 1
    failures = sample("scene_model_load_failures_total", role="test-metrics")
    with pytest.raises(ModelUnavailable):
        await failing.load()
    assert sample("scene_model_state", role="test-metrics", scene_model_state="failed") == 1
    assert sample("scene_model_load_failures_total", role="test-metrics") == failures + 1

    await Model(fail=False).load()
    assert sample("scene_model_state", role="test-metrics", scene_model_state="loaded") == 1
    assert sample("scene_model_state", role="test-metrics", scene_model_state="failed") == 0
    assert sample("scene_model_load_seconds", role="test-metrics") >= 0


def test_the_pass_meter_turns_progress_into_passes_and_items():
    passes = sample("scene_inference_pass_seconds_count", stage="test_tiles")
    items = sample("scene_inference_items_total", stage="test_tiles")
    meter = metrics.PassMeter()
    meter.step("test_tiles", 0)  # a start marker: no pass
    meter.step("test_tiles", 2)  # a batch of two tiles
    meter.step("test_tiles", 3)
    assert sample("scene_inference_pass_seconds_count", stage="test_tiles") == passes + 2
    assert sample("scene_inference_items_total", stage="test_tiles") == items + 3


def test_metrics_are_served_on_their_own_port_and_parse():
    assert metrics.serve_metrics(0) == 0  # off
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert metrics.serve_metrics(port, "127.0.0.1") == port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"scene_grpc_server_handling_seconds", "scene_grpc_server_handled",
            "scene_model_state", "scene_inference_pass_seconds"} <= names
