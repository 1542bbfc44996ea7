"""Nothing uploaded outlives its use: the app's own sweeper of Gradio's upload folder, and a
disk quota for uploads in flight.

Gradio keeps every upload, every example copy and every output file in one folder
(``GRADIO_TEMP_DIR``, by default ``/tmp/gradio``). Its own cleanup (``Blocks(delete_cache=...)``)
cannot be relied on: in Gradio 6.31, ``delete_files_created_by_app`` iterates over
``Blocks.upload_file_set`` in a worker thread while the ``/upload`` route adds to that set on the
event loop, so an upload that lands during a sweep raises "Set changed size during iteration";
the exception ends ``delete_files_on_schedule`` and nothing is deleted again until the process
restarts. It also knows only the files it registered, so the empty ``tmp*`` files that an aborted
multipart upload leaves behind are never removed.

:class:`UploadSweeper` therefore walks the whole folder itself, from a thread of its own, and
deletes every file older than ``max_age`` (by the later of its creation, modification and last
use by a prediction), whether or not a prediction ever used it, except the cached example files.
:class:`UploadQuota` refuses an upload, before Gradio reads its body, when the folder plus the
uploads being received would pass the quota: the folder stays bounded even under a burst.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["ExampleFiles", "OutputFiles", "UploadQuota", "UploadQuotaMiddleware", "UploadSweeper"]

logger = logging.getLogger(__name__)

OUTPUTS_SUBDIR = "hf_covid_outputs"
"""Sub-folder of the upload folder where :class:`OutputFiles` writes."""


class UploadQuota:
    """Bytes held in the upload folder plus bytes being uploaded, against a limit.

    Args:
        limit_bytes: most bytes held at once.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._stored = 0
        self._receiving = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        """Bytes stored (at the last count) plus bytes being received."""
        with self._lock:
            return self._stored + self._receiving

    def reserve(self, size: int) -> bool:
        """Reserve room for an upload of ``size`` bytes; False when the quota would be passed."""
        with self._lock:
            if self._stored + self._receiving + size > self.limit_bytes:
                return False
            self._receiving += size
            return True

    def release(self, size: int, *, stored: bool) -> None:
        """An upload of ``size`` bytes has ended; if ``stored``, count it as stored until the
        next recount (a refused upload left nothing)."""
        with self._lock:
            self._receiving -= size
            if stored:
                self._stored += size

    def recount(self, stored_bytes: int) -> None:
        """Set the bytes stored in the folder to what the sweeper counted."""
        with self._lock:
            self._stored = stored_bytes


class UploadQuotaMiddleware:
    """ASGI middleware that refuses an upload (``POST .../upload``) the quota has no room for,
    with HTTP 507 and a message saying so, before any of its body is read.

    A request without ``Content-Length`` is refused too (HTTP 411): its size cannot be reserved.

    Args:
        app: the ASGI app (Gradio's).
        quota: the shared :class:`UploadQuota`.
    """

    def __init__(self, app: Any, quota: UploadQuota) -> None:
        self.app = app
        self.quota = quota

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/").endswith("/upload")
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        try:
            size = int(headers[b"content-length"])
        except (KeyError, ValueError):
            await _refuse(send, 411, "Upload refused: the request must state its Content-Length.")
            return
        if not self.quota.reserve(size):
            limit = self.quota.limit_bytes / 2**20
            await _refuse(
                send,
                507,
                f"Upload refused: the server's space for uploads ({limit:,.0f} MiB) is full. "
                "Uploads are deleted a short time after use; please try again in a minute.",
            )
            return
        statuses = []

        async def send_and_note_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.quota.release(size, stored=bool(statuses) and statuses[0] < 400)


async def _refuse(send: Callable, status: int, message: str) -> None:
    body = message.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ExampleFiles:
    """Recognises Gradio's cached copies of the example files, by size and SHA-256 of content.

    Gradio 6.31 copies each example into its upload folder at start-up (under a content hash)
    and records nothing that marks the copy as an example (``keep_in_cache`` stays empty for
    ``gr.File`` examples): the page then offers a path that a sweep must not delete. Matching
    the content does not depend on how Gradio names its copies.

    Args:
        paths: the example files.
    """

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self._digests: dict[int, set[str]] = {}
        for path in paths:
            data = Path(path).read_bytes()
            self._digests.setdefault(len(data), set()).add(hashlib.sha256(data).hexdigest())

    def __call__(self, path: Path, status: os.stat_result) -> bool:
        """Whether the file at ``path`` (with ``status``) holds an example's bytes."""
        digests = self._digests.get(status.st_size)
        if not digests:
            return False
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest() in digests
        except OSError:
            return False


class UploadSweeper:
    """Deletes every file in the upload folder ``max_age`` seconds after its creation,
    modification or last use, checking every ``every`` seconds from a daemon thread.

    Uploads age out rather than being deleted right after their request because Gradio stores
    them by content hash: two requests with the same file share one path.

    Args:
        folder: Gradio's upload folder (``gradio.utils.get_upload_folder()``).
        every: seconds between sweeps.
        max_age: seconds after its last use that a file is deleted.
        keep: whether a file (path, ``lstat`` result) is never to be deleted (the cached example
            files, shared by every user; :class:`ExampleFiles`).
        forget: called with the deleted paths (to drop them from Gradio's file registries, which
            would otherwise grow for as long as the app runs).
        quota: recounted with the bytes left in the folder after each sweep.
        clock: the time now, in seconds since the epoch (tests move it forward).

    A file's age counts from the latest of its status change (``st_ctime``: Gradio copies an
    upload with its original modification time, so only this says when it arrived), its
    modification and its last recorded use.
    """

    def __init__(
        self,
        folder: Path,
        every: float,
        max_age: float,
        keep: Callable[[Path, os.stat_result], bool],
        *,
        forget: Callable[[set[str]], None] | None = None,
        quota: UploadQuota | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = Path(folder)
        self.every = every
        self.max_age = max_age
        self.keep = keep
        self.forget = forget
        self.quota = quota
        self.clock = clock
        self.sweeps = 0
        self._uses: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sweeping in the background (until :meth:`stop` or the process exits)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="hf_covid-upload-sweeper", daemon=True
            )
            self._thread.start()

    def stop(self, *, delete_all: bool = True) -> None:
        """Stop sweeping; with ``delete_all``, delete every file but the examples first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.every))
        if delete_all:
            self.sweep(max_age=float("-inf"))

    def used(self, path: str | Path) -> None:
        """Record that a request read the file at ``path`` now."""
        with self._lock:
            self._uses[os.path.abspath(path)] = self.clock()

    def sweep(self, *, max_age: float | None = None) -> set[str]:
        """Delete what is older than ``max_age`` (default: the sweeper's) now; returns the
        deleted paths."""
        cutoff = self.clock() - (self.max_age if max_age is None else max_age)
        deleted: set[str] = set()
        remaining_bytes = 0
        with self._lock:
            uses = dict(self._uses)
        for path in _files_under(self.folder):
            name = str(path)
            try:
                status = path.lstat()
                last_use = max(status.st_mtime, status.st_ctime, uses.get(name, 0.0))
                if last_use >= cutoff or self.keep(path, status):
                    remaining_bytes += status.st_size
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:  # one undeletable file must not stop the sweep
                logger.warning("cannot delete %s: %s", name, error)
                continue
            deleted.add(name)
        _remove_empty_folders(self.folder, cutoff, keep_names={OUTPUTS_SUBDIR})
        with self._lock:
            for name in deleted:
                self._uses.pop(name, None)
            for name in [name for name, used in self._uses.items() if used < cutoff]:
                del self._uses[name]  # a recorded use of a file that is already gone
        if self.quota is not None:
            self.quota.recount(remaining_bytes)
        if deleted and self.forget is not None:
            self.forget(deleted)
        self.sweeps += 1
        return deleted

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sweep()
            except Exception:  # keep sweeping: one failure must not end the cleanup
                logger.exception("upload sweep failed")


def _files_under(folder: Path) -> Iterable[Path]:
    """Every file (or link) under ``folder``, as absolute paths spelled as Gradio spells them
    (not resolved), without following links into folders."""
    if not folder.is_dir():
        return []
    root = Path(os.path.abspath(folder))
    return [path for path in root.rglob("*") if path.is_symlink() or path.is_file()]


def _remove_empty_folders(folder: Path, cutoff: float, keep_names: set[str]) -> None:
    """Remove the empty sub-folders of ``folder`` (deepest first) unchanged since ``cutoff``,
    except those named in ``keep_names`` directly under it. (Gradio makes an upload's folder
    before it moves the file in: a new empty folder must stay.)"""
    if not folder.is_dir():
        return
    root = Path(os.path.abspath(folder))
    for path in sorted(root.rglob("*"), key=lambda item: len(item.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if path.parent == root and path.name in keep_names:
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.rmdir()  # only succeeds when empty
            except OSError:
                continue


class OutputFiles:
    """Writes output images as PNG files with unique names into the upload folder.

    Gradio stores numpy outputs under a content hash and writes the file in place, so two
    requests with identical outputs (the same example, clicked twice) overwrite a file while it
    is being served and a client gets it truncated. Unique names avoid that; Gradio serves the
    files from its cache as they are, and :class:`UploadSweeper` deletes them.

    Args:
        folder: where to write (``<upload folder>/hf_covid_outputs``).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def image(self, pixels: np.ndarray | None) -> str | None:
        """Save one (H, W, 3) uint8 image; returns its path (None for None)."""
        if pixels is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{uuid.uuid4().hex}.png"
        Image.fromarray(pixels).save(path, compress_level=1)
        return str(path)
