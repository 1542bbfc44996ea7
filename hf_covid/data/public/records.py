"""The records of the public collections: what a collection is (`PublicCollection`), how a
composition scans it (`ScanOptions`) and where its files come from (`DownloadSource`).

One record per collection lives in `hf_covid.data.public.collections.PUBLIC_COLLECTIONS`;
compositions, ``find_collections``, ``hf-covid prepare --list`` and ``hf-covid download`` read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetDict

from .common import CollectionScan

__all__ = ["DownloadFile", "DownloadSource", "PublicCollection", "ScanOptions"]


@dataclass(frozen=True)
class ScanOptions:
    """How a composition scans every collection it reads (each scan takes what applies to it).

    Attributes:
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan caches go; never inside a collection.
        num_threads: Threads for the first-time validation of the files.
        include_lateral: Also keep lateral X-rays where a collection has them.
        xray_only: Leave out a collection's CT images (ieee8023 has both).
    """

    skip_bad_images: bool = False
    cache_dir: str | Path | None = None
    num_threads: int | None = None
    include_lateral: bool = False
    xray_only: bool = True

    @property
    def file_options(self) -> dict[str, object]:
        """The keyword arguments every ``scan_*`` function takes."""
        return {
            "skip_bad_images": self.skip_bad_images,
            "cache_dir": self.cache_dir,
            "num_threads": self.num_threads,
        }


@dataclass(frozen=True)
class DownloadFile:
    """One file of a collection's download, and where it goes.

    Archives (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``) are unpacked into ``target``, a ``.gz``
    file is decompressed into it, any other file is placed in it as ``name``.

    Attributes:
        url: Where the host serves it.
        name: The file's name while downloaded.
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` as the host publishes it, or None where
            it publishes none (the download is then only checked for its length).
        target: Folder below the collection folder ("" for the collection folder itself).
        strip_components: Leading path parts of every archive member dropped (1 for a GitHub
            archive, whose members sit in ``<repository>-<commit>/``).
        members: Archive paths kept (after stripping): a path or a folder prefix ending in
            ``/``; empty keeps every member.
    """

    url: str
    name: str
    checksum: str | None = None
    target: str = ""
    strip_components: int = 0
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class DownloadSource:
    """How ``hf-covid download`` gets a collection: its files, or where to get it by hand.

    Attributes:
        folder: The collection's folder below a collections root (one its builder finds).
        files: What to fetch; empty for a collection behind a login or a licence click.
        checksums: What the host publishes to check the files against, in a sentence.
        instructions: For a collection that cannot be fetched: where and how to get it and where
            to put it, with ``{root}`` standing for the collections root.
    """

    folder: str
    files: tuple[DownloadFile, ...] = ()
    checksums: str = ""
    instructions: str = ""

    @property
    def manual(self) -> bool:
        """Whether the collection must be fetched by hand (no open download)."""
        return not self.files


@dataclass(frozen=True)
class PublicCollection:
    """Everything the toolkit knows about one public collection (one record per collection).

    Compositions, ``find_collections``, ``hf-covid prepare --list`` and the downloader read it;
    a new collection is its builder module plus one record in
    `hf_covid.data.public.collections.PUBLIC_COLLECTIONS`.

    Attributes:
        name: The ``source`` column value and the ``"<name>:<category>"`` prefix of a class map.
        title: Human name for summaries and listings.
        url: Where the collection is published.
        license: Its licence as the publisher states it (per-image licences in the data).
        categories: The collection's categories (keys of `CATEGORY_DESCRIPTIONS`).
        modalities: `XRAY`, `CT` or both.
        folder_names: Folder names tried below a collections root, in order.
        is_collection: Whether a folder holds the collection.
        scan: ``scan(root, options) -> CollectionScan`` with a `ScanOptions`.
        build: The collection's documented ``build_*_dataset`` function.
        summary: One line on what it holds and what is wrong with it (listings).
        download: How ``hf-covid download`` gets it, or None where the toolkit does not know.
    """

    name: str
    title: str
    url: str
    license: str
    categories: tuple[str, ...]
    modalities: tuple[str, ...]
    folder_names: tuple[str, ...]
    is_collection: Callable[[Path], bool]
    scan: Callable[[Path, ScanOptions], CollectionScan]
    build: Callable[..., DatasetDict]
    summary: str
    download: DownloadSource | None = None

    def locate(self, collections_root: str | Path) -> Path | None:
        """The collection's folder directly below ``collections_root``, or None."""
        root = Path(collections_root).expanduser().resolve()
        return next(
            (
                root / name
                for name in self.folder_names
                if (root / name).is_dir() and self.is_collection(root / name)
            ),
            None,
        )
