"""Nothing uploaded outlives its use (hf_covid.app.uploads): the sweeper deletes every upload and
output in a bounded time whether or not it was used, also after a burst of bad and oversized
requests; examples stay; a quota refuses uploads when the space for them is full."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from app_support import EXAMPLES_DIR, build_tiny_checkpoints, running_app, write_test_images
from gradio_client import Client, handle_file

from hf_covid.app.uploads import ExampleFiles, UploadQuota, UploadSweeper

AN_HOUR = 3600.0


def an_hour_later() -> float:
    """The sweepers' clock in most tests: every file written so far is an hour old."""
    return time.time() + AN_HOUR


def touch_later(path: Path) -> Path:
    """Make a file (or folder) new on that later clock."""
    os.utime(path, (an_hour_later(), an_hour_later()))
    return path


def files_in(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


@pytest.fixture()
def upload_folder(tmp_path) -> Path:
    """An upload folder as Gradio fills it: hash folders, an aborted upload, outputs, an example."""
    folder = tmp_path / "gradio"
    for relative in ("aaa/upload.dcm", "bbb/example.png", "tmpx1y2", "hf_covid_outputs/cam.png"):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"example bytes" if "example" in relative else os.urandom(64))
    return folder


def example_keeper(tmp_path: Path) -> ExampleFiles:
    example = tmp_path / "examples" / "example.png"
    example.parent.mkdir(exist_ok=True)
    example.write_bytes(b"example bytes")
    return ExampleFiles([example])


def test_sweeper_deletes_every_old_file_used_or_not_but_keeps_examples_and_new_files(
    upload_folder, tmp_path
):
    new = upload_folder / "ccc" / "new.png"
    new.parent.mkdir()
    new.write_bytes(b"just uploaded")
    touch_later(new)
    forgotten: list[set[str]] = []
    quota = UploadQuota(10_000)
    sweeper = UploadSweeper(
        upload_folder,
        60,
        60,
        example_keeper(tmp_path),
        forget=forgotten.append,
        quota=quota,
        clock=an_hour_later,
    )

    deleted = sweeper.sweep()

    assert files_in(upload_folder) == {"bbb/example.png", "ccc/new.png"}
    assert {Path(path).name for path in deleted} == {"upload.dcm", "tmpx1y2", "cam.png"}
    assert forgotten == [deleted]
    assert not (upload_folder / "aaa").exists()  # its emptied, old folder went too
    assert (upload_folder / "hf_covid_outputs").is_dir()  # the outputs folder stays
    assert quota.used_bytes == len(b"example bytes") + len(b"just uploaded")


def test_a_recorded_use_keeps_an_upload_for_max_age_after_that_use(upload_folder, tmp_path):
    upload = upload_folder / "aaa" / "upload.dcm"
    now = [an_hour_later()]
    sweeper = UploadSweeper(upload_folder, 60, 60, example_keeper(tmp_path), clock=lambda: now[0])

    sweeper.used(upload)
    now[0] += 59
    sweeper.sweep()
    assert upload.exists()
    now[0] += 2  # 61 s after its use
    sweeper.sweep()
    assert not upload.exists()


def test_a_new_empty_upload_folder_is_kept_until_it_is_old(tmp_path):
    folder = tmp_path / "gradio"
    (folder / "stale").mkdir(parents=True)
    fresh = folder / "fresh"
    fresh.mkdir()  # Gradio makes it before moving the upload in
    touch_later(fresh)

    UploadSweeper(folder, 60, 60, example_keeper(tmp_path), clock=an_hour_later).sweep()

    assert fresh.is_dir() and not (folder / "stale").exists()


def test_stopping_the_sweeper_deletes_everything_but_the_examples(upload_folder, tmp_path):
    sweeper = UploadSweeper(upload_folder, 0.05, 60, example_keeper(tmp_path))
    sweeper.start()
    time.sleep(0.3)
    sweeper.stop()

    assert sweeper.sweeps >= 2
    assert files_in(upload_folder) == {"bbb/example.png"}


def test_quota_reserves_room_and_refuses_past_the_limit():
    quota = UploadQuota(1000)
    assert quota.reserve(600)
    assert not quota.reserve(500)  # 600 being received + 500 > 1000
    quota.release(600, stored=True)
    assert not quota.reserve(500)
    assert quota.reserve(400)
    quota.release(400, stored=False)  # refused: nothing was kept
    assert quota.used_bytes == 600
    quota.recount(0)  # the sweeper deleted it
    assert quota.reserve(500)


SWEEP_EVERY, MAX_AGE = 1.0, 3.0
BOUND_S = MAX_AGE + SWEEP_EVERY


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The app with a test-short sweep, a 1 MB upload limit and a 3 MB quota."""
    folder = tmp_path_factory.mktemp("gradio_uploads")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    checkpoints = build_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    try:
        with running_app(
            checkpoints,
            max_image_pixels=1_000_000,
            max_file_size="1mb",
            sweep_every=SWEEP_EVERY,
            max_age=MAX_AGE,
            upload_quota_bytes=3 * 2**20,
            examples_dir=EXAMPLES_DIR,
        ) as (app, url):
            yield app, url.rstrip("/"), folder
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR")
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    """What the browser does when a file is chosen, before Predict is pressed."""
    return httpx.post(f"{url}/gradio_api/upload", files={"files": (name, data)}, timeout=30)


def wait_until_only_examples_remain(folder: Path, examples: set[str], timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    while (left := {Path(name).name for name in files_in(folder)} - examples) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_upload_never_used_is_deleted_in_bounded_time_after_a_burst_of_bad_requests(live, tmp_path):
    app, url, folder = live
    images = write_test_images(tmp_path / "images")
    client = Client(url, verbose=False, analytics_enabled=False)
    try:
        for name in ("not_an_image", "corrupt", "huge"):  # bad files, predicted
            with pytest.raises(Exception, match="Cannot use this input|cannot read|pixels"):
                client.predict(
                    "cnn_lstm", handle_file(images[name]), None, api_name="/predict_chest_xray"
                )
    finally:
        client.close()
    for _ in range(5):  # oversized uploads, refused by Gradio's size limit
        assert upload(url, "big.png", os.urandom(1_200_000)).status_code == 413
    sweeps_before = app.sweeper.sweeps

    response = upload(url, "Doe_Jane.dcm", images["dicom"].read_bytes())  # chosen, never used
    assert response.status_code == 200
    (stored,) = response.json()
    assert Path(stored).is_file()
    start = time.monotonic()

    examples = {path.name for path in EXAMPLES_DIR.iterdir()}
    left = wait_until_only_examples_remain(folder, examples, timeout=BOUND_S + 3)
    assert not Path(stored).exists() and left == set()
    assert stored not in app.demo.upload_file_set  # Gradio's registry forgets it too
    assert time.monotonic() - start <= BOUND_S + 3
    assert app.sweeper.sweeps >= sweeps_before + 2
    assert {Path(name).name for name in files_in(folder)} <= examples  # the folder is bounded


@pytest.mark.slow
def test_quota_refuses_uploads_with_a_clear_message_when_full_and_recovers(live):
    _, url, _ = live
    accepted = [upload(url, f"part{index}.bin", os.urandom(900_000)) for index in range(3)]
    assert [response.status_code for response in accepted] == [200, 200, 200]

    refused = upload(url, "one_too_many.bin", os.urandom(900_000))

    assert refused.status_code == 507
    assert "space for uploads (3 MiB) is full" in refused.text
    assert "try again" in refused.text
    time.sleep(BOUND_S + 1)  # the sweeper frees the space
    assert upload(url, "later.bin", os.urandom(900_000)).status_code == 200
