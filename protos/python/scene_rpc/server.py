"""gRPC server bootstrap shared by the model services: error mapping in one interceptor, the
standard health service, reflection, explicit message size limits and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scene_rpc import tracing
from scene_rpc.errors import internal_message, status_for
from scene_rpc.metrics import MetricsInterceptor, serve_metrics

log = logging.getLogger(__name__)

# A 4096x2048 float32 map is 32 MiB; two of them (normalized + metric) plus the envelope fit.
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024


def message_size_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel/server options for large arrays; both ends must set them."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def _service_of(method: str) -> str:
    # "/scene.depth.v1.DepthService/EstimateDepth" -> "scene.depth.v1.DepthService"
    return method.strip("/").split("/")[0] or method


def _map_exception(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    mapped = status_for(exc)
    if mapped is None:
        # A bug, not the caller's fault: the traceback stays here, the caller learns only where
        # to look (with an id to find this line by).
        incident = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s", incident, method, exc_info=exc)
        return grpc.StatusCode.INTERNAL, internal_message(_service_of(method), incident)
    code, message = mapped
    log.info("%s -> %s: %s", method, code.name, message)
    return code, message


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns exceptions escaping a servicer into status codes (see ``scene_rpc.errors``)."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            behavior = handler.unary_unary

            async def unary_unary(request, context):
                try:
                    return await behavior(request, context)
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:
                    code, message = _map_exception(exc, method)
                    await context.abort(code, message)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            behavior = handler.unary_stream

            async def unary_stream(request, context):
                try:
                    result = behavior(request, context)
                    if hasattr(result, "__aiter__"):
                        async for response in result:
                            yield response
                    else:
                        # A handler that writes with context.write() (grpc_health's Watch).
                        await result
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:
                    code, message = _map_exception(exc, method)
                    await context.abort(code, message)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


# Clients resolve DNS (a headless Service's pod list) only when a connection drops. Ending each
# connection after a while lets round_robin clients find replicas added by an autoscaler; the
# grace period is long because a CPU inference can run for minutes on that connection.
MAX_CONNECTION_AGE_S = 300
MAX_CONNECTION_AGE_GRACE_S = 3600


def build_server(
    *,
    service_names: Iterable[str],
    register: Callable[[grpc.aio.Server], None],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    extra_interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A grpc.aio server with the servicers ``register`` adds, health and reflection.

    ``service_names`` are the full names of the servicers (``DESCRIPTOR.services_by_name[...]
    .full_name``), each reported SERVING by the health service once the server starts.
    """
    server = grpc.aio.server(
        # Outermost first: the trace span and the metrics see the status the error mapping sets.
        interceptors=[*tracing.server_interceptors(), MetricsInterceptor(),
                      ErrorMappingInterceptor(), *extra_interceptors],
        options=[
            *message_size_options(max_message_bytes),
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
            ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_S * 1000),
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    server.health_names = names  # type: ignore[attr-defined]
    return server, health_servicer


async def start(server: grpc.aio.Server, health_servicer, address: str) -> int:
    """Bind and start; returns the bound port (useful with port 0 in tests)."""
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    await server.start()
    for name in ["", *server.health_names]:  # type: ignore[attr-defined]
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return port


async def stop(server: grpc.aio.Server, health_servicer, grace_s: float) -> None:
    """Report NOT_SERVING, refuse new calls, let in-flight ones finish within ``grace_s``."""
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_s)


async def run_until_signalled(
    server: grpc.aio.Server, health_servicer, address: str, *, grace_s: float,
    on_started: Callable[[int], None] | None = None, metrics_port: int = 0,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully; with ``metrics_port`` (0 = off),
    Prometheus metrics on their own HTTP port (see ``scene_rpc.metrics``)."""
    serve_metrics(metrics_port)
    port = await start(server, health_servicer, address)
    if on_started is not None:
        on_started(port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("signal received; stopping with a %.0fs grace period", grace_s)
    await stop(server, health_servicer, grace_s)
