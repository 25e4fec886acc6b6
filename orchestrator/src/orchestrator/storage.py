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

The files are the record; listing them goes through an index in memory (:class:`RecordIndex`),
built from the files when the store opens and updated by every write and delete made through
the store, so a page of ``GET /generations`` reads the page's records, not the whole store. The
lock above is what makes an index in memory safe: no other process writes the directory. A
record changed behind the store's back (edited or removed by hand) shows as it is on disk, a
removed one drops out of the index when a page meets it; one added by hand appears at the next
start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from sortedcontainers import SortedList

from orchestrator import formats
from orchestrator.enums import ACTIVE, Status
from orchestrator.records import GenerationRecord, JobBookkeeping

log = logging.getLogger(__name__)

METADATA = "metadata.json"
# Files a completed generation has, in the order they are committed.
STORED_ASSETS = ("image.png", "depth.png", "segments.png", formats.CLOUD_FILE)
# Every file of a generation: the stored ones and those made from the cloud on request
# (orchestrator.formats).
ASSETS = STORED_ASSETS + formats.DERIVED_ASSETS
# Locks that serialise the first build of a cached asset: striped, so that their number stays
# bounded; two assets sharing a stripe only wait for each other's first build.
_BUILD_LOCK_STRIPES = 64
INTERRUPTED = "interrupted"

_ID = re.compile(r"[0-9a-f]{32}")


def valid_id(generation_id: str) -> bool:
    return _ID.fullmatch(generation_id) is not None


class DataDirInUse(RuntimeError):
    pass


class _IndexFields(BaseModel):
    """The fields of a record the index keeps, parsed without the rest of the JSON."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: Status
    created_at: str = ""
    job: JobBookkeeping = JobBookkeeping()


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """What listing and restart need of a record (small: there is one per stored record)."""

    id: str
    status: Status
    created_at: str
    idempotency_key: str | None = None
    fingerprint: str | None = None

    @classmethod
    def of(cls, record: GenerationRecord | _IndexFields) -> IndexEntry:
        key = record.job.idempotency_key
        # Status members are singletons: one per status for all entries, not one per record.
        return cls(record.id, Status(record.status), record.created_at, key,
                   record.job.fingerprint if key else None)

    @property
    def key(self) -> tuple[str, str]:
        # The listing's order: newest first by creation time, then by id (keys sort ascending).
        return (self.created_at, self.id)


class RecordIndex:
    """Every record's :class:`IndexEntry`, sorted by creation, overall and per status.

    Thread-safe: the sync routes read it from the threadpool while the event loop writes."""

    def __init__(self, entries: list[IndexEntry] = ()) -> None:
        self._lock = threading.Lock()
        self._entries = {entry.id: entry for entry in entries}
        # Sorted once (not entry by entry) when built from the files.
        self._order = SortedList(entry.key for entry in self._entries.values())
        self._by_status: dict[str, SortedList] = {}
        for status in {entry.status for entry in self._entries.values()}:
            self._by_status[status] = SortedList(
                entry.key for entry in self._entries.values() if entry.status == status)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: IndexEntry) -> None:
        with self._lock:
            self._remove(entry.id)
            self._entries[entry.id] = entry
            self._order.add(entry.key)
            self._by_status.setdefault(entry.status, SortedList()).add(entry.key)

    def remove(self, generation_id: str) -> None:
        with self._lock:
            self._remove(generation_id)

    def _remove(self, generation_id: str) -> None:
        old = self._entries.pop(generation_id, None)
        if old is not None:
            self._order.discard(old.key)
            self._by_status[old.status].discard(old.key)

    def page(self, limit: int, offset: int, status: str | None = None) -> tuple[list[str], int]:
        """The ids of one page, newest first, and how many records there are in all."""
        with self._lock:
            keys = self._order if status is None else self._by_status.get(status, SortedList())
            total = len(keys)
            stop = max(total - offset, 0)
            start = max(stop - limit, 0)
            return [key[1] for key in reversed(keys[start:stop])], total

    def entries(self, status: str | None = None) -> list[IndexEntry]:
        with self._lock:
            if status is None:
                return list(self._entries.values())
            return [e for e in self._entries.values() if e.status == status]


class GenerationStore:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "generations"
        self.tmp = self.data_dir / "tmp"
        self._lock_file = None
        self._build_locks = [threading.Lock() for _ in range(_BUILD_LOCK_STRIPES)]
        self.index = RecordIndex()

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
        self.rebuild_index()

    def rebuild_index(self) -> None:
        """Read every record's index fields (only those: the rest of the JSON is skipped)."""
        entries = []
        with os.scandir(self.root) as folders:
            for folder in folders:
                if not valid_id(folder.name):
                    continue
                try:
                    fields = _IndexFields.model_validate_json(
                        (self.root / folder.name / METADATA).read_bytes())
                except FileNotFoundError:
                    continue
                except (OSError, ValidationError) as exc:
                    log.warning("unreadable record %s: %s", folder.name, exc)
                    continue
                if fields.id == folder.name:
                    entries.append(IndexEntry.of(fields))
        self.index = RecordIndex(entries)

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def recover_interrupted(self, now: str) -> list[GenerationRecord]:
        """Mark every record left queued or running by a previous process ``failed:
        interrupted`` and remove its partial files. Returns the records it changed."""
        changed = []
        active = [e.id for status in ACTIVE for e in self.index.entries(status)]
        for generation_id in active:
            record = self.read_record(generation_id)
            if record is None or record.status not in ACTIVE:
                continue
            folder = self.root / record.id
            for path in folder.iterdir():
                if path.name != METADATA:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            # Unknown which events the previous process sent: replay the end always.
            job = record.job.model_copy(update={"last_event_id": None})
            record = record.model_copy(update=dict(
                status=Status.FAILED, stage=None, error=INTERRUPTED, error_status=503,
                updated_at=now, finished_at=now, job=job))
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

    def write_record(self, record: GenerationRecord) -> None:
        folder = self.folder(record.id)
        folder.mkdir(exist_ok=True)
        _atomic_write(folder / METADATA, record.to_json())
        self.index.put(IndexEntry.of(record))

    def read_record(self, generation_id: str) -> GenerationRecord | None:
        if not valid_id(generation_id):
            return None
        try:
            return GenerationRecord.from_json((self.root / generation_id / METADATA).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # ValidationError is a ValueError
            log.warning("unreadable record %s: %s", generation_id, exc)
            return None

    def page(self, limit: int, offset: int = 0,
             status: str | None = None) -> tuple[list[GenerationRecord], int]:
        """One page of records, newest first (optionally only those with ``status``), and
        how many there are in all. Reads the page's files only."""
        ids, total = self.index.page(limit, offset, status)
        records = []
        for generation_id in ids:
            record = self.read_record(generation_id)
            if record is None:
                if not (self.root / generation_id / METADATA).exists():
                    self.index.remove(generation_id)  # removed behind the store's back
                continue
            records.append(record)
        return records, total

    def list_records(self) -> list[GenerationRecord]:
        """Every record, newest first (reads them all: for tools and tests, not requests)."""
        return self.page(len(self.index) or 1)[0]

    def delete(self, generation_id: str) -> bool:
        folder = self.root / generation_id
        if not valid_id(generation_id) or not folder.is_dir():
            return False
        # One rename makes it disappear at once; the slow removal happens out of sight.
        doomed = Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"deleted-{generation_id}-"))
        folder.rename(doomed / generation_id)
        self.index.remove(generation_id)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    # -- assets -----------------------------------------------------------------------------

    def staging(self, generation_id: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp, prefix=f"staging-{generation_id}-"))

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def commit(self, staging: Path, record: GenerationRecord) -> None:
        """Move the staged assets into place, then write the completed record (the commit).

        Synchronous on purpose: the caller runs it without an ``await`` in between, so a
        cancellation lands either before the commit (nothing stored) or after it (complete).
        """
        folder = self.folder(record.id)
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
        if record is None or record.status != Status.COMPLETED:
            return None
        path = self.root / generation_id / name
        return path if path.is_file() else None


    def derived_asset(self, generation_id: str, name: str,
                      build: Callable[[Path, GenerationRecord], bytes]) -> Path | None:
        """The cached file ``name`` of a completed generation, built on first use as
        ``build(stored pointcloud.bin path, record)``; None if the generation has no files.

        Blocking (run it in a worker thread). Concurrent first requests build it once: the
        build runs under a lock and the file appears by an atomic rename, so no reader ever
        sees a half-written file; later requests find it and take no lock.
        """
        if name not in formats.CACHED_FILES:
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
