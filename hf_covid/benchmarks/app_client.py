"""Timing a running app from outside, as users see it: concurrent ``gradio_client`` clients.

:func:`measure_app_latency` drives one endpoint; the app-latency benchmark
(:mod:`hf_covid.benchmarks.app_latency`) and the load test build on it. A benchmark client, not
part of serving.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AppCall", "LatencyReport", "measure_app_latency"]


@dataclass(frozen=True)
class LatencyReport:
    """End-to-end request latencies against a running app (seconds)."""

    n_requests: int
    concurrency: int
    latencies_s: tuple[float, ...]
    errors: tuple[str, ...]
    wall_s: float

    @property
    def p50_s(self) -> float:
        """Median latency."""
        return _percentile(self.latencies_s, 50)

    @property
    def p95_s(self) -> float:
        """95th percentile latency."""
        return _percentile(self.latencies_s, 95)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        latencies = self.latencies_s or (float("nan"),)
        return {
            "n_requests": self.n_requests,
            "concurrency": self.concurrency,
            "n_errors": len(self.errors),
            "errors": list(self.errors),
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "mean_s": statistics.fmean(latencies),
            "max_s": max(latencies),
            "throughput_per_s": len(self.latencies_s) / self.wall_s if self.wall_s else 0.0,
        }


def _percentile(values: Sequence[float], percent: float) -> float:
    return float(np.percentile(values, percent)) if values else float("nan")


AppCall = tuple[str, Sequence[Any]]
"""One request to an app: the endpoint (e.g. "/predict_chest_xray") and its inputs, files as
``gradio_client.handle_file(path)``."""


def measure_app_latency(
    url: str,
    calls: Sequence[AppCall],
    *,
    n_requests: int = 32,
    concurrency: int = 8,
    download_outputs: bool = True,
) -> LatencyReport:
    """Send ``n_requests`` predictions to a running app from ``concurrency`` clients at once and
    time each one end to end (upload, queue, model, Grad-CAM, download of the outputs).

    Args:
        url: the app's URL.
        calls: the requests to send; each client goes through them in turn, starting at its own
            offset, so several calls make a mixed load.
        n_requests: requests in total, shared among the clients.
        concurrency: clients sending at the same time, each from its own thread.
        download_outputs: also download the output images, as a browser does (False: time the
            server's answer only).

    Returns:
        The latencies of the successful requests and the messages of the failed ones.
    """
    from gradio_client import Client

    if not calls:
        raise ValueError("measure_app_latency needs at least one call")
    shares = [
        n_requests // concurrency + (index < n_requests % concurrency)
        for index in range(concurrency)
    ]

    def run_client(client_index: int) -> tuple[list[float], list[str]]:
        options = {} if download_outputs else {"download_files": False}
        client = Client(url, verbose=False, analytics_enabled=False, **options)
        latencies, errors = [], []
        try:
            for request in range(shares[client_index]):
                api_name, arguments = calls[(client_index + request) % len(calls)]
                start = time.perf_counter()
                try:
                    client.predict(*arguments, api_name=api_name)
                except Exception as error:  # count and report every failure, keep measuring
                    errors.append(f"{api_name}: {type(error).__name__}: {error}")
                else:
                    latencies.append(time.perf_counter() - start)
        finally:
            client.close()
        return latencies, errors

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(run_client, [i for i, share in enumerate(shares) if share]))
    wall = time.perf_counter() - start
    return LatencyReport(
        n_requests=n_requests,
        concurrency=concurrency,
        latencies_s=tuple(latency for latencies, _ in results for latency in latencies),
        errors=tuple(error for _, errors in results for error in errors),
        wall_s=wall,
    )
