"""The shared server bootstrap: error mapping, health and reflection over a real socket."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from scene_rpc import server as rpc_server
from scene_rpc.errors import InvalidInput, ModelUnavailable, ServiceError

# The Health service stands in for a model service: its Check/Watch are unary and streaming.
ERRORS = {
    "invalid": InvalidInput("bad image"),
    "unavailable": ModelUnavailable("no weights"),
    "exhausted": ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down"),
    "bug": KeyError("oops"),
    # A ValueError is not the caller's fault unless it is an InvalidInput.
    "value": ValueError("operands could not be broadcast together"),
    "timeout": TimeoutError("too slow"),
}


class RaisingHealth(health_pb2_grpc.HealthServicer):
    async def Check(self, request, context):
        raise ERRORS[request.service]

    async def Watch(self, request, context):
        yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        raise ERRORS[request.service]


@pytest.fixture
async def raising_server():
    server = grpc.aio.server(interceptors=[rpc_server.ErrorMappingInterceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(RaisingHealth(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield health_pb2_grpc.HealthStub(channel)
    await server.stop(0)


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("unavailable", grpc.StatusCode.UNAVAILABLE),
        ("exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("bug", grpc.StatusCode.INTERNAL),
        ("value", grpc.StatusCode.INTERNAL),
        ("timeout", grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
async def test_exceptions_become_status_codes(raising_server, key, code):
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await raising_server.Check(health_pb2.HealthCheckRequest(service=key))
    assert unary.value.code() == code
    stream = raising_server.Watch(health_pb2.HealthCheckRequest(service=key))
    with pytest.raises(grpc.aio.AioRpcError) as streaming:
        async for _ in stream:
            pass
    assert streaming.value.code() == code


async def test_build_server_serves_health_and_reflection():
    server, health = rpc_server.build_server(service_names=["scene.test.v1.Nothing"],
                                             register=lambda _: None)
    port = await rpc_server.start(server, health, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health_stub = health_pb2_grpc.HealthStub(channel)
            for name in ["", "scene.test.v1.Nothing"]:
                reply = await health_stub.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection_stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in reflection_stub.ServerReflectionInfo(iter([request])):
                names = {s.name for s in reply.list_services_response.service}
                assert "grpc.health.v1.Health" in names
                break
    finally:
        await rpc_server.stop(server, health, grace_s=0)


@pytest.mark.parametrize("key", ["bug", "value"])
async def test_internal_errors_tell_the_caller_nothing_of_our_code(raising_server, key, caplog):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await raising_server.Check(health_pb2.HealthCheckRequest(service=key))
    details = raised.value.details()
    assert details.startswith("internal error in grpc.health.v1.Health; see its log (error id ")
    assert str(ERRORS[key]).strip("'") not in details
    assert type(ERRORS[key]).__name__ not in details
    error_id = details.rsplit("error id ", 1)[1].rstrip(")")
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info[1] is not None and record.levelname == "ERROR"


async def test_a_health_watch_passes_through_the_interceptors():
    server, health = rpc_server.build_server(service_names=["scene.test.v1.Nothing"],
                                             register=lambda _: None)
    port = await rpc_server.start(server, health, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="scene.test.v1.Nothing"), timeout=5)
            first = await anext(aiter(call))
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            call.cancel()
    finally:
        await rpc_server.stop(server, health, grace_s=0)
