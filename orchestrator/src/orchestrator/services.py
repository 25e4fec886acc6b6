"""Clients of the three model services: one long-lived ``grpc.aio`` channel each, a concurrency
limit per service, per-call deadlines, progress from the streaming RPCs and the error mapping.

An address may name several replicas (a comma-separated list, or a ``dns:///`` name with several
records): the channel balances calls over them round robin.

Each service's limits (``GetInfo.limits``) are learned at start and kept fresh: read again every
``LIMITS_REFRESH_S``, every few seconds while a service has not answered yet, at once after a
failed call (a restarted service may come back with other limits) and from every health probe's
answer. Polling rather than watching the channel's state: with several replicas behind one
channel, one restarting does not change the channel's state, and a poll is one small call.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator.errors import ApiError, from_rpc_error
from orchestrator.limits import Advertised, RequestLimits
from orchestrator.settings import SegmentModeSetting, Settings
from scene.common.v1 import common_pb2
from scene.depth.v1 import depth_pb2, depth_pb2_grpc
from scene.imagegen.v1 import imagegen_pb2, imagegen_pb2_grpc
from scene.segment.v1 import segment_pb2, segment_pb2_grpc
from scene_rpc import tracing
from scene_rpc.server import message_size_options

log = logging.getLogger(__name__)

ProgressCallback = Callable[[common_pb2.Progress], None]

_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
_SEGMENT_MODES = {
    SegmentModeSetting.DEFAULT: segment_pb2.SEGMENT_MODE_UNSPECIFIED,
    SegmentModeSetting.HYBRID: segment_pb2.SEGMENT_MODE_HYBRID,
    SegmentModeSetting.SEMANTIC: segment_pb2.SEGMENT_MODE_SEMANTIC,
    SegmentModeSetting.SAM: segment_pb2.SEGMENT_MODE_SAM,
}


def channel_target(address: str) -> str:
    """A gRPC target for a service address setting.

    ``host:port`` and targets with a scheme (``dns:///name:port``, ``ipv4:...``, ``unix:...``)
    pass through. A comma-separated list becomes one ``ipv4:``/``ipv6:`` target; host names in
    it are resolved once, here, because those schemes take literal addresses only (use
    ``dns:///`` for names whose records change).
    """
    address = address.strip()
    if not address:
        raise ValueError("a service address is empty")
    if "," not in address:
        return address
    endpoints = [_split_host_port(part.strip()) for part in address.split(",") if part.strip()]
    resolved = [(_resolve(host), port) for host, port in endpoints]
    versions = {ip.version for ip, _ in resolved}
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in resolved)
    if versions == {6}:
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in resolved)
    raise ValueError(f"{address!r} mixes IPv4 and IPv6 endpoints; a gRPC target takes one family")


def _split_host_port(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{endpoint!r} is not host:port")
    return host.strip("[]"), int(port)


def _resolve(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    # Prefer IPv4 so that "localhost" in a list matches services bound to 127.0.0.1.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return ipaddress.ip_address(infos[0][4][0])


def open_channel(address: str, max_message_bytes: int) -> grpc.aio.Channel:
    options = [
        *message_size_options(max_message_bytes),
        ("grpc.service_config", _SERVICE_CONFIG),
        # A service that is down is tried again often, so that one that has just started (in
        # any order with the orchestrator) is connected well inside SERVICE_CONNECT_GRACE_S;
        # the default backoff grows to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    # With tracing on, the instrumentation's interceptors send each call's traceparent.
    return grpc.aio.insecure_channel(channel_target(address), options=options,
                                     interceptors=tracing.client_interceptors())


@dataclass
class ServiceClient:
    """One downstream service: its channel, its concurrency limit and its deadline."""

    name: str
    full_name: str
    address: str
    channel: grpc.aio.Channel
    deadline_s: float
    concurrency: int
    connect_grace_s: float = 5.0

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.concurrency)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.version = ""
        # What the service advertises; None until it has answered a GetInfo.
        self.limits: Advertised | None = None
        # Called after a failed call, so the service's limits are read again soon.
        self.on_failure: Callable[[], None] | None = None

    def learn(self, info: common_pb2.GetInfoResponse) -> None:
        """Remember what a GetInfo answer says of the service (its version and limits)."""
        self.version = info.version
        # A service older than the limits contract advertises none (all 0): only the
        # orchestrator's own settings apply to it.
        self.limits = Advertised.from_proto(info.limits)

    async def connected(self) -> None:
        """Wait, up to the connect grace, for the channel to be ready; ApiError 503 naming the
        service otherwise.

        A channel that failed to connect (the service was not listening yet, or restarted)
        waits out a reconnect backoff before it tries again, and a call made meanwhile fails at
        once with UNAVAILABLE even though the service is up by then. Asking the channel to
        connect and waiting for it makes the first request after any start order succeed;
        the grace bounds how long a service that is really down holds a request."""
        if self.channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return
        try:
            await asyncio.wait_for(self.channel.channel_ready(), self.connect_grace_s)
        except TimeoutError:
            if self.on_failure is not None:
                self.on_failure()
            raise ApiError(503, f"the {self.name} service at {self.address} is unavailable: no "
                                f"connection within {self.connect_grace_s:g} s") from None

    def error(self, exc: grpc.aio.AioRpcError) -> ApiError:
        if self.on_failure is not None and exc.code() in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.RESOURCE_EXHAUSTED):
            self.on_failure()
        return from_rpc_error(self.name, self.address, exc, self.deadline_s)

    async def probe(self, timeout_s: float, info_call) -> dict[str, Any]:
        """Health (grpc.health.v1) and GetInfo, asked concurrently; never raises.

        Like a call, the probe first lets the channel connect (within ``timeout_s``), so that
        /health does not report a service that is up as unreachable while the channel waits
        out a reconnect backoff."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.channel.channel_ready(), timeout_s)
        # What is left of the probe's time, and never nothing: an answer takes a moment.
        timeout_s = max(ends - loop.time(), 0.2)
        health_call = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=self.full_name), timeout=timeout_s)
        info_request = info_call(common_pb2.GetInfoRequest(), timeout=timeout_s)
        health, info = await asyncio.gather(health_call, info_request, return_exceptions=True)
        report: dict[str, Any] = {"address": self.address}
        if isinstance(health, grpc.aio.AioRpcError):
            report.update(status="UNREACHABLE" if health.code() in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else "ERROR",
                serving=False, error=f"{health.code().name}: {health.details()}")
        elif isinstance(health, BaseException):
            report.update(status="ERROR", serving=False, error=repr(health))
        else:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
            serving = health.status == health_pb2.HealthCheckResponse.SERVING
            report.update(status=name, serving=serving)
        if isinstance(info, BaseException):
            report["info"] = None
        else:
            self.learn(info)
            report["info"] = MessageToDict(
                info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        return report


class ModelServices:
    """The depth, segment and imagegen services, opened once for the app's lifetime."""

    def __init__(self, settings: Settings):
        self.settings = settings
        size = settings.max_message_bytes

        def client(name, full_name, address, deadline, concurrency) -> ServiceClient:
            return ServiceClient(name, full_name, address, open_channel(address, size),
                                 deadline, concurrency,
                                 connect_grace_s=min(settings.service_connect_grace_s, deadline))

        self.depth = client(
            "depth", depth_pb2.DESCRIPTOR.services_by_name["DepthService"].full_name,
            settings.depth_service_addr, settings.depth_call_deadline_s, settings.depth_concurrency)
        self.segment = client(
            "segment", segment_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name,
            settings.segment_service_addr, settings.segment_call_deadline_s,
            settings.segment_concurrency)
        self.imagegen = client(
            "imagegen", imagegen_pb2.DESCRIPTOR.services_by_name["ImageGenService"].full_name,
            settings.imagegen_service_addr, settings.imagegen_call_deadline_s,
            settings.imagegen_concurrency)
        self._depth_stub = depth_pb2_grpc.DepthServiceStub(self.depth.channel)
        self._segment_stub = segment_pb2_grpc.SegmentServiceStub(self.segment.channel)
        self._imagegen_stub = imagegen_pb2_grpc.ImageGenServiceStub(self.imagegen.channel)
        self._info_calls = {"depth": self._depth_stub.GetInfo,
                            "segment": self._segment_stub.GetInfo,
                            "imagegen": self._imagegen_stub.GetInfo}
        self._refresh_now = asyncio.Event()
        self._refresher: asyncio.Task | None = None
        for c in self.clients:
            c.on_failure = self._refresh_now.set

    @property
    def clients(self) -> tuple[ServiceClient, ServiceClient, ServiceClient]:
        return self.depth, self.segment, self.imagegen

    async def start(self) -> None:
        """Learn the services' limits (those that answer within HEALTH_TIMEOUT_S) and keep them
        fresh in the background until ``close``."""
        await self.refresh_limits()
        self._refresher = asyncio.create_task(self._keep_limits_fresh(), name="service-limits")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await asyncio.gather(*(c.channel.close() for c in self.clients))

    @property
    def limits(self) -> RequestLimits:
        """The limits a request is checked against now (limits.py)."""
        return RequestLimits.combine(self.settings, self.depth.limits, self.segment.limits,
                                     self.imagegen.limits)

    async def refresh_limits(self) -> None:
        """Ask every service's GetInfo; one that does not answer keeps what it said last (or,
        never heard from, leaves the orchestrator's own settings in force)."""
        before = self.limits
        await self._ask_info(self.clients)
        after = self.limits
        if after == before:
            return
        log.info("request limits: %s", after.as_dict())
        if after.max_generated_pixels > after.max_image_pixels:
            # Information, not an alarm: the images the API asks for are far smaller (the API
            # takes no size), but one larger would fail after it was paid for.
            log.info("imagegen may make images of up to %d pixels; depth and segment take %d",
                     after.max_generated_pixels, after.max_image_pixels)

    async def _keep_limits_fresh(self) -> None:
        while True:
            unknown = any(c.limits is None for c in self.clients)
            # Sooner while a service has never answered: it is probably starting.
            wait_s = min(self.settings.limits_refresh_s, 2.0) if unknown else \
                self.settings.limits_refresh_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), wait_s)
            self._refresh_now.clear()
            try:
                await self.refresh_limits()
            except Exception:  # a refresh must never end the loop
                log.exception("refreshing the services' limits failed")

    async def _ask_info(self, clients) -> None:
        answers = await asyncio.gather(
            *(self._info_calls[c.name](common_pb2.GetInfoRequest(),
                                       timeout=self.settings.health_timeout_s) for c in clients),
            return_exceptions=True)
        for client, answer in zip(clients, answers, strict=True):
            if not isinstance(answer, BaseException):
                client.learn(answer)

    async def health(self) -> dict[str, dict[str, Any]]:
        timeout = self.settings.health_timeout_s
        reports = await asyncio.gather(
            self.depth.probe(timeout, self._depth_stub.GetInfo),
            self.segment.probe(timeout, self._segment_stub.GetInfo),
            self.imagegen.probe(timeout, self._imagegen_stub.GetInfo),
        )
        return {c.name: report for c, report in zip(self.clients, reports, strict=True)}

    async def learn_versions(self) -> None:
        """Ask each service whose version is not known yet (GetInfo), for the records; a
        service that does not answer stays unknown until a later call or health probe."""
        await self._ask_info([c for c in self.clients if not c.version])

    async def generate_image(self, request: imagegen_pb2.GenerateImageRequest,
                             ) -> imagegen_pb2.GenerateImageResponse:
        client = self.imagegen
        await client.connected()
        async with client.slots:
            try:
                return await self._imagegen_stub.GenerateImage(request, timeout=client.deadline_s)
            except grpc.aio.AioRpcError as exc:
                raise client.error(exc) from None

    async def estimate_depth(self, request: depth_pb2.EstimateDepthRequest,
                             on_progress: ProgressCallback) -> depth_pb2.EstimateDepthResponse:
        return await self._stream(self.depth, self._depth_stub.StreamEstimateDepth, request,
                                  on_progress)

    async def segment_image(self, request: segment_pb2.SegmentRequest,
                            on_progress: ProgressCallback) -> segment_pb2.SegmentResponse:
        if request.mode == segment_pb2.SEGMENT_MODE_UNSPECIFIED:
            # The request's quality may ask for a mode; otherwise SEGMENT_MODE's.
            request.mode = _SEGMENT_MODES[self.settings.segment_mode]
        return await self._stream(self.segment, self._segment_stub.StreamSegment, request,
                                  on_progress)

    async def _stream(self, client: ServiceClient, method, request, on_progress):
        """Call a server-streaming RPC: Progress events, then exactly one result."""
        await client.connected()
        async with client.slots:
            call = method(request, timeout=client.deadline_s)
            result = None
            try:
                async for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "progress":
                        on_progress(event.progress)
                    elif kind == "result":
                        result = event.result
            except grpc.aio.AioRpcError as exc:
                raise client.error(exc) from None
            except asyncio.CancelledError:
                # Tell the service to stop working on it (the stream is cancelled, not drained).
                call.cancel()
                raise
        if result is None:
            raise ApiError(502, f"the {client.name} service at {client.address} ended its stream "
                                "without a result")
        return result
