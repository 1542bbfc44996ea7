"""`hf-covid download`: fetching, resuming, checking and unpacking, against a local HTTP server.

The server is a `http.server` thread on 127.0.0.1 serving archives generated here; it honours
``Range`` requests and can cut a connection mid-file or answer with an error. Nothing here
touches the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
import zipfile

import pytest

import hf_covid_cli as cli
from hf_covid.data.public import download
from hf_covid.data.public.archives import UnsafeArchiveError, extract_archive
from hf_covid.data.public.collections import PUBLIC_COLLECTIONS, find_collections
from hf_covid.data.public.download import (
    DOWNLOAD_STATE_FOLDER,
    ChecksumMismatchError,
    DownloadError,
    ManualDownloadError,
    download_source,
    fetch,
)
from hf_covid.data.public.records import DownloadFile, DownloadSource


class _State:
    """What the server serves and what it was asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the next answer is cut
        self.status: dict[str, int] = {}  # path -> HTTP error status
        self.ignore_range: set[str] = set()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state: _State = self.server.state  # type: ignore[attr-defined]
        asked = self.headers.get("Range")
        state.requests.append((self.path, asked))
        if self.path in state.status:
            self.send_error(state.status[self.path])
            return
        data = state.files[self.path]
        start = 0
        if asked and self.path not in state.ignore_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = state.cut_after.pop(self.path, None)
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def server(monkeypatch):
    """A local server: yields (its state, its base URL)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = _State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


GITHUB_ARCHIVE = {
    "covid-chestxray-dataset-abc/metadata.csv": b"patientid,finding\n1,COVID-19\n",
    "covid-chestxray-dataset-abc/images/a.png": b"not really a png",
    "covid-chestxray-dataset-abc/volumes/big.nii.gz": b"left out by members",
    "__MACOSX/covid-chestxray-dataset-abc/._metadata.csv": b"junk",
}


def _github_source(base: str) -> DownloadSource:
    return DownloadSource(
        folder="ieee8023",
        files=(
            DownloadFile(
                url=f"{base}/archive/abc.zip",
                name="covid-chestxray-dataset-abc.zip",
                strip_components=1,
                members=("metadata.csv", "images/"),
            ),
        ),
    )


def test_clean_download_lays_out_the_archive_where_the_builder_finds_it(server, tmp_path):
    state, base = server
    state.files["/archive/abc.zip"] = _zip(GITHUB_ARCHIVE)
    folder = download_source("ieee8023", _github_source(base), tmp_path, progress=False)
    assert folder == tmp_path.resolve() / "ieee8023"
    assert (folder / "metadata.csv").read_bytes() == GITHUB_ARCHIVE[
        "covid-chestxray-dataset-abc/metadata.csv"
    ]
    assert (folder / "images" / "a.png").is_file()
    assert not (folder / "volumes").exists() and not (tmp_path / "__MACOSX").exists()
    assert find_collections(tmp_path) == {"ieee8023": folder}
    state_folder = tmp_path / DOWNLOAD_STATE_FOLDER / "ieee8023"
    assert [p.name for p in state_folder.iterdir()] == ["covid-chestxray-dataset-abc.zip.done.json"]


def test_a_complete_download_is_not_fetched_again(server, tmp_path):
    state, base = server
    state.files["/archive/abc.zip"] = _zip(GITHUB_ARCHIVE)
    download_source("ieee8023", _github_source(base), tmp_path, progress=False)
    asked = len(state.requests)
    download_source("ieee8023", _github_source(base), tmp_path, progress=False)
    assert len(state.requests) == asked == 1


def test_a_cut_connection_resumes_with_a_range_request(server, tmp_path):
    state, base = server
    data = bytes(range(256)) * 400
    state.files["/big.bin"] = data
    state.cut_after["/big.bin"] = 10_000
    fetched = fetch(f"{base}/big.bin", tmp_path / "big.bin", retries=1, progress=False)
    assert state.requests == [("/big.bin", None), ("/big.bin", "bytes=10000-")]
    assert (tmp_path / "big.bin").read_bytes() == data
    assert fetched.size == len(data) and fetched.checksum == _sha256(data)
    assert not (tmp_path / "big.bin.part").exists()


def test_an_interrupted_run_leaves_only_the_part_and_the_next_run_resumes(server, tmp_path):
    state, base = server
    data = b"x" * 50_000
    state.files["/big.bin"] = data
    state.cut_after["/big.bin"] = 20_000
    with pytest.raises(DownloadError, match=r"cut after 20000 of 50000 bytes.*run again"):
        fetch(f"{base}/big.bin", tmp_path / "big.bin", retries=0, progress=False)
    assert not (tmp_path / "big.bin").exists()
    assert (tmp_path / "big.bin.part").stat().st_size == 20_000
    fetch(f"{base}/big.bin", tmp_path / "big.bin", checksum=_sha256(data), progress=False)
    assert state.requests[-1] == ("/big.bin", "bytes=20000-")
    assert (tmp_path / "big.bin").read_bytes() == data


def test_a_server_that_ignores_range_is_downloaded_again_from_the_start(server, tmp_path):
    state, base = server
    data = b"y" * 30_000
    state.files["/big.bin"] = data
    state.ignore_range.add("/big.bin")
    (tmp_path / "big.bin.part").write_bytes(b"stale bytes")
    fetch(f"{base}/big.bin", tmp_path / "big.bin", checksum=_sha256(data), progress=False)
    assert (tmp_path / "big.bin").read_bytes() == data


def test_a_checksum_mismatch_is_refused_and_names_the_file(server, tmp_path):
    state, base = server
    state.files["/archive/abc.zip"] = _zip(GITHUB_ARCHIVE)
    source = DownloadSource(
        folder="ieee8023",
        files=(
            DownloadFile(url=f"{base}/archive/abc.zip", name="abc.zip", checksum="md5:" + "0" * 32),
        ),
    )
    with pytest.raises(ChecksumMismatchError, match=r"'abc\.zip'.*md5 is [0-9a-f]{32}.*0{32}"):
        download_source("ieee8023", source, tmp_path, progress=False)
    state_folder = tmp_path / DOWNLOAD_STATE_FOLDER / "ieee8023"
    assert list(state_folder.iterdir()) == []  # neither the file nor a part is kept
    assert not (tmp_path / "ieee8023").exists()


def test_a_server_error_names_the_url_and_the_status(server, tmp_path):
    state, base = server
    state.status["/archive/abc.zip"] = 500
    with pytest.raises(DownloadError, match=re.escape(f"{base}/archive/abc.zip: HTTP 500")):
        download_source("ieee8023", _github_source(base), tmp_path, progress=False)


def test_tar_gz_md5_a_gzipped_table_and_a_plain_file_each_land_in_their_folder(server, tmp_path):
    state, base = server
    archive = _tar_gz({"images/00000001_000.png": b"png bytes"})
    table = b"Image Index,Finding Labels\n00000001_000.png,No Finding\n"
    state.files["/static/one.gz"] = archive
    state.files["/data/Data_Entry_2017_v2020.csv.gz"] = gzip.compress(table)
    state.files["/lists/test_list.txt"] = b"00000001_000.png\n"
    source = DownloadSource(
        folder="nih_chestxray14",
        files=(
            DownloadFile(
                url=f"{base}/static/one.gz",
                name="images_001.tar.gz",
                checksum=f"md5:{hashlib.md5(archive).hexdigest()}",
                target="images_001",
            ),
            DownloadFile(
                url=f"{base}/data/Data_Entry_2017_v2020.csv.gz",
                name="Data_Entry_2017_v2020.csv.gz",
            ),
            DownloadFile(url=f"{base}/lists/test_list.txt", name="test_list.txt", target="lists"),
        ),
    )
    folder = download_source("nih_chestxray14", source, tmp_path, progress=False)
    assert (folder / "images_001" / "images" / "00000001_000.png").read_bytes() == b"png bytes"
    assert (folder / "Data_Entry_2017_v2020.csv").read_bytes() == table
    assert (folder / "lists" / "test_list.txt").read_bytes() == b"00000001_000.png\n"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        "00000001_000.png",
        "Data_Entry_2017_v2020.csv",
        "test_list.txt",
    ]  # no temporary file left behind


def test_a_download_finished_but_not_unpacked_is_unpacked_without_fetching(server, tmp_path):
    state, base = server
    archive = _zip(GITHUB_ARCHIVE)
    state_folder = tmp_path / DOWNLOAD_STATE_FOLDER / "ieee8023"
    state_folder.mkdir(parents=True)
    (state_folder / "covid-chestxray-dataset-abc.zip").write_bytes(archive)
    folder = download_source("ieee8023", _github_source(base), tmp_path, progress=False)
    assert state.requests == []
    assert (folder / "metadata.csv").is_file()


@pytest.mark.parametrize(
    ("entries", "links", "message"),
    [
        ({"../evil.txt": b"x"}, None, r"points outside \(\.\.\)"),
        ({"/etc/evil.txt": b"x"}, None, "absolute path"),
        ({}, {"escape": "../../outside"}, "link 'escape' -> '../../outside' points outside"),
        ({}, {"escape": "/etc"}, "points outside"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path, entries, links, message):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar_gz(entries, links))
    target = tmp_path / "deep" / "target"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, target, progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.tar.gz", "deep", "target"]


def test_a_file_written_through_an_earlier_link_outside_is_refused(tmp_path):
    (tmp_path / "outside").mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(tmp_path / "outside")  # e.g. left by an earlier unpacking
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip({"sub/evil.txt": b"x"}))
    with pytest.raises(UnsafeArchiveError, match="through a link outside"):
        extract_archive(archive, target, progress=False)
    assert list((tmp_path / "outside").iterdir()) == []


def test_links_inside_the_folder_are_kept(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(_tar_gz({"data/a.txt": b"a"}, {"alias.txt": "data/a.txt"}))
    assert extract_archive(archive, tmp_path / "target", progress=False) == 2
    assert (tmp_path / "target" / "alias.txt").read_bytes() == b"a"


def test_manual_collections_print_where_to_get_them_and_exit_3(tmp_path, capsys):
    assert cli.main(["download", "rsna", "--to", str(tmp_path)]) == 3
    error = capsys.readouterr().err
    assert "kaggle competitions download -c rsna-pneumonia-detection-challenge" in error
    assert f"{tmp_path.resolve()}/rsna/stage_2_train_labels.csv" in error
    with pytest.raises(ManualDownloadError, match="andyczhao/covidx-cxr2"):
        download.download_collection("covidx", tmp_path)
    assert not (tmp_path / DOWNLOAD_STATE_FOLDER).exists()


def test_the_command_reports_a_server_error_with_exit_status_1(
    server, tmp_path, capsys, monkeypatch
):
    state, base = server
    state.status["/archive/abc.zip"] = 404
    monkeypatch.setattr(download, "download_sources", lambda: {"ieee8023": _github_source(base)})
    arguments = ["download", "ieee8023", "--to", str(tmp_path), "--no-progress"]
    assert cli.main(arguments) == 1
    assert f"error: ieee8023: {base}/archive/abc.zip: HTTP 404" in capsys.readouterr().err


def test_the_command_refuses_an_unknown_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["download", "mimic", "--to", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'mimic'" in capsys.readouterr().err


def test_every_download_lands_in_a_folder_its_builder_looks_in():
    for name, record in PUBLIC_COLLECTIONS.items():
        source = record.download
        assert source is not None, name
        assert any(
            folder == source.folder or folder.startswith(f"{source.folder}/")
            for folder in record.folder_names
        ), name
        assert source.manual == (not source.files)
        assert source.instructions if source.manual else source.checksums, name
    files = [f for s in download.download_sources().values() for f in s.files]
    assert all(
        re.fullmatch(r"(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32})", f.checksum)
        for f in files
        if f.checksum
    )
    assert all(f.url.startswith("https://") for f in files)
    nih = PUBLIC_COLLECTIONS["nih_chestxray14"].download
    assert [f.target for f in nih.files[:12]] == [f"images_{n:03d}" for n in range(1, 13)]
