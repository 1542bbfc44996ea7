"""The Space's app file under load: 8 concurrent clients share 32 mixed requests (every tab and
model) with real-size images (2,000 px), no errors, and the app's memory after the run within 20%
of before (no leak of uploads or overlays). p50/p95 and memory are printed and written to
test-artifacts/app_load.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from app_support import REPO_ROOT, SPACE_DIR, build_tiny_checkpoints, phantom
from PIL import Image

from hf_covid.benchmarks.app_latency import measure_app_load

ARTIFACT = REPO_ROOT / "test-artifacts" / "app_load.json"


@pytest.mark.slow
def test_eight_clients_send_32_mixed_real_size_requests_without_errors_or_leaks(tmp_path):
    checkpoints = build_tiny_checkpoints(tmp_path / "checkpoints")
    xray, ct = tmp_path / "xray_2048.png", tmp_path / "ct_2000x1600.png"
    Image.fromarray(phantom((2048, 2048))).save(xray)
    Image.fromarray(np.flipud(phantom((1600, 2000), seed=3))).save(ct)

    summary = measure_app_load(
        SPACE_DIR / "app.py", checkpoints, xray=xray, ct=ct, n_requests=32, concurrency=8
    )

    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(summary, indent=2))
    print(f"\napp load (tiny models, 8 clients, 2,000 px): {json.dumps(summary)}")
    assert summary["n_errors"] == 0, summary["errors"]
    assert summary["n_requests"] == 32
    assert 0 < summary["p50_s"] <= summary["p95_s"]
    assert summary["rss_ratio"] <= 1.2
