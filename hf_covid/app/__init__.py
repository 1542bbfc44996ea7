"""The Gradio app: COVID-19 chest X-ray and CT classification with Grad-CAM, lung masks and
feature maps, and, beside every answer, what the model was trained on, its test metrics and
whether the upload looks like what the model expects. Research software, not a diagnostic
device.

``hf-covid serve [--checkpoints-dir DIR | --models-file FILE | --cnn-lstm ID ...]`` runs
:func:`main`; a Space runs ``spaces_app/app.py``, which builds the same app with
:func:`space_app`. Modules: :mod:`.config` (what is served, from flags, environment, models
file), :mod:`.page` (the page and its handlers), :mod:`.text` (what it says), :mod:`.uploads`
(the upload sweeper and the upload quota).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from .config import AppConfig, environment_variable, parse_arguments, read_models_file
from .page import ChestApp, build_app
from .uploads import UploadQuota, UploadSweeper

__all__ = [
    "AppConfig",
    "ChestApp",
    "UploadQuota",
    "UploadSweeper",
    "build_app",
    "configure_logging",
    "environment_variable",
    "main",
    "parse_arguments",
    "read_models_file",
    "serve",
    "space_app",
]


def space_app(
    space_dir: str | os.PathLike, argv: Sequence[str] | None = None
) -> tuple[ChestApp, str, int]:
    """The app as a Space folder configures it, with the host and port to serve it on.

    Models come from ``<space_dir>/models.yaml`` unless flags or environment variables say
    otherwise (see :mod:`.config`), examples from ``<space_dir>/examples``.
    """
    configure_logging()
    space_dir = Path(space_dir)
    config, host, port = parse_arguments(argv, models_file=space_dir / "models.yaml")
    if config.examples_dir is None:
        config.examples_dir = space_dir / "examples"
    return build_app(config), host, port


def configure_logging() -> None:
    """Warnings from every library; from hf_covid also which models are served, and why not."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("hf_covid").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the app until interrupted (``hf-covid serve``); returns the exit status."""
    configure_logging()
    config, host, port = parse_arguments(argv)
    app = build_app(config)
    return serve(app, host, port)


def serve(app: ChestApp, host: str, port: int) -> int:
    """Launch ``app``, print its URL and block until interrupted; returns the exit status."""
    url = app.launch(host, port)
    if url is None:
        # `gradio app.py` reload mode runs the app file again in its watcher thread, where launch
        # starts nothing (the first run serves) and blocking would stop the watching.
        return 0
    print(f"hf_covid app running on {url}", flush=True)
    try:
        app.demo.block_thread()
    finally:
        app.close()
    return 0
