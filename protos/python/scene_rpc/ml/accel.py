"""A faster CPU runtime for a torch module: OpenVINO, one compiled graph per input shape, cached
on disk.

Measured on this project's 2-core AMD EPYC (avx512_bf16, avx512_vnni) with full-size random-weight
architectures (``depth-service/bench/bench_runtime.py`` prints the figures in one run): OpenVINO in
float32 runs Depth Anything V2 about 1.5-1.9x faster than eager PyTorch with outputs equal to 1e-6
relative L2. Hence ``auto`` = OpenVINO on CPU (when installed), eager PyTorch elsewhere. (ONNX
Runtime, about 1.4x and never ``auto``'s choice, was taken out.)

Precision: the exported graph is always float32; the compute dtype is a compile option
(``INFERENCE_PRECISION_HINT``). bfloat16 on a CPU that runs it natively is about 1e-2 off float32
in relative L2, which is a precision change, not a runtime swap: it is bounded on what the user
receives instead (``scripts/bench_precision.py``), and chosen by the services' ``*_DTYPE``.

Why one graph per shape: the exported graphs bake the input's height and width in (the
transformers vision models turn shapes into Python ints while tracing: position-embedding
interpolation, the depth heads' upsampling), and a dynamic-shape export through ``torch.export``
did not produce a graph that runs at other sizes either. A model sees few distinct shapes
(native-size tiles; the global pass's size moves in 14 px steps with the aspect ratio), and each
one is exported once, then read back from the disk cache on every later start. A caller that knows
every shape it will see (Depth Anything's shape buckets) exports them before the service is ready
(:meth:`CompiledModule.export_ahead`), so that no request waits for an export or runs eagerly.

Memory: a trace and a conversion leave about 0.5 GB of freed heap per graph that glibc keeps for
the process (measured with Depth Anything V2 Small: 2.06 GB resident after an export, 1.02 GB
after ``malloc_trim``, as much as a start that read the graph from the disk); every export is
therefore followed by :func:`return_freed_memory`.

Imported only by services that run models (``scene_rpc.ml``); ``openvino`` is imported when
chosen.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import hashlib
import importlib.metadata
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scene_rpc.settings import Runtime

log = logging.getLogger(__name__)


_DISTRIBUTIONS = {Runtime.OPENVINO: "openvino", Runtime.TORCH: "torch"}


def import_openvino():
    """``openvino`` with its usage telemetry switched off.

    OpenVINO's converter reports each conversion to Google Analytics unless the user opted out,
    from processes it forks off the service. A user's model server must not phone home, and the
    forks broke the services: a forked sender inherits asyncio's signal wake-up socket, so when it
    is terminated (no network, as in a container) its SIGTERM reaches the parent's event loop,
    which then shuts the service down. The converter falls back to its own no-op stub when the
    telemetry package cannot be imported, so it is made unimportable before the converter loads.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` from the C library already loaded in this process, or None (musl,
    macOS). Looked up once: ``ctypes.util.find_library`` would run ``ldconfig`` every time."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def return_freed_memory() -> None:
    """Give the heap's free pages back to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    glibc returns freed memory only from the top of its heaps, so the scattered blocks a trace
    frees stay resident for the life of the process unless they are trimmed explicitly.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def runtime_version(runtime: Runtime) -> str | None:
    """The installed version of the runtime's package, None when it is not installed."""
    try:
        return importlib.metadata.version(_DISTRIBUTIONS[runtime])
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_runtime(requested: Runtime | str, device: torch.device) -> Runtime:
    """The runtime to use on ``device``: ``auto`` resolved, an impossible choice refused."""
    requested = Runtime(requested)
    if requested is Runtime.AUTO:
        on_cpu = device.type == "cpu"
        return Runtime.OPENVINO if on_cpu and runtime_version(Runtime.OPENVINO) else Runtime.TORCH
    if requested is not Runtime.TORCH:
        if device.type != "cpu":
            raise ValueError(f"runtime {requested.value!r} runs on the CPU only, not on {device}")
        if runtime_version(requested) is None:
            raise ValueError(f"runtime {requested.value!r} needs the "
                             f"{_DISTRIBUTIONS[requested]!r} package, which is not installed")
    return requested


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (model id, revision, config, versions, ...)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(model_id: str, config: Any, dtype: torch.dtype) -> str:
    """Identifies the weights and the graph a transformers model exports to.

    The revision is the hub commit when the model came from the hub, else the size and mtime of
    every file in the local directory (a rebuilt tiny model gets a new key).
    """
    revision = getattr(config, "_commit_hash", None)
    local = Path(model_id)
    if revision is None and local.is_dir():
        revision = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                          for p in local.iterdir() if p.is_file())
    import transformers

    return fingerprint(model_id, revision, config.to_dict(), str(dtype), torch.__version__,
                       transformers.__version__)


# One export at a time in a process: torch.jit's tracer (which the converter uses) is not safe
# to run on two threads at once ("graphs differed across invocations" when it was tried).
_EXPORT_LOCK = threading.Lock()


class CompiledModule:
    """Calls a torch module (tensors in, a tuple of tensors out) through OpenVINO.

    Each input shape is exported once (a trace of ``module`` at that shape), saved under
    ``cache_dir/<key>/<runtime>-<version>/<shape>`` and compiled; later processes read it back
    from there. At most ``max_shapes`` compiled graphs stay in memory (least recently used
    first out). Not thread-safe for concurrent calls of one shape beyond what the runtime allows;
    the services call it from their single inference thread.

    A call whose shape has no graph yet runs the module eagerly and exports that shape in a
    background thread for the calls after it: an export (a trace and a conversion) costs more
    than many eager passes, and a user's first photo of a new aspect ratio must not wait for it.
    :meth:`prepare` exports in the foreground (the native square, at load).
    """

    def __init__(self, module: torch.nn.Module, runtime: Runtime, *, cache_dir: Path | str,
                 key: str, threads: int, max_shapes: int = 4,
                 dtype: torch.dtype = torch.float32) -> None:
        if runtime is not Runtime.OPENVINO:
            raise ValueError(f"CompiledModule needs openvino, not {runtime!r}")
        self.module = module.eval()
        self.runtime = runtime
        #: The dtype the compiled graph computes in (its weights are exported in float32).
        self.dtype = dtype
        self.version = runtime_version(runtime)
        self.threads = max(1, threads)
        self.max_shapes = max(1, max_shapes)
        self.cache_dir = Path(cache_dir).expanduser() / key / f"{runtime.value}-{self.version}"
        self._compiled: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        #: How each shape was obtained, for tests and logs: "exported" or "cached".
        self.sources: dict[tuple, str] = {}
        # Shapes being exported in the background (one export per shape at a time).
        self._pending: dict[tuple, threading.Thread] = {}

    @property
    def label(self) -> str:
        return f"{self.runtime.value} {self.version}"

    @property
    def precision_hint(self) -> str:
        """OpenVINO's INFERENCE_PRECISION_HINT for :attr:`dtype`."""
        return "bf16" if self.dtype == torch.bfloat16 else "f32"

    def prepare(self, *example: torch.Tensor) -> None:
        """Export (or read back) and compile the graph for these inputs' shapes now, and run it
        once: a graph's first inference allocates its buffers and runs slower than the next, a
        cost that belongs to the load (before readiness), not to the first request."""
        runner = self._runner_for(example)
        runner([np.ascontiguousarray(t.detach().cpu().float().numpy()) for t in example])

    def export_ahead(self, examples: Sequence[Sequence[torch.Tensor]]) -> list[tuple]:
        """Export the graph of every example's shapes that is not on the disk yet, without
        compiling it (it compiles from the disk on first use, in about a second, while an export
        takes tens of seconds). Returns the shapes exported now."""
        exported = []
        for example in examples:
            shape = self._shape(example)
            folder = self._folder(shape)
            if (folder / "done").exists():
                continue
            started = time.perf_counter()
            self._export(folder, example)
            exported.append(shape)
            log.info("%s graph for input %s exported ahead in %.1f s", self.label, shape,
                     time.perf_counter() - started)
        return exported

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        runner = self._ready_runner(inputs)
        if runner is None:
            self._export_in_background(inputs)
            with torch.inference_mode():
                return tuple(self.module(*inputs))
        arrays = [np.ascontiguousarray(t.detach().cpu().float().numpy()) for t in inputs]
        outputs = runner(arrays)
        return tuple(torch.from_numpy(np.asarray(out)) for out in outputs)

    def wait_for_exports(self, timeout_s: float | None = None) -> None:
        """Until the background exports started so far have finished (tests, benches)."""
        with self._lock:
            threads = list(self._pending.values())
        for thread in threads:
            thread.join(timeout_s)

    def _shape(self, inputs: Sequence[torch.Tensor]) -> tuple:
        """The key of the graph that serves these inputs: their shapes."""
        return tuple(tuple(t.shape) for t in inputs)

    def _ready_runner(self, inputs: Sequence[torch.Tensor]):
        """The compiled graph for these inputs' shapes if it is in memory or on disk, else None."""
        shape = self._shape(inputs)
        with self._lock:
            runner = self._compiled.get(shape)
            if runner is not None:
                self._compiled.move_to_end(shape)
                return runner
        if shape in self._pending or not (self._folder(shape) / "done").exists():
            return None
        return self._runner_for(inputs)

    def _export_in_background(self, inputs: Sequence[torch.Tensor]) -> None:
        shape = self._shape(inputs)
        with self._lock:
            if shape in self._pending:
                return
            example = tuple(t.detach().cpu().clone() for t in inputs)

            def export() -> None:
                # Outside the lock: calls of the shapes already compiled go on meanwhile.
                try:
                    runner = self._load_or_export(shape, example, private_copy=True)
                except Exception:
                    # Eager keeps serving this shape; the next call of it tries again.
                    log.exception("%s export for input %s failed", self.label, shape)
                    runner = None
                with self._lock:
                    self._pending.pop(shape, None)
                    if runner is not None:
                        self._remember(shape, runner)

            thread = threading.Thread(target=export, name=f"export-{shape}", daemon=True)
            self._pending[shape] = thread
        thread.start()

    def _folder(self, shape: tuple) -> Path:
        return self.cache_dir / "x".join("-".join(map(str, s)) for s in shape)

    def _runner_for(self, inputs: Sequence[torch.Tensor]):
        shape = self._shape(inputs)
        with self._lock:
            runner = self._compiled.get(shape)
            if runner is not None:
                self._compiled.move_to_end(shape)
                return runner
            runner = self._load_or_export(shape, inputs)
            self._remember(shape, runner)
            return runner

    def _remember(self, shape: tuple, runner) -> None:
        """Keep ``runner`` (the lock held), evicting the least recently used beyond max_shapes."""
        self._compiled[shape] = runner
        self._compiled.move_to_end(shape)
        while len(self._compiled) > self.max_shapes:
            self._compiled.popitem(last=False)

    def _load_or_export(self, shape: tuple, inputs: Sequence[torch.Tensor], *,
                        private_copy: bool = False):
        folder = self._folder(shape)
        started = time.perf_counter()
        if (folder / "done").exists():
            source = "cached"
        else:
            self._export(folder, inputs, private_copy=private_copy)
            source = "exported"
        runner = self._compile(folder)
        self.sources[shape] = source
        log.info("%s graph for input %s %s and compiled in %.1f s (%s)", self.label, shape,
                 source, time.perf_counter() - started, folder)
        return runner

    def _export(self, folder: Path, inputs: Sequence[torch.Tensor], *,
                private_copy: bool = False) -> None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # A background export traces its own copy: the inference thread keeps running the
        # module eagerly meanwhile, and a trace must see nobody else inside it.
        module = copy.deepcopy(self.module) if private_copy else self.module
        # Written beside its final place and renamed, so a crash never leaves a half graph that a
        # later start would trust; two processes exporting at once both finish, one rename wins.
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
        try:
            example = tuple(t.detach().cpu().float() for t in inputs)
            with _EXPORT_LOCK, torch.no_grad():
                ov = import_openvino()
                model = ov.convert_model(module, example_input=example)
                # float32 weights as they are: the default halves them to float16.
                ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
            del model, module  # the trace's graph and a background export's copy, then their heap
            return_freed_memory()
            (staging / "done").touch()
            try:
                staging.rename(folder)
            except OSError:
                if not (folder / "done").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _compile(self, folder: Path):
        ov = import_openvino()
        core = ov.Core()
        # The precision explicitly: on a CPU with bfloat16 support OpenVINO would pick bfloat16
        # by itself, and float32 must stay float32 when the service asks for it.
        compiled = core.compile_model(core.read_model(folder / "model.xml"), "CPU", {
            "INFERENCE_PRECISION_HINT": self.precision_hint,
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
        })
        request = compiled.create_infer_request()

        def run_openvino(arrays: list[np.ndarray]) -> list[np.ndarray]:
            results = request.infer(arrays)
            # Copies: the request reuses its output buffers on the next call.
            return [np.array(results[out]) for out in compiled.outputs]

        return run_openvino


def relative_l2(output: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> float:
    """||output - reference|| / ||reference||: how the runtimes are compared with eager PyTorch."""
    out = np.asarray(output, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def compile_or_none(module: torch.nn.Module, runtime: Runtime, *, cache_dir: Path | str, key: str,
                    threads: int, example: Sequence[torch.Tensor], name: str,
                    dtype: torch.dtype = torch.float32) -> CompiledModule | None:
    """``module`` compiled for ``runtime`` and ready for ``example``'s shapes, or None (run it
    eagerly) when ``runtime`` is torch or the export fails: a model whose graph an exporter
    cannot trace still serves, only at eager speed (the failure is logged once, here)."""
    if runtime is Runtime.TORCH:
        return None
    compiled = CompiledModule(module, runtime, cache_dir=cache_dir, key=key, threads=threads,
                              dtype=dtype)
    try:
        compiled.prepare(*example)
    except Exception:
        log.warning("%s: the %s export failed; it runs on eager PyTorch", name, runtime.value,
                    exc_info=True)
        return None
    return compiled
