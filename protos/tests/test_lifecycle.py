import asyncio
import threading

import pytest

from scene_rpc.errors import ModelUnavailable
from scene_rpc.lifecycle import LoadResult, ManagedModel


class CountingModel(ManagedModel):
    role = "test"

    def __init__(self, fail_times: int = 0, **kwargs) -> None:
        super().__init__("some/model", **kwargs)
        self.calls = 0
        self.fail_times = fail_times
        self.release = threading.Event()
        self.release.set()

    def _load(self) -> LoadResult:
        self.calls += 1
        self.release.wait(5)
        if self.calls <= self.fail_times:
            raise OSError("weights not found")
        return LoadResult(model_id="some/model", device="cpu", dtype="float32")


async def test_concurrent_first_calls_share_one_load():
    model = CountingModel()
    model.release.clear()
    waiters = [asyncio.create_task(model.load()) for _ in range(8)]
    await asyncio.sleep(0.05)
    assert model.info().loading
    model.release.set()
    await asyncio.gather(*waiters)
    assert model.calls == 1 and model.ready


async def test_failure_is_remembered_reported_and_retried():
    model = CountingModel(fail_times=1)
    with pytest.raises(ModelUnavailable, match="weights not found"):
        await model.load()
    info = model.info()
    assert not info.loaded and "OSError: weights not found" in info.last_error
    await model.load()
    info = model.info()
    assert info.loaded and info.last_error == "" and info.device == "cpu"


async def test_retry_interval_fails_fast_with_the_remembered_reason():
    model = CountingModel(fail_times=5, retry_interval_s=60)
    with pytest.raises(ModelUnavailable):
        await model.load()
    with pytest.raises(ModelUnavailable, match="retrying after 60s"):
        await model.load()
    assert model.calls == 1


async def test_a_caller_that_gives_up_does_not_abandon_the_load():
    model = CountingModel()
    model.release.clear()
    impatient = asyncio.create_task(model.load())
    await asyncio.sleep(0.05)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    patient = asyncio.create_task(model.load())
    await asyncio.sleep(0.05)
    model.release.set()
    await patient
    assert model.calls == 1 and model.ready


async def test_observers_hear_every_load_start_success_and_failure():
    model = CountingModel(fail_times=1)
    heard = []
    model.add_observer(lambda m: heard.append((m.loading, m.ready, m.failed)))
    with pytest.raises(ModelUnavailable):
        await model.load()
    await model.load()
    assert heard == [(True, False, False), (False, False, True),
                     (True, False, True), (False, True, False)]
