"""Data folders: listing, validating and hashing their files once, and the builders' cache.

`DatasetCache.inspect` validates (fully decodes, with `load_image`) and hashes every file of a
folder once and caches the result in the datasets cache, keyed by path, size and modification
time, so that building the same folder again is near-instant and a bad file is found before any
training starts. The helpers below list folders the way every builder does and report bad and
ignored files in one message. Reading one image is :mod:`hf_covid.data.image_reading`
(`load_image` and `ImageReadError` are re-exported here for the builders and the pipeline).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from .dedup import ImageHashes, compute_image_hashes
from .dicom import DICOM_SUFFIXES
from .image_reading import ImageReadError, load_image, read_image_and_format
from .validation import DEFAULT_INPUT_POLICY, InputPolicy

__all__ = [
    "IGNORED_FILE_NAMES",
    "IGNORED_MASK_WITHOUT_IMAGE",
    "IGNORED_NESTED",
    "IGNORED_UNKNOWN_TYPE",
    "IMAGE_SUFFIXES",
    "BadImagesError",
    "DatasetCache",
    "ImageFileInfo",
    "ImageReadError",
    "count_nested_files",
    "is_image_candidate",
    "list_folder",
    "load_image",
    "normalize_folder_name",
    "raise_for_empty_classes",
    "report_bad_input",
    "report_ignored_files",
    "resolve_cache_dir",
]

logger = logging.getLogger(__name__)

IGNORED_FILE_NAMES = frozenset({"thumbs.db", "desktop.ini"})
"""Operating-system clutter that is never taken for an image (hidden files are skipped too)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff", *DICOM_SUFFIXES)
"""File name endings the builders take for images; files without an ending are tried too (DICOM
files often have none), any other ending is ignored and counted."""

_SCAN_CACHE_VERSION = 4
"""Bump whenever :class:`ImageFileInfo` or :class:`ImageHashes` change shape: older entries are rescanned."""


class BadImagesError(ValueError):
    """A dataset folder holds files or folders that cannot be used.

    Attributes:
        problems: ``(path, reason)`` for every bad file or folder, in scan order.
    """

    def __init__(self, root: str | Path, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        lines = "\n".join(f"  {path}: {reason}" for path, reason in self.problems)
        super().__init__(
            f"{len(self.problems)} bad file(s) or folder(s) under '{root}' (fix or remove them, "
            f"or pass skip_bad_images=True to skip them):\n{lines}"
        )


def list_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Files and subfolders of ``folder``, sorted by name; hidden entries and OS clutter skipped.

    Raises:
        OSError: The folder cannot be listed (missing, not a folder, no permission).
    """
    files, folders = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name.lower() in IGNORED_FILE_NAMES:
                continue
            try:
                is_folder = entry.is_dir()
            except OSError:
                # A broken entry (symlink loop, ...) is listed as a file: reading it then fails
                # and reports that one entry, never the whole folder.
                is_folder = False
            if is_folder:
                folders.append(Path(entry.path))
            else:
                files.append(Path(entry.path))
    return sorted(files), sorted(folders)


IGNORED_NESTED = "in a nested folder"
IGNORED_UNKNOWN_TYPE = "unknown file type"
IGNORED_MASK_WITHOUT_IMAGE = "mask without image"
"""Why a builder leaves a file out without calling it bad (the keys of ``ignored_files``)."""


def is_image_candidate(path: Path) -> bool:
    """Whether builders try a file as an image: a known image ending, or none (as DICOM often has).

    A numeric "ending" (``1.2.276.0.7230.850819``, a DICOM named by its UID) counts as none.
    """
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or not suffix or suffix[1:].isdigit()


def count_nested_files(folders: Sequence[Path]) -> int:
    """Files anywhere below ``folders``, which the builders do not read (hidden files left out)."""
    count = 0
    for folder in folders:
        for _, subfolders, files in os.walk(folder):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            count += sum(
                not name.startswith(".") and name.lower() not in IGNORED_FILE_NAMES
                for name in files
            )
    return count


def raise_for_empty_classes(
    root: Path, usable_per_class: dict[str, int], problems: Sequence[tuple[str, str]]
) -> None:
    """A requested class without a usable image is an error, also with ``skip_bad_images``.

    Raises:
        ValueError: Naming the empty classes and the first bad files and folders found.
    """
    empty = [name for name, count in usable_per_class.items() if count == 0]
    if not empty:
        return
    listed = "".join(f"\n  {path}: {reason}" for path, reason in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    raise ValueError(
        f"no usable image for class(es) {empty} under '{root}' ({len(problems)} bad file(s) or "
        f"folder(s) skipped); fix them, or leave the class out where the builder allows it"
        f"{listed}{more}"
    )


def normalize_folder_name(name: str) -> str:
    """Folder name compared case- and punctuation-insensitively ("X-ray" matches "xray")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def report_bad_input(
    root: Path, problems: Sequence[tuple[str, str]], *, skip_bad_images: bool
) -> int:
    """Raise `BadImagesError` listing every problem, or log and count them when skipping.

    Returns:
        The number of bad files and folders skipped.
    """
    if not problems:
        return 0
    if not skip_bad_images:
        raise BadImagesError(root, problems)
    logger.warning(
        "skipping %d bad file(s) or folder(s) under %s (skip_bad_images=True): %s",
        len(problems),
        root,
        "; ".join(f"{path}: {reason}" for path, reason in problems),
    )
    return len(problems)


def report_ignored_files(root: Path, ignored: Counter) -> dict[str, int]:
    """Log the files a builder left out (not bad, just not part of the layout) and count them.

    Returns:
        ``{reason: count}`` for the reasons that occurred, for ``DatasetBuildSummary.ignored_files``.
    """
    counts = {reason: count for reason, count in ignored.items() if count}
    if counts:
        logger.warning(
            "ignored %d file(s) under %s: %s",
            sum(counts.values()),
            root,
            ", ".join(f"{reason} {count}" for reason, count in counts.items()),
        )
    return counts


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """The hf_covid folder inside ``cache_dir`` (default: the datasets cache, HF_DATASETS_CACHE)."""
    if cache_dir is None:
        cache_dir = datasets.config.HF_DATASETS_CACHE
    return Path(cache_dir).expanduser().resolve() / "hf_covid"


@dataclass(frozen=True)
class ImageFileInfo:
    """What one validation pass learnt about a file.

    Attributes:
        path: Absolute path of the file.
        error: Why the file cannot be used, or None when it decoded cleanly.
        image_format: "PNG", "JPEG", "BMP", "TIFF", "DICOM", ... (None when unreadable).
        height: Height in pixels after EXIF orientation (0 when unreadable).
        width: Width in pixels after EXIF orientation (0 when unreadable).
        hashes: Perceptual hashes for near-duplicate detection (None when unreadable).
    """

    path: Path
    error: str | None
    image_format: str | None = None
    height: int = 0
    width: int = 0
    hashes: ImageHashes | None = None

    def to_cache_entry(self, size: int, mtime_ns: int) -> list:
        hashes = list(self.hashes) if self.hashes is not None else None
        return [size, mtime_ns, self.error, self.image_format, self.height, self.width, hashes]

    @classmethod
    def from_cache_entry(cls, path: Path, entry: list) -> ImageFileInfo:
        _, _, error, image_format, height, width, hashes = entry
        hashes = ImageHashes(*hashes) if hashes is not None else None
        return cls(path, error, image_format, height, width, hashes)


def _inspect_one(path: Path, policy: InputPolicy) -> ImageFileInfo:
    try:
        array, image_format = read_image_and_format(path, policy=policy)
    except ImageReadError as error:
        return ImageFileInfo(path=path, error=error.reason)
    return ImageFileInfo(
        path=path,
        error=None,
        image_format=image_format,
        height=int(array.shape[0]),
        width=int(array.shape[1]),
        hashes=compute_image_hashes(array),
    )


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)


class DatasetCache:
    """What the builders learn about one data folder, kept in the datasets cache.

    Everything is keyed by the files' paths, sizes and modification times, so a changed file is
    looked at again and an unchanged one never is. Nothing is ever written inside the data
    folder.

    Args:
        data_root: The dataset folder.
        cache_dir: Cache folder (default: the datasets cache).
        policy: The limits every file is validated against (part of the scan cache key).

    Raises:
        ValueError: The cache would lie inside the data folder.
    """

    def __init__(
        self,
        data_root: Path,
        cache_dir: str | Path | None = None,
        *,
        policy: InputPolicy = DEFAULT_INPUT_POLICY,
    ):
        self.data_root = data_root.resolve()
        self.policy = policy
        self.root = resolve_cache_dir(cache_dir)
        if self.root == self.data_root or self.data_root in self.root.parents:
            raise ValueError(
                f"cache_dir '{cache_dir}' lies inside the data folder '{self.data_root}'; the "
                "data folder is never written to, choose a cache outside it"
            )
        self.key = hashlib.sha256(str(self.data_root).encode()).hexdigest()[:20]

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.data_root).as_posix()

    def inspect(
        self, paths: Sequence[Path], *, num_threads: int | None = None
    ) -> list[ImageFileInfo]:
        """Validate (fully decode) and hash every file; each file only once while unchanged.

        Args:
            paths: Files under the data folder.
            num_threads: Decoding threads (PIL and zlib release the GIL); default: CPU count,
                at most 8.

        Returns:
            One `ImageFileInfo` per path, in order.
        """
        policy_key = hashlib.sha256(repr(self.policy).encode()).hexdigest()[:8]
        scan_file = self.root / "scans" / f"{self.key}.{policy_key}.json"
        entries: dict[str, list] = {}
        if scan_file.exists():
            try:
                cached = json.loads(scan_file.read_text())
                if cached.get("version") == _SCAN_CACHE_VERSION:
                    entries = cached["entries"]
            except (OSError, ValueError, KeyError):
                logger.warning("ignoring unreadable scan cache %s", scan_file)

        results: dict[int, ImageFileInfo] = {}
        stats: dict[int, tuple[int, int]] = {}
        for index, path in enumerate(paths):
            try:
                stat = path.stat()
            except OSError as error:
                results[index] = ImageFileInfo(path, f"cannot read file: {error.strerror}")
                continue
            stats[index] = (stat.st_size, stat.st_mtime_ns)
            entry = entries.get(self._relative(path))
            if entry is not None and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
                results[index] = ImageFileInfo.from_cache_entry(path, entry)
        to_inspect = [index for index in stats if index not in results]
        if to_inspect:
            workers = num_threads or min(8, os.cpu_count() or 1)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                inspected = list(
                    pool.map(
                        lambda path: _inspect_one(path, self.policy),
                        (paths[index] for index in to_inspect),
                    )
                )
            for index, info in zip(to_inspect, inspected, strict=True):
                results[index] = info
                entries[self._relative(paths[index])] = info.to_cache_entry(*stats[index])
            payload = {
                "version": _SCAN_CACHE_VERSION,
                "root": str(self.data_root),
                "entries": entries,
            }
            _write_atomically(scan_file, lambda target: target.write_text(json.dumps(payload)))
        logger.debug(
            "inspected %d file(s) under %s (%d from the scan cache)",
            len(paths),
            self.data_root,
            len(paths) - len(to_inspect),
        )
        return [results[index] for index in range(len(paths))]

    def _derived_path(self, source: Path, suffix: str) -> Path:
        stat = source.stat()
        relative = self._relative(source)
        return (
            self.root
            / "derived"
            / self.key
            / f"{relative}.{stat.st_size}_{stat.st_mtime_ns}{suffix}"
        )

    def parsed(self, source: Path, parse: Callable[[Path], dict]) -> dict:
        """``parse(source)`` (a JSON-serialisable dict), cached while the file is unchanged."""
        target = self._derived_path(source, f".{parse.__name__}.json")
        if target.exists():
            return json.loads(target.read_text())
        result = parse(source)
        _write_atomically(target, lambda path: path.write_text(json.dumps(result)))
        return result

    def derived_png(
        self, source: Path, *, size: tuple[int, int] | None = None, mask: bool = False
    ) -> Path:
        """A PNG copy of ``source`` in the cache: DICOM converted, or a mask resized to ``size``.

        Used where a dataset column must point to something `datasets.Image` can decode.
        Masks are binarised (threshold 0.5) and resized with nearest neighbour; other images
        are stored as 16-bit grayscale so no precision is lost.

        Args:
            source: File under the data folder.
            size: ``(height, width)`` to resize to, or None to keep the size.
            mask: Binarise and save as 8-bit 0/255.

        Returns:
            Path of the PNG in the cache.
        """
        size_tag = f"_{size[0]}x{size[1]}" if size is not None else ""
        target = self._derived_path(source, f"{size_tag}{'.mask' if mask else ''}.png")
        if target.exists():
            return target
        array = load_image(source, policy=self.policy)
        if mask:
            image = Image.fromarray(((array >= 0.5) * 255).astype(np.uint8))
            resample = Image.Resampling.NEAREST
        else:
            image = Image.fromarray(np.round(array * 65535).astype(np.uint16))
            resample = Image.Resampling.BILINEAR
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), resample)
        _write_atomically(target, lambda path: image.save(path, format="PNG"))
        return target
