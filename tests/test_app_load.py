"""The app under load: 8 concurrent clients, 32 requests, no errors; p50/p95 latency printed and
written to test-artifacts/app_latency.json."""

from __future__ import annotations

import json

import pytest
from app_support import REPO_ROOT, build_tiny_checkpoints, running_app, write_test_images
from gradio_client import handle_file

from hf_covid.inference import measure_app_latency

ARTIFACT = REPO_ROOT / "test-artifacts" / "app_latency.json"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    checkpoints = build_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    with running_app(checkpoints) as (_, url):
        yield url


@pytest.mark.slow
def test_eight_concurrent_clients_get_32_answers_without_errors(url, tmp_path):
    xray = write_test_images(tmp_path / "images")["xray"]

    report = measure_app_latency(
        url,
        "/predict_chest_xray",
        ["dual_channel", handle_file(xray), None],
        n_requests=32,
        concurrency=8,
    )

    summary = report.to_dict()
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(summary, indent=2))
    print(f"\napp latency (tiny models, 8 clients): {json.dumps(summary)}")
    assert report.errors == ()
    assert len(report.latencies_s) == 32
    assert 0 < report.p50_s <= report.p95_s
