"""Unpacking downloaded archives safely: nothing lands outside the folder it is unpacked into.

`extract_archive` reads a zip or tar archive member by member and refuses, naming the archive and
the member, an absolute path, a path with ``..``, a symbolic link that points outside the folder
(or a member written through one), and hard links, devices and fifos; ``__MACOSX/`` and
``.DS_Store`` entries are skipped. Every file is written under a temporary name and renamed, so an
interrupted unpacking never leaves a partial file under its final name (`write_file`).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm.auto import tqdm

__all__ = ["ARCHIVE_SUFFIXES", "CHUNK_SIZE", "UnsafeArchiveError", "extract_archive", "write_file"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
"""File endings unpacked as archives."""
CHUNK_SIZE = 1 << 20
_JUNK = ("__MACOSX", ".DS_Store")


class UnsafeArchiveError(ValueError):
    """An archive member that would land outside its folder, or is a device file or link out."""


def _member_path(archive: Path, name: str, strip_components: int) -> PurePosixPath | None:
    """The member's path below the target (components stripped), or None to skip it.

    Raises:
        UnsafeArchiveError: An absolute path or one with ``..``.
    """
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise UnsafeArchiveError(f"'{archive.name}': member {name!r} has an absolute path")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"'{archive.name}': member {name!r} points outside (..)")
    parts = parts[strip_components:]
    if not parts or parts[0] in _JUNK or parts[-1] in _JUNK:
        return None
    return PurePosixPath(*parts)


def _kept(path: PurePosixPath, members: Sequence[str]) -> bool:
    text = path.as_posix()
    return not members or any(
        text == member.rstrip("/") or text.startswith(member.rstrip("/") + "/")
        for member in members
    )


def _inside(root: Path, path: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents


def write_file(source: BinaryIO, target: Path) -> None:
    """Copy a stream's bytes to ``target`` through a temporary name (then renamed)."""
    temporary = target.with_name(f".{target.name}.part")
    with temporary.open("wb") as handle:
        shutil.copyfileobj(source, handle, CHUNK_SIZE)
    os.replace(temporary, target)


def _link(archive: Path, root: Path, path: Path, link_target: str, member: str) -> None:
    """Create a symbolic link that stays inside ``root``."""
    if link_target.startswith("/") or not _inside(root, path.parent / link_target):
        raise UnsafeArchiveError(
            f"'{archive.name}': link {member!r} -> {link_target!r} points outside the folder"
        )
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(link_target)


@contextmanager
def _members(archive: Path) -> Iterator[Iterator[tuple[str, str, object]]]:
    """``(name, kind, handle)`` of every member: kind file, dir, symlink (handle: target) or
    other; the handle of a file opens its bytes."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:

            def zip_members():
                for info in bundle.infolist():
                    mode = info.external_attr >> 16
                    if info.is_dir():
                        yield info.filename, "dir", None
                    elif stat.S_ISLNK(mode):
                        yield info.filename, "symlink", bundle.read(info).decode()
                    else:
                        yield info.filename, "file", lambda info=info: bundle.open(info)

            yield zip_members()
    else:
        with tarfile.open(archive, "r:*") as bundle:

            def tar_members():
                for info in bundle:
                    if info.isdir():
                        yield info.name, "dir", None
                    elif info.issym():
                        yield info.name, "symlink", info.linkname
                    elif info.isfile():
                        yield info.name, "file", lambda info=info: bundle.extractfile(info)
                    else:  # hard links, devices, fifos
                        yield info.name, "other", None

            yield tar_members()


def extract_archive(
    archive: Path,
    target: Path,
    *,
    strip_components: int = 0,
    members: Sequence[str] = (),
    progress: bool = True,
) -> int:
    """Unpack a zip or tar archive into ``target`` safely (see the module docstring).

    Args:
        archive: A ``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz`` file.
        target: The folder to unpack into (created).
        strip_components: Leading path parts dropped from every member.
        members: Paths or folder prefixes kept (after stripping); empty keeps all.
        progress: Show a progress bar.

    Returns:
        The number of files written.

    Raises:
        UnsafeArchiveError: A member with an absolute path, ``..``, a link pointing outside,
            or a hard link, device or fifo (nothing after it is written).
    """
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    written = 0
    with _members(archive) as entries:
        for name, kind, handle in tqdm(
            entries, desc=f"unpacking {archive.name}", unit=" files", disable=not progress
        ):
            relative = _member_path(archive, name, strip_components)
            if relative is None or not _kept(relative, members):
                continue
            path = root / relative
            if kind == "other":
                raise UnsafeArchiveError(
                    f"'{archive.name}': member {name!r} is a hard link, device or fifo"
                )
            if not _inside(root, path.parent):
                raise UnsafeArchiveError(
                    f"'{archive.name}': member {name!r} would be written through a link outside"
                )
            if kind == "dir":
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "symlink":
                _link(archive, root, path, handle, name)
            else:
                with handle() as source:
                    write_file(source, path)
            written += 1
    return written
