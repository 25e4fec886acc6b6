"""Every generation on disk: ``DATA_DIR/generations/{id}/`` with its assets and ``metadata.json``.

``metadata.json`` is the record of the generation and of its job, and the commit point: the
assets of a generation are written into a staging directory under ``DATA_DIR/tmp/``, moved into
the generation's directory, and only then is ``metadata.json`` replaced (atomically) by one that
says ``completed``. Readers serve assets only of a completed record, so a crash at any moment
never leaves a half generation that looks complete; at the next start every record still
``queued`` or ``running`` becomes ``failed`` with the error ``interrupted`` and loses whatever
partial files it had.

One orchestrator process owns a data directory (an exclusive lock on ``DATA_DIR/.lock``): the
restart scan would otherwise mark another live process's jobs as interrupted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METADATA = "metadata.json"
# Files a completed generation has, in the order they are committed.
STORED_ASSETS = ("image.png", "depth.png", "segments.png", "pointcloud.bin")
# Files produced on request from the stored ones.
DERIVED_ASSETS = ("pointcloud.ply", "scene.glb", "scene.splat", "gaussians.ply")
# Derived files built once and kept beside the stored ones (see GenerationStore.derived_asset).
CACHED_ASSETS = ("scene.glb", "scene.splat", "gaussians.ply")
# Locks that serialise the first build of a cached asset: striped, so that their number stays
# bounded; two assets sharing a stripe only wait for each other's first build.
_BUILD_LOCK_STRIPES = 64
# Files kept beside the stored ones once made that are not assets of their own (the grid
# variant is pointcloud.bin in another format: GET pointcloud.bin?format=grid).
CACHED_FILES = (*CACHED_ASSETS, "pointcloud.grid.bin")
ASSETS = STORED_ASSETS + DERIVED_ASSETS
ACTIVE = ("queued", "running")
INTERRUPTED = "interrupted"

_ID = re.compile(r"[0-9a-f]{32}")


def valid_id(generation_id: str) -> bool:
    return _ID.fullmatch(generation_id) is not None


class DataDirInUse(RuntimeError):
    pass


class GenerationStore:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "generations"
        self.tmp = self.data_dir / "tmp"
        self._lock_file = None
        self._build_locks = [threading.Lock() for _ in range(_BUILD_LOCK_STRIPES)]

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        lock = open(self.data_dir / ".lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise DataDirInUse(
                f"{self.data_dir.resolve()} is in use by another orchestrator process") from None
        self._lock_file = lock
        # Staging directories of generations that never committed: nothing refers to them.
        for leftover in self.tmp.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def recover_interrupted(self, now: str) -> list[dict[str, Any]]:
        """Mark every record left queued or running by a previous process ``failed:
        interrupted`` and remove its partial files. Returns the records it changed."""
        changed = []
        for record in self.iter_records():
            if record.get("status") not in ACTIVE:
                continue
            folder = self.root / record["id"]
            for path in folder.iterdir():
                if path.name != METADATA:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            record.update(status="failed", error=INTERRUPTED, error_status=503,
                          updated_at=now, finished_at=now, queue_position=None,
                          # Unknown which events the previous process sent: replay the end always.
                          last_event_id=None)
            self.write_record(record)
            changed.append(record)
        if changed:
            log.warning("marked %d interrupted generation(s) failed", len(changed))
        return changed

    # -- records ----------------------------------------------------------------------------

    def folder(self, generation_id: str) -> Path:
        if not valid_id(generation_id):
            raise ValueError(f"not a generation id: {generation_id!r}")
        return self.root / generation_id

    def write_record(self, record: dict[str, Any]) -> None:
        folder = self.folder(record["id"])
        folder.mkdir(exist_ok=True)
        _atomic_write(folder / METADATA, json.dumps(record, indent=1, allow_nan=False).encode())

    def read_record(self, generation_id: str) -> dict[str, Any] | None:
        if not valid_id(generation_id):
            return None
        try:
            return json.loads((self.root / generation_id / METADATA).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("unreadable record %s: %s", generation_id, exc)
            return None

    def iter_records(self):
        for folder in self.root.iterdir():
            if valid_id(folder.name):
                record = self.read_record(folder.name)
                if record is not None:
                    yield record

    def list_records(self) -> list[dict[str, Any]]:
        """Every record, newest first."""
        records = list(self.iter_records())
        records.sort(key=lambda r: (r.get("created_at", ""), r["id"]), reverse=True)
        return records

    def delete(self, generation_id: str) -> bool:
        folder = self.root / generation_id
        if not valid_id(generation_id) or not folder.is_dir():
            return False
        # One rename makes it disappear at once; the slow removal happens out of sight.
        doomed = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"deleted-{generation_id}-"))
        folder.rename(doomed / generation_id)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    # -- assets -----------------------------------------------------------------------------

    def staging(self, generation_id: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"staging-{generation_id}-"))

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def commit(self, staging: Path, record: dict[str, Any]) -> None:
        """Move the staged assets into place, then write the completed record (the commit).

        Synchronous on purpose: the caller runs it without an ``await`` in between, so a
        cancellation lands either before the commit (nothing stored) or after it (complete).
        """
        folder = self.folder(record["id"])
        folder.mkdir(exist_ok=True)
        moved = []
        try:
            for name in STORED_ASSETS:
                os.replace(staging / name, folder / name)
                moved.append(folder / name)
            self.write_record(record)
            _fsync_dir(folder)
        except BaseException:
            for path in moved:
                path.unlink(missing_ok=True)
            raise
        finally:
            self.discard(staging)

    def asset_path(self, generation_id: str, name: str) -> Path | None:
        """The stored file ``name`` of a completed generation, or None. Only names in the fixed
        set are ever joined to a path, so no request can reach outside the generation."""
        if name not in STORED_ASSETS:
            return None
        record = self.read_record(generation_id)
        if record is None or record.get("status") != "completed":
            return None
        path = self.root / generation_id / name
        return path if path.is_file() else None


    def derived_asset(self, generation_id: str, name: str,
                      build: Callable[[Path, dict[str, Any]], bytes]) -> Path | None:
        """The cached file ``name`` of a completed generation, built on first use as
        ``build(stored pointcloud.bin path, record)``; None if the generation has no files.

        Blocking (run it in a worker thread). Concurrent first requests build it once: the
        build runs under a lock and the file appears by an atomic rename, so no reader ever
        sees a half-written file; later requests find it and take no lock.
        """
        if name not in CACHED_FILES:
            return None
        source = self.asset_path(generation_id, "pointcloud.bin")
        if source is None:
            return None
        target = source.parent / name
        if target.is_file():
            return target
        stripe = zlib.crc32(f"{generation_id}/{name}".encode()) % _BUILD_LOCK_STRIPES
        with self._build_locks[stripe]:
            if target.is_file():
                return target
            record = self.read_record(generation_id)
            if record is None:
                return None
            data = build(source, record)
            try:
                _atomic_write(target, data)
            except FileNotFoundError:  # deleted meanwhile
                return None
        return target


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
