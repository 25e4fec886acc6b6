"""Service addresses, channel targets and the gRPC -> HTTP status mapping."""

from __future__ import annotations

import grpc
import pytest

from orchestrator.errors import from_rpc_error
from orchestrator.services import ModelServices, channel_target


@pytest.mark.parametrize(("address", "target"), [
    ("localhost:50051", "localhost:50051"),
    ("depth:50051", "depth:50051"),
    ("dns:///depth.scene.svc.cluster.local:50051", "dns:///depth.scene.svc.cluster.local:50051"),
    ("10.0.0.1:50051,10.0.0.2:50051", "ipv4:10.0.0.1:50051,10.0.0.2:50051"),
    (" 10.0.0.1:1 , 10.0.0.2:2 ", "ipv4:10.0.0.1:1,10.0.0.2:2"),
    ("[::1]:50051,[fe80::1]:50052", "ipv6:[::1]:50051,[fe80::1]:50052"),
    ("localhost:50051,127.0.0.1:50061", "ipv4:127.0.0.1:50051,127.0.0.1:50061"),
])
def test_channel_targets(address, target):
    assert channel_target(address) == target


@pytest.mark.parametrize("address", ["", "10.0.0.1,10.0.0.2:1", "127.0.0.1:1,[::1]:2"])
def test_bad_addresses_are_refused(address):
    with pytest.raises(ValueError):
        channel_target(address)


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(("code", "status", "detail"), [
    (grpc.StatusCode.UNAVAILABLE, 503,
     "the depth service at host:1 is unavailable: connection refused"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "the depth service at host:1 did not answer within "
                                             "30 s"),
    (grpc.StatusCode.INVALID_ARGUMENT, 400, "connection refused"),
    (grpc.StatusCode.UNAUTHENTICATED, 401, "connection refused"),
    (grpc.StatusCode.PERMISSION_DENIED, 403, "connection refused"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "connection refused"),
    (grpc.StatusCode.INTERNAL, 502, "the depth service at host:1 failed (INTERNAL)"),
    (grpc.StatusCode.UNKNOWN, 502, "the depth service at host:1 failed (UNKNOWN)"),
])
def test_status_mapping(code, status, detail):
    error = from_rpc_error("depth", "host:1", RpcError(code, "connection refused"), 30)
    assert (error.status, error.detail) == (status, detail)
    assert ("Retry-After" in error.headers) == (status == 503)


async def test_round_robin_over_a_list_of_replicas(make_settings, fakes):
    """Two depth replicas in one address setting share the calls."""
    from scene.depth.v1 import depth_pb2
    from scene_dev.fakes.grpc_services import FakeDepthService
    from scene_rpc.images import image_message

    second = FakeDepthService()
    await second.start()
    try:
        settings = make_settings(
            depth_service_addr=f"{fakes.depth.address},{second.address}", depth_concurrency=4)
        services = ModelServices(settings)
        import numpy as np
        request = depth_pb2.EstimateDepthRequest(
            image=image_message(np.zeros((16, 16, 3), np.uint8)))
        for _ in range(10):
            await services.estimate_depth(request, lambda progress: None)
        await services.close()
        # Round robin over the replicas that are ready: while the second connection is still
        # being made the first may take a call or two more.
        assert len(fakes.depth.calls) + len(second.calls) == 10
        assert len(fakes.depth.calls) >= 3 and len(second.calls) >= 3
    finally:
        await second.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_service_started_after_a_failed_attempt_answers_the_first_call(make_settings):
    """The orchestrator tried the service before it listened (its channel is backing off);
    the service starts; the next call waits for the connection instead of failing."""
    import numpy as np

    from scene.depth.v1 import depth_pb2
    from scene_dev.fakes.grpc_services import FakeDepthService
    from scene_rpc.images import image_message

    port = _free_port()
    services = ModelServices(make_settings(depth_service_addr=f"127.0.0.1:{port}",
                                           service_connect_grace_s=5.0))
    request = depth_pb2.EstimateDepthRequest(image=image_message(np.zeros((8, 8, 3), np.uint8)))
    depth = FakeDepthService()
    try:
        # A probe before the service exists puts the channel into its reconnect backoff.
        report = await services.depth.probe(0.3, services._depth_stub.GetInfo)
        assert report["serving"] is False
        await depth.start(port=port)
        await services.estimate_depth(request, lambda progress: None)
        assert len(depth.calls) == 1
    finally:
        await services.close()
        await depth.stop()


async def test_a_service_that_never_starts_is_a_503_naming_it_within_the_grace(make_settings):
    import time

    import numpy as np

    from orchestrator.errors import ApiError
    from scene.depth.v1 import depth_pb2
    from scene_rpc.images import image_message

    port = _free_port()
    services = ModelServices(make_settings(depth_service_addr=f"127.0.0.1:{port}",
                                           service_connect_grace_s=1.5))
    request = depth_pb2.EstimateDepthRequest(image=image_message(np.zeros((8, 8, 3), np.uint8)))
    started = time.monotonic()
    try:
        with pytest.raises(ApiError) as caught:
            await services.estimate_depth(request, lambda progress: None)
    finally:
        await services.close()
    assert caught.value.status == 503
    assert f"the depth service at 127.0.0.1:{port} is unavailable" in caught.value.detail
    # Bounded by the grace (plus scheduling), not by the call's deadline of minutes.
    assert time.monotonic() - started < 1.5 + 1.0
