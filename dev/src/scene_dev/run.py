"""`make run`: start the four services as separate processes on loopback and supervise them.

    python scripts/run.py                  # documented default models, orchestrator on :8000
    python scripts/run.py --smoke          # offline: tiny models + a fake OpenAI server
    python scripts/run.py --depth-replicas 2 --port-base 9000
    python scripts/run.py --profile fast   # CPU-sized models (or PROFILE=fast in the environment)

(``python -m scene_dev.run`` is the same.) The processes and their environment are
:func:`scene_dev.run_plan.plan_services`'s, supervised by :mod:`scene_dev.supervisor`: each in
its own process group, its output prefixed with its name, every one stopped on Ctrl-C or
SIGTERM, the others stopped when one dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

from scene_dev.run_plan import (
    DEFAULT_PORTS,
    DEFAULT_REPLICA_PORT,
    StackOptions,
    plan_services,
    ports_from_base,
)
from scene_dev.supervisor import supervise


def ensure_tiny_models(tiny_models_dir: Path, python: str = sys.executable) -> None:
    """Build the tiny models (what `make tiny-models` does) unless they are complete."""
    if (tiny_models_dir / ".complete").exists():
        return
    print(f"building tiny models into {tiny_models_dir} ...", flush=True)
    # A process of its own: the supervisor never imports torch.
    subprocess.run([python, "-m", "scene_dev.tiny_models", str(tiny_models_dir)], check=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="offline run: tiny random-weight models (built when missing) and a "
                             "fake OpenAI server as a fifth process; data in a temporary "
                             "directory unless --data-dir is given")
    parser.add_argument("--data-dir", type=Path, help="the orchestrator's DATA_DIR")
    parser.add_argument("--profile", choices=["quality", "balanced", "fast"],
                        help="model profile of every model service (default: $PROFILE, else "
                             "quality); with --smoke, tiny models of its architectures")
    parser.add_argument("--host", default="127.0.0.1",
                        help="bind address of every service (default: loopback only)")
    parser.add_argument("--port-base", type=int,
                        help="orchestrator on BASE, depth BASE+1, segment BASE+2, imagegen "
                             "BASE+3, fake OpenAI BASE+4, extra depth replicas from BASE+10")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int,
                            help=f"port of {name} (default {port})")
    parser.add_argument("--depth-replicas", type=int, default=1,
                        help="number of depth processes; the orchestrator balances over all")
    parser.add_argument("--startup-timeout", type=float, default=300.0,
                        help="seconds each service has to start answering (default 300); "
                             "model services then have up to an hour to load their models")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopping (default 10)")
    args = parser.parse_args(argv)
    if args.depth_replicas < 1:
        parser.error("--depth-replicas must be at least 1")
    return args


def options_from_args(args: argparse.Namespace) -> StackOptions:
    ports, replica_port = dict(DEFAULT_PORTS), DEFAULT_REPLICA_PORT
    if args.port_base is not None:
        ports, replica_port = ports_from_base(args.port_base)
    for name in DEFAULT_PORTS:
        explicit = getattr(args, f"{name}_port")
        if explicit is not None:
            ports[name] = explicit
    # Resolved here: the services run in the repository root, not in the caller's directory.
    data_dir = args.data_dir.resolve() if args.data_dir is not None else None
    return StackOptions(smoke=args.smoke, host=args.host, data_dir=data_dir,
                        depth_replicas=args.depth_replicas, ports=ports,
                        replica_port=replica_port, profile=args.profile or None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = options_from_args(args)
    with contextlib.ExitStack() as cleanup:
        if options.smoke:
            ensure_tiny_models(options.tiny_models_dir)
            if options.data_dir is None:
                options.data_dir = Path(cleanup.enter_context(
                    tempfile.TemporaryDirectory(prefix="scene-smoke-")))
        specs = plan_services(options)
        return asyncio.run(supervise(
            specs, startup_timeout_s=args.startup_timeout, grace_s=args.grace,
            colour=sys.stdout.isatty()))


if __name__ == "__main__":
    sys.exit(main())
