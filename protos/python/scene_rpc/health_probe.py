"""A one-shot gRPC health check: ``python -m scene_rpc.health_probe ADDR [--liveness |
--service NAME]``.

Exit status 0 when the server reports SERVING, 1 for any other answer or no answer within the
timeout. It is the container HEALTHCHECK of the model services and what ``scripts/run.py`` polls
during start-up, so it only uses the standard ``grpc.health.v1`` service and never touches a model.

What it asks (see ``scene_rpc.service``): by default readiness, the overall server ``""``
(NOT_SERVING while a preload runs and after a failed load); ``--liveness`` asks the ``liveness``
name instead, SERVING while the process runs whatever its models do; ``--service NAME`` any name.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
# The health name of liveness; scene_rpc.service.LIVENESS (not imported: the probe stays light).
LIVENESS = "liveness"


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """Ask ``address`` once. Returns (serving, a short human-readable reason)."""
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            # wait_for_ready: a server still binding its port counts against the timeout rather
            # than failing at once, so one probe with a timeout is enough for start-up checks.
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=timeout_s,
                wait_for_ready=True,
            )
    except grpc.RpcError as exc:
        return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scene_rpc.health_probe",
        description="Exit 0 when a gRPC server reports SERVING (grpc.health.v1), else 1.",
    )
    parser.add_argument("address", help="host:port, or any gRPC target such as dns:///name:port")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--service", default="", help="fully qualified service name "
                       "(default: the server as a whole, i.e. readiness)")
    which.add_argument("--liveness", action="store_true",
                       help=f"ask liveness (the {LIVENESS!r} name) rather than readiness")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    service = LIVENESS if args.liveness else args.service
    serving, reason = check(args.address, service, args.timeout)
    if not args.quiet:
        target = f"{args.address} {service}".strip()
        print(f"{target}: {reason}", file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
