"""The model lifecycle every service shares: load once behind a lock, remember a failure, report it,
retry it on a later request.

A service's model subclasses :class:`ManagedModel`, implements the blocking ``_load()`` (run in a
worker thread so the event loop keeps answering health checks while weights download) and its own
``predict()``, which calls ``await self.ensure_loaded()`` first.

Whoever must follow the model's state (the service's readiness, see ``scene_rpc.service``)
registers an observer with :meth:`ManagedModel.add_observer` instead of polling it: it is called
on the event loop each time a load starts, succeeds or fails.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from scene.common.v1 import common_pb2
from scene_rpc import metrics
from scene_rpc.errors import ModelUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """What a successful ``_load()`` reports about the model it loaded."""

    model_id: str
    device: str
    dtype: str
    fallback: bool = False


class ManagedModel(abc.ABC):
    #: What the model is for inside its service ("depth", "sam", "semantic", ...).
    role: str = "model"

    def __init__(self, requested_model_id: str, *, retry_interval_s: float = 0.0) -> None:
        self.requested_model_id = requested_model_id
        # After a failure, requests within this interval fail fast with the remembered reason
        # instead of each starting a new (possibly slow) load attempt.
        self.retry_interval_s = retry_interval_s
        self._lock = asyncio.Lock()
        self._result: LoadResult | None = None
        self._loading = False
        self._load_time_s = 0.0
        self._last_error = ""
        self._last_failure_at = float("-inf")
        self._attempt: asyncio.Future[LoadResult] | None = None
        self._observers: list[Callable[[ManagedModel], None]] = []
        metrics.model_state(self.role, "unloaded")

    @abc.abstractmethod
    def _load(self) -> LoadResult:
        """Load the weights (blocking). Raise on failure: the message is the reported reason."""

    @property
    def ready(self) -> bool:
        return self._result is not None

    @property
    def last_error(self) -> str:
        return self._last_error

    @property
    def failed(self) -> bool:
        """The last load attempt failed and none has succeeded since."""
        return self._result is None and bool(self._last_error)

    @property
    def loading(self) -> bool:
        return self._loading

    def seconds_until_retry(self) -> float:
        """After a failure: how long until :meth:`load` tries again instead of failing fast."""
        since_failure = time.monotonic() - self._last_failure_at
        return max(0.0, self.retry_interval_s - since_failure)

    def add_observer(self, observer: Callable[[ManagedModel], None]) -> None:
        """Call ``observer(model)`` on the event loop whenever a load starts, succeeds or fails."""
        self._observers.append(observer)

    def _notify(self) -> None:
        for observer in self._observers:
            try:
                observer(self)
            except Exception:
                log.exception("observer of the %s model failed", self.role)

    async def load(self) -> LoadResult:
        """Load the model unless it is loaded. Concurrent callers wait for the one load."""
        if self._result is not None:
            return self._result
        async with self._lock:
            if self._result is not None:
                return self._result
            if self._attempt is None:
                since_failure = time.monotonic() - self._last_failure_at
                if since_failure < self.retry_interval_s:
                    raise ModelUnavailable(
                        f"{self.role} model {self.requested_model_id!r} failed to load "
                        f"{since_failure:.0f}s ago (retrying after {self.retry_interval_s:.0f}s): "
                        f"{self._last_error}"
                    )
                self._attempt = asyncio.ensure_future(self._attempt_load())
                # Retrieved here so a failed load nobody waits for any more is not logged twice.
                self._attempt.add_done_callback(lambda t: t.cancelled() or t.exception())
            attempt = self._attempt
        # Shielded: a caller that gives up (a deadline, a cancelled stream) leaves the load
        # running for the next caller instead of abandoning it half done to start over.
        return await asyncio.shield(attempt)

    async def _attempt_load(self) -> LoadResult:
        self._loading = True
        metrics.model_state(self.role, "loading")
        self._notify()
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(self._load)
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._last_failure_at = time.monotonic()
            metrics.model_load_failed(self.role)
            log.error("loading %s model %r failed: %s", self.role, self.requested_model_id,
                      self._last_error)
            self._loading = False
            self._notify()
            raise ModelUnavailable(
                f"{self.role} model {self.requested_model_id!r} could not be loaded: "
                f"{self._last_error}"
            ) from exc
        finally:
            self._loading = False
            self._attempt = None
        self._load_time_s = time.perf_counter() - started
        self._last_error = ""
        self._result = result
        metrics.model_loaded(self.role, self._load_time_s)
        log.info("loaded %s model %s on %s (%s) in %.1fs%s", self.role, result.model_id,
                 result.device, result.dtype, self._load_time_s,
                 " (fallback)" if result.fallback else "")
        self._notify()
        return result

    async def ensure_loaded(self) -> LoadResult:
        return await self.load()

    def info(self) -> common_pb2.ModelInfo:
        result = self._result
        return common_pb2.ModelInfo(
            role=self.role,
            requested_model_id=self.requested_model_id,
            model_id=result.model_id if result else "",
            loaded=result is not None,
            loading=self._loading,
            fallback=result.fallback if result else False,
            device=result.device if result else "",
            dtype=result.dtype if result else "",
            load_time_s=self._load_time_s,
            last_error=self._last_error,
        )
