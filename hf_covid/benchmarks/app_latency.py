"""App latency and load: the Space's app file served in its own process, timed end to end through
``gradio_client`` against the same prediction called in-process, and under concurrent mixed load
with the app's memory measured before and after."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import torch

from ..registry import DATASET_KINDS
from ..serving.served import load_served_models
from .app_client import AppCall, LatencyReport, measure_app_latency
from .timing import timed_calls

__all__ = [
    "AppProcess",
    "app_endpoints",
    "free_loopback_port",
    "measure_app_endpoints",
    "measure_app_load",
    "process_rss_bytes",
    "serve_app_file",
]

READY_LINE = "hf_covid app running on "
"""What :func:`hf_covid.app.serve` prints once the app answers."""


def free_loopback_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    return psutil.Process(pid).memory_info().rss


class AppProcess:
    """A Space app file served by its own Python process (see :func:`serve_app_file`).

    Attributes:
        url: where it answers.
        process: the server process.
        log: its combined stdout and stderr, as written so far.
    """

    def __init__(self, url: str, process: subprocess.Popen, log_file: Path) -> None:
        self.url = url
        self.process = process
        self._log_file = log_file

    @property
    def log(self) -> str:
        """What the app printed so far."""
        return self._log_file.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """The app process's resident memory now."""
        return process_rss_bytes(self.process.pid)


@contextlib.contextmanager
def serve_app_file(
    app_file: str | Path,
    arguments: Sequence[str] = (),
    *,
    python: str | Path = sys.executable,
    environ: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout_s: float = 180.0,
) -> Iterator[AppProcess]:
    """Run ``python app_file --host 127.0.0.1 --port <free> *arguments`` until the block ends.

    Args:
        app_file: the Space's ``app.py``.
        arguments: more flags (checkpoints, limits).
        python: the interpreter (another virtual environment's, to test an installation).
        environ: the process's environment (default: this one's).
        cwd: its working directory (default: the app file's folder).
        timeout_s: how long it may take to answer.

    Raises:
        RuntimeError: the app exited or did not answer in time (the message holds its output).
    """
    port = free_loopback_port()
    command = [str(python), str(app_file), "--host", "127.0.0.1", "--port", str(port), *arguments]
    with tempfile.TemporaryDirectory(prefix="hf_covid_app_log_") as log_dir:
        log_file = Path(log_dir) / "app.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ if environ is None else environ),
                cwd=str(cwd or Path(app_file).resolve().parent),
            )
        try:
            started = time.monotonic()
            while READY_LINE not in log_file.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() - started > timeout_s:
                    raise RuntimeError(
                        f"{app_file} did not start (exit status {process.poll()}):\n"
                        + log_file.read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.2)
            yield AppProcess(f"http://127.0.0.1:{port}/", process, log_file)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _checkpoint_flags(checkpoints: Mapping[str, str]) -> list[str]:
    return [f"--{key.replace('_', '-')}={location}" for key, location in checkpoints.items()]


def app_endpoints(
    served: Any, xray: str | Path, ct: str | Path
) -> dict[str, tuple[AppCall, Callable[[], Any]]]:
    """The app's classifier tabs, one per served classifier: ``<tab endpoint>/<model key>``
    (``chest_xray/cnn_lstm``) -> (the app call, the same prediction in-process).

    Each tab's endpoint gets the X-ray, and the CT where its dataset kind has CT (no lung mask:
    the app makes it).
    """
    from gradio_client import handle_file  # optional: the app extra

    from ..app.page import classifier_tabs, tab_layout, tab_uploads  # the app extra (gradio)

    files = {"xray": str(xray), "ct": str(ct)}
    endpoints = {}
    for kind, keys in classifier_tabs().items():
        layout = tab_layout(DATASET_KINDS[kind])
        uploads = tab_uploads(DATASET_KINDS[kind])
        images = {name: files[name] for name in uploads if name in files}
        arguments = [handle_file(images[name]) if name in images else None for name in uploads]
        for key in keys:
            predictor = served.classifiers.get(key)
            if predictor is not None:
                endpoints[f"{layout.api_name.removeprefix('predict_')}/{key}"] = (
                    (f"/{layout.api_name}", [key, *arguments]),
                    lambda predictor=predictor, images=images: predictor.predict(**images),
                )
    return endpoints


def measure_app_endpoints(
    app_file: str | Path,
    checkpoints: dict[str, str],
    *,
    xray: str | Path,
    ct: str | Path,
    n_requests: int = 20,
) -> dict[str, Any]:
    """End-to-end predict latency of every app tab through ``gradio_client``, against the same
    prediction called in-process (``ChestPredictor.predict``): ``p50_ratio`` is the app's share.

    The app file is served by its own process on a free loopback port, as a Space runs it;
    requests are sent one after the other (latency, not load).

    Args:
        app_file: ``spaces_app/app.py``.
        checkpoints: Model key -> checkpoint folder
            (:func:`~hf_covid.benchmarks.demo_models.save_random_checkpoints`).
        xray: A chest X-ray file.
        ct: A CT slice file.
        n_requests: Requests per endpoint (after one warm-up request).

    Returns:
        Endpoint name -> ``LatencyReport.to_dict()`` plus ``in_process_p50_s``,
        ``in_process_p95_s`` and ``p50_ratio``.
    """
    served = load_served_models(checkpoints)
    results = {}
    with serve_app_file(app_file, _checkpoint_flags(checkpoints)) as app:
        for name, (call, direct) in app_endpoints(served, xray, ct).items():
            measure_app_latency(app.url, [call], n_requests=1, concurrency=1)
            report = measure_app_latency(app.url, [call], n_requests=n_requests, concurrency=1)
            direct()
            in_process = LatencyReport(
                n_requests=n_requests,
                concurrency=1,
                latencies_s=tuple(timed_calls(direct, n_requests, torch.device("cpu"))),
                errors=(),
                wall_s=0.0,
            )
            summary = report.to_dict()
            summary["in_process_p50_s"] = in_process.p50_s
            summary["in_process_p95_s"] = in_process.p95_s
            summary["p50_ratio"] = report.p50_s / in_process.p50_s
            results[name] = summary
    return results


def measure_app_load(
    app_file: str | Path,
    checkpoints: dict[str, str],
    *,
    xray: str | Path,
    ct: str | Path,
    n_requests: int = 32,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Mixed load on the served app file: ``concurrency`` clients share ``n_requests`` requests
    over every tab and model (X-ray + CT, and each 4-class model with the X-ray), and the app's
    resident memory is read before and after.

    "Before" is after a warm-up round of the same load: the first concurrent requests raise the
    allocator's high-water mark once (per-thread arenas, PyTorch's buffers), which is not a leak;
    memory that still grows over the measured round is.

    Returns:
        ``LatencyReport.to_dict()`` plus ``rss_before_bytes``, ``rss_after_bytes`` and
        ``rss_ratio`` (after / before).
    """
    served = load_served_models(checkpoints)
    calls = [call for call, _ in app_endpoints(served, xray, ct).values()]
    with serve_app_file(app_file, _checkpoint_flags(checkpoints)) as app:
        measure_app_latency(app.url, calls, n_requests=n_requests, concurrency=concurrency)
        before = app.rss_bytes()
        report = measure_app_latency(app.url, calls, n_requests=n_requests, concurrency=concurrency)
        after = app.rss_bytes()
    summary = report.to_dict()
    summary.update(rss_before_bytes=before, rss_after_bytes=after, rss_ratio=after / before)
    return summary
