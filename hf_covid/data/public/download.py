"""``hf-covid download NAME --to ROOT``: fetch the openly downloadable collections, laid out as the
builders expect.

What a collection needs is in its record (`PublicCollection.download`, a `DownloadSource`). For
each file:

* it is fetched to ``<ROOT>/.hf_covid_downloads/<name>/<file>.part`` with a progress bar, and an
  interrupted fetch goes on where it stopped (an HTTP ``Range`` request), also in a later run;
* its length and, where the host publishes one, its checksum are checked; a mismatch is refused,
  naming the file, and the partial file removed; the file is synced and only then renamed to its
  final name, so no partial file ever has that name;
* archives are unpacked member by member into the collection folder (each file written under a
  temporary name, then renamed), refusing absolute paths, ``..``, links that point outside and
  device files; ``__MACOSX/`` and ``.DS_Store`` are skipped;
* a completion marker (URL, size, checksum) is written last, so a finished file is never fetched
  or unpacked again.

Collections behind a login or a licence click (RSNA on Kaggle, COVIDx) are not fetched: the
command prints where and how to get them and where to put them, and exits with status 3.

    hf-covid download ieee8023 kermany covid_ct --to public_data/
    hf-covid download rsna --to public_data/        # prints the steps, exit status 3
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from .archives import ARCHIVE_SUFFIXES, CHUNK_SIZE, UnsafeArchiveError, extract_archive, write_file
from .collections import PUBLIC_COLLECTIONS
from .records import DownloadFile, DownloadSource

__all__ = [
    "DOWNLOAD_STATE_FOLDER",
    "ChecksumMismatchError",
    "DownloadError",
    "FetchedFile",
    "ManualDownloadError",
    "download_collection",
    "download_source",
    "download_sources",
    "fetch",
    "main",
]

DOWNLOAD_STATE_FOLDER = ".hf_covid_downloads"
"""Below the collections root: partial and finished downloads and the completion markers."""
RETRY_WAIT_S = 1.0


class DownloadError(RuntimeError):
    """A download that failed: the message names the URL or file and why."""


class ChecksumMismatchError(DownloadError):
    """A downloaded file whose checksum is not the one the host publishes (the file is removed)."""


class ManualDownloadError(DownloadError):
    """A collection that cannot be fetched here; the message says where and how to get it."""


def download_sources() -> dict[str, DownloadSource]:
    """Collection name -> its download, for every collection the toolkit knows how to get."""
    return {name: r.download for name, r in PUBLIC_COLLECTIONS.items() if r.download}


@dataclass(frozen=True)
class FetchedFile:
    """A finished download: its size in bytes and ``"<algorithm>:<hex>"`` checksum."""

    size: int
    checksum: str


def _digest(checksum: str | None) -> tuple[str, str | None]:
    """(algorithm, expected hex) of a ``"sha256:<hex>"`` checksum; sha256 and None when absent."""
    if checksum is None:
        return "sha256", None
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in ("sha256", "md5") or not expected:
        raise ValueError(f"checksum must be 'sha256:<hex>' or 'md5:<hex>', got {checksum!r}")
    return algorithm, expected.lower()


def _hash_of(path: Path, algorithm: str):
    # The checksums check integrity, not secrets (FIPS builds allow MD5 so).
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(block)
    return digest


def _sync_rename(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` and sync the folder, so the name appears only when whole."""
    os.replace(source, target)
    try:
        folder = os.open(target.parent, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows): the rename is enough
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _open(url: str, offset: int, timeout: float):
    """The HTTP response for ``url`` from byte ``offset`` (None: the range is already complete)."""
    headers = {"User-Agent": "hf_covid-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left after offset: the part is whole
            return None
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: cannot connect ({reason})") from None


def _expected_total(response, offset: int) -> tuple[int, int | None]:
    """(offset the body starts at, full size or None) from a 200 or 206 response."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        start, _, total = content_range.removeprefix("bytes ").partition("-")
        total = total.partition("/")[2]
        if start.strip() == str(offset):
            return offset, int(total) if total.isdigit() else None
        raise DownloadError(f"{response.url}: asked for bytes from {offset}, got {content_range!r}")
    return 0, int(length) if length and length.isdigit() else None


def _copy_body(response, handle: BinaryIO, bar: tqdm) -> None:
    while block := response.read(CHUNK_SIZE):
        handle.write(block)
        bar.update(len(block))


def fetch(
    url: str,
    destination: Path,
    *,
    checksum: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> FetchedFile:
    """Download ``url`` to ``destination``, resuming ``destination.part`` where it stopped.

    Args:
        url: What to fetch.
        destination: The final file; the download goes to ``<destination>.part`` until it is
            whole, checked, synced and renamed.
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` to check, or None.
        retries: Further tries after a cut connection, each resuming with a ``Range`` request.
        timeout: Seconds without data before a try is given up.
        progress: Show a progress bar.

    Returns:
        The size and ``"<algorithm>:<hex>"`` checksum of the file.

    Raises:
        DownloadError: An HTTP error or no connection (naming the URL and the status), or the
            connection cut more than ``retries`` times (the part is kept for the next run).
        ChecksumMismatchError: The checksum differs (naming the file; the part is removed).
    """
    algorithm, expected = _digest(checksum)
    part = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        response = _open(url, offset, timeout)
        if response is None:
            total = offset
            break
        with response:
            start, total = _expected_total(response, offset)
            with (
                part.open("ab" if start else "wb") as handle,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    desc=destination.name,
                    disable=not progress,
                ) as bar,
            ):
                try:
                    _copy_body(response, handle, bar)
                except (OSError, http.client.HTTPException) as error:  # cut, reset, timed out
                    cut = error
                else:
                    cut = None
                handle.flush()
                os.fsync(handle.fileno())
        received = part.stat().st_size
        if cut is None and (total is None or received >= total):
            break
        if attempt == retries:
            raise DownloadError(
                f"{url}: the connection was cut after {received} of {total or '?'} bytes "
                f"({retries + 1} tries); run again to resume from '{part}'"
            )
        time.sleep(RETRY_WAIT_S * (attempt + 1))
    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink()
        raise DownloadError(f"{url}: got {size} bytes, the server announced {total}")
    found = _hash_of(part, algorithm).hexdigest()
    if expected is not None and found != expected:
        part.unlink()
        raise ChecksumMismatchError(
            f"'{destination.name}' from {url}: {algorithm} is {found}, the host publishes "
            f"{expected}; the file was removed (a corrupt or changed download)"
        )
    _sync_rename(part, destination)
    return FetchedFile(size=size, checksum=f"{algorithm}:{found}")


def _placed(folder: Path, file: DownloadFile) -> Path:
    """What a file becomes in the collection folder: its folder (archives) or the file."""
    target = folder / file.target
    if file.name.lower().endswith(ARCHIVE_SUFFIXES):
        return target
    return target / (file.name[: -len(".gz")] if file.name.lower().endswith(".gz") else file.name)


def _place(downloaded: Path, folder: Path, file: DownloadFile, progress: bool) -> None:
    """Unpack, decompress or move a finished download into the collection folder."""
    target = folder / file.target
    lower = file.name.lower()
    if lower.endswith(ARCHIVE_SUFFIXES):
        extract_archive(
            downloaded,
            target,
            strip_components=file.strip_components,
            members=file.members,
            progress=progress,
        )
        return
    target.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if lower.endswith(".gz") else open
    with opener(downloaded, "rb") as source:
        write_file(source, _placed(folder, file))


def _marker(state: Path, file: DownloadFile) -> Path:
    return state / f"{file.name}.done.json"


def _is_complete(state: Path, folder: Path, file: DownloadFile) -> bool:
    """Whether a marker says this very file (URL, published checksum) was laid out, and it is."""
    try:
        record = json.loads(_marker(state, file).read_text())
    except (OSError, ValueError):
        return False
    return (
        record.get("url") == file.url
        and record.get("published") == file.checksum
        and _placed(folder, file).exists()
    )


def _finished_download(downloaded: Path, file: DownloadFile) -> FetchedFile | None:
    """A download finished in an earlier run but not laid out, if whole (else removed)."""
    if not downloaded.is_file():
        return None
    algorithm, expected = _digest(file.checksum)
    found = _hash_of(downloaded, algorithm).hexdigest()
    if expected is not None and found != expected:
        downloaded.unlink()
        return None
    return FetchedFile(size=downloaded.stat().st_size, checksum=f"{algorithm}:{found}")


def download_source(
    name: str,
    source: DownloadSource,
    root: str | Path,
    *,
    keep_archives: bool = False,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch and lay out one collection below ``root`` (the collections root).

    Args:
        name: The collection's name (for messages and the download state folder).
        source: What to fetch and where it goes.
        root: The collections root; the collection lands in ``root/<source.folder>``.
        keep_archives: Keep the downloaded archives (default: removed once unpacked).
        retries, timeout, progress: As for `fetch`.

    Returns:
        The collection folder.

    Raises:
        ManualDownloadError: The collection cannot be fetched here (the message says how).
        DownloadError, ChecksumMismatchError: See `fetch`.
        UnsafeArchiveError: See `hf_covid.data.public.archives.extract_archive`.
    """
    root = Path(root).expanduser().resolve()
    if source.manual:
        raise ManualDownloadError(source.instructions.format(root=root))
    folder = root / source.folder
    state = root / DOWNLOAD_STATE_FOLDER / name
    state.mkdir(parents=True, exist_ok=True)
    for file in source.files:
        if _is_complete(state, folder, file):
            continue
        downloaded = state / file.name
        fetched = _finished_download(downloaded, file)
        if fetched is None:
            fetched = fetch(
                file.url,
                downloaded,
                checksum=file.checksum,
                retries=retries,
                timeout=timeout,
                progress=progress,
            )
        _place(downloaded, folder, file, progress)
        record = {
            "url": file.url,
            "size": fetched.size,
            "checksum": fetched.checksum,
            "published": file.checksum,
        }
        marker = _marker(state, file)
        marker.with_name(marker.name + ".part").write_text(json.dumps(record, indent=1))
        _sync_rename(marker.with_name(marker.name + ".part"), marker)
        if not keep_archives:
            downloaded.unlink()
    return folder


def download_collection(name: str, root: str | Path, **options) -> Path:
    """Fetch the collection ``name`` below ``root``; options as for `download_source`.

    Raises:
        KeyError: An unknown name (the message lists the known ones).
    """
    sources = download_sources()
    if name not in sources:
        raise KeyError(f"no download known for {name!r}; known: {', '.join(sources)}")
    return download_source(name, sources[name], root, **options)


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    names = list(download_sources())
    parser = argparse.ArgumentParser(
        description="Download public collections and lay them out as hf_covid's builders expect "
        "(research use: check each collection's licence)."
    )
    parser.add_argument("names", nargs="+", choices=names, metavar="NAME", help=", ".join(names))
    parser.add_argument("--to", type=Path, required=True, help="the collections root")
    parser.add_argument("--keep-archives", action="store_true", help="keep archives once unpacked")
    parser.add_argument("--retries", type=int, default=3, help="tries after a cut connection")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Download each collection named and print where it is.

    Returns:
        The exit status: 0; 1 when a download failed; 3 when a collection must be fetched by
        hand (its steps are printed); argparse's 2 for an unknown name.
    """
    arguments = _parse_arguments(argv)
    sources = download_sources()
    status = 0
    for name in arguments.names:
        try:
            folder = download_source(
                name,
                sources[name],
                arguments.to,
                keep_archives=arguments.keep_archives,
                retries=arguments.retries,
                progress=not arguments.no_progress,
            )
        except ManualDownloadError as error:
            print(f"{name}: cannot be downloaded here.\n{error}", file=sys.stderr)
            status = max(status, 3)
        except (DownloadError, UnsafeArchiveError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            status = max(status, 1)
        else:
            print(f"{name}: {folder}")
    return status
