"""The app in a real browser: Debian's headless Chromium driven by Playwright. The sweeper runs
every second and deletes files two seconds after their last use, so the examples are shown to
work after it has swept them several times."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from app_support import (
    EXAMPLES_DIR,
    REPO_ROOT,
    build_tiny_checkpoints,
    running_app,
    write_test_images,
)
from PIL import Image

from hf_covid.models.labels import RADIOGRAPHY_LABELS

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO_ROOT / "test-artifacts" / "app_screenshot.png"
LABEL_PATTERN = re.compile("|".join(re.escape(name) for name in RADIOGRAPHY_LABELS))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
]


SWEEP_EVERY, MAX_AGE = 1.0, 2.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(app, url, upload folder) with a test-short sweep and the Space's examples."""
    folder = tmp_path_factory.mktemp("gradio_uploads")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    checkpoints = build_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    try:
        with running_app(
            checkpoints, sweep_every=SWEEP_EVERY, max_age=MAX_AGE, examples_dir=EXAMPLES_DIR
        ) as (app, url):
            yield app, url, folder
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR")
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


@pytest.fixture(scope="module")
def page(served):
    _, url, _ = served
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=CHROMIUM_ARGS,
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        yield page
        browser.close()


def test_browser_uploads_an_xray_and_shows_the_predicted_label(page, served, tmp_path):
    from playwright.sync_api import expect

    xray = write_test_images(tmp_path)["xray"]
    expect(page.get_by_text("not a diagnostic device").first).to_be_visible()

    page.get_by_role("tab", name="Chest X-ray, 4 classes").click()
    page.locator("#chest_xray input[type=file]").set_input_files(str(xray))
    page.locator("#chest_predict").click()

    label = page.locator("#chest_label [data-testid=label-output-value]")
    expect(label).to_have_text(LABEL_PATTERN, timeout=30_000)
    expect(page.locator("#chest_xray_cam img")).to_be_visible()
    expect(page.locator("#chest_mask_overlay img")).to_be_visible()
    assert label.inner_text().strip() in RADIOGRAPHY_LABELS
    expect(page.locator("#chest_summary")).to_contain_text("Trained on")
    expect(page.locator("#chest_summary")).to_contain_text("Input check")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    pixels = np.asarray(Image.open(SCREENSHOT).convert("RGB"))
    assert pixels.shape[0] > 500 and pixels.shape[1] == 1280
    assert pixels.std() > 10  # not a blank page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # text, images and overlays

    # The upload is gone a bounded time after its use.
    _, _, folder = served
    deadline = time.monotonic() + MAX_AGE + SWEEP_EVERY + 5
    while list(folder.rglob("xray.png")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(folder.rglob("xray.png"))


def wait_for_sweeps(app, count: int) -> None:
    target = app.sweeper.sweeps + count
    deadline = time.monotonic() + 30
    while app.sweeper.sweeps < target and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app.sweeper.sweeps >= target


@pytest.mark.parametrize("round_", [1, 2])
def test_examples_work_after_the_sweeper_has_run(page, served, round_):
    from playwright.sync_api import expect

    app, _, folder = served
    started = time.time()
    wait_for_sweeps(app, 2)
    time.sleep(max(0.0, started + MAX_AGE + SWEEP_EVERY - time.time()))  # older than max_age
    wait_for_sweeps(app, 1)
    cached_examples = [path for path in folder.rglob("xray_normal.png")]
    assert cached_examples  # Gradio's copy is still there, swept around but kept

    page.reload()  # a fresh page: no earlier answer on it
    page.get_by_role("tab", name="Chest X-ray, 4 classes").click()
    page.locator("#chest_examples").get_by_text("xray_normal.png").first.click()
    expect(page.locator("#chest_xray")).to_contain_text("xray_normal")
    page.locator("#chest_predict").click()

    expect(page.locator("#chest_summary")).to_contain_text("Prediction:", timeout=30_000)
    expect(page.locator("#chest_label [data-testid=label-output-value]")).to_have_text(
        LABEL_PATTERN
    )
    assert "expired" not in page.content()
