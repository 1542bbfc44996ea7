"""The app in a real browser: Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from app_support import REPO_ROOT, build_tiny_checkpoints, running_app, write_test_images
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


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    checkpoints = build_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    with running_app(checkpoints) as (_, url):
        yield url


@pytest.fixture(scope="module")
def page(url):
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


def test_browser_uploads_an_xray_and_shows_the_predicted_label(page, tmp_path):
    from playwright.sync_api import expect

    xray = write_test_images(tmp_path)["xray"]
    expect(page.get_by_text("not a diagnostic device").first).to_be_visible()

    page.get_by_role("tab", name="Chest X-ray, 4 classes").click()
    page.locator("#chest_xray input[type=file]").set_input_files(str(xray))
    page.locator("#chest_predict").click()

    label = page.locator("#chest_label [data-testid=label-output-value]")
    expect(label).to_have_text(LABEL_PATTERN, timeout=30_000)
    expect(page.locator("#chest_cam img")).to_be_visible()
    expect(page.locator("#chest_mask_overlay img")).to_be_visible()
    assert label.inner_text().strip() in RADIOGRAPHY_LABELS

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    pixels = np.asarray(Image.open(SCREENSHOT).convert("RGB"))
    assert pixels.shape[0] > 500 and pixels.shape[1] == 1280
    assert pixels.std() > 10  # not a blank page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # text, images and overlays
