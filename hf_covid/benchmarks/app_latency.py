"""App latency: every tab of the Gradio app end to end through ``gradio_client``, against the
same prediction called in-process."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..inference import LatencyReport, load_served_models, measure_app_latency
from ..registry import get_model_family
from .timing import timed_calls

__all__ = ["app_endpoints", "free_loopback_port", "load_app_module", "measure_app_endpoints"]

_APP_MODULE_NAME = "hf_covid_space_app"


def free_loopback_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_app_module(app_file: str | Path) -> ModuleType:
    """``spaces_app/app.py`` as a module (a Space's app file is not a package); loaded once."""
    if _APP_MODULE_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_APP_MODULE_NAME, app_file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the app from '{app_file}'")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_APP_MODULE_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_APP_MODULE_NAME]


def app_endpoints(
    served: Any, xray: str | Path, ct: str | Path
) -> dict[str, tuple[str, list[Any], Callable[[], Any]]]:
    """The app's classifier tabs, one per served classifier: endpoint name -> (API name,
    arguments, the same prediction in-process).

    Families that train on X-ray + CT data answer on ``/predict_xray_ct`` with both images; the
    others on ``/predict_chest_xray`` with the X-ray alone.
    """
    from gradio_client import handle_file  # optional: the app extra

    endpoints = {}
    for key, predictor in served.classifiers.items():
        if get_model_family(key).dataset_kind == "xray_ct":
            endpoints[f"xray_ct/{key}"] = (
                "/predict_xray_ct",
                [handle_file(str(xray)), handle_file(str(ct))],
                lambda predictor=predictor: predictor.predict(xray=str(xray), ct=str(ct)),
            )
        else:
            endpoints[f"chest_xray/{key}"] = (
                "/predict_chest_xray",
                [key, handle_file(str(xray)), None],
                lambda predictor=predictor: predictor.predict(xray=str(xray)),
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

    The app is served in this process on a free loopback port; requests are sent one after
    the other (latency, not load).

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
    app = load_app_module(app_file)
    config = app.AppConfig(checkpoints=checkpoints, examples_dir=None)
    served = load_served_models(checkpoints, max_pixels=config.max_image_pixels)
    demo = app.build_demo(config, served)
    demo.launch(
        server_name="127.0.0.1",
        server_port=free_loopback_port(),
        prevent_thread_lock=True,
        quiet=True,
        **app.launch_options(config),
    )
    results = {}
    try:
        for name, (api_name, arguments, direct) in app_endpoints(served, xray, ct).items():
            measure_app_latency(demo.local_url, api_name, arguments, n_requests=1, concurrency=1)
            report = measure_app_latency(
                demo.local_url, api_name, arguments, n_requests=n_requests, concurrency=1
            )
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
    finally:
        demo.close()
    return results
