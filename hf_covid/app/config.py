"""What the app serves and how much load it takes: :class:`AppConfig`, from flags, environment
variables, a models file and defaults.

Which checkpoint serves each model family, highest precedence first:

1. ``--<key>`` (e.g. ``--cnn-lstm``) or ``HF_COVID_<KEY>`` (e.g. ``HF_COVID_CNN_LSTM``): a folder,
   a Hub id, or ``org/name@revision``;
2. ``--checkpoints-dir`` / ``HF_COVID_CHECKPOINTS_DIR``: ``<dir>/<key>`` for every family (a folder
   of real-data checkpoints, as the study writes them);
3. ``--models-file`` / ``HF_COVID_MODELS_FILE``: a YAML file ``<key>: {id: org/name, revision:
   <commit>}`` (or ``<key>: org/name@revision``), what a Space deploys with;
4. the demo checkpoints ``outputs/demo/checkpoints/<key>`` under the working directory (what
   ``make demo`` writes).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..checkpoints import CheckpointSource
from ..data.validation import DEFAULT_INPUT_POLICY
from ..explain import CAM_METHODS
from ..registry import get_model_family, list_models

__all__ = [
    "DEFAULT_CHECKPOINTS_DIR",
    "AppConfig",
    "environment_variable",
    "parse_arguments",
    "read_models_file",
]

DEFAULT_CHECKPOINTS_DIR = Path("outputs") / "demo" / "checkpoints"
"""Where ``make demo`` writes its checkpoints (relative to the working directory)."""


@dataclass
class AppConfig:
    """What the app serves and how much load it accepts.

    Attributes:
        checkpoints: model key (``hf_covid.registry.list_models()``) -> where its checkpoint is.
        max_file_size: largest upload (Gradio size string, e.g. "50mb").
        max_image_pixels: largest decoded image accepted.
        concurrency_limit: predictions running at once.
        max_queue_size: requests waiting at most; more are refused with "queue full".
        sweep_every: seconds between two sweeps of the upload folder.
        max_age: seconds after its creation or last use that an upload or output file is deleted
            (examples excepted); every such file is gone within ``max_age + sweep_every``.
        upload_quota_bytes: disk space for uploads and outputs held at once; an upload that
            would pass it is refused with a message saying so.
        examples_dir: folder of example images (None: no examples).
        explanation: CAM method of the overlays, "gradcam" or "hirescam".
        explanation_stage: encoder stage explained (None: each model's last block, the Grad-CAM
            default; at the demo's 64 px, finer stages localise lesions better, see the README).
    """

    checkpoints: dict[str, str | CheckpointSource | None] = field(
        default_factory=lambda: checkpoints_in(DEFAULT_CHECKPOINTS_DIR)
    )
    max_file_size: str = "50mb"
    max_image_pixels: int = DEFAULT_INPUT_POLICY.max_pixels
    concurrency_limit: int = 2
    max_queue_size: int = 32
    sweep_every: float = 10.0
    max_age: float = 60.0
    upload_quota_bytes: int = 1024 * 2**20
    examples_dir: Path | None = None
    explanation: str = "gradcam"
    explanation_stage: int | None = None

    @property
    def deletion_bound_s(self) -> float:
        """Seconds within which every upload and output is deleted after its last use."""
        return self.max_age + self.sweep_every


def environment_variable(key: str) -> str:
    """The environment variable that names a model's checkpoint, e.g. HF_COVID_CNN_LSTM."""
    return f"HF_COVID_{key.upper()}"


def checkpoints_in(folder: str | os.PathLike) -> dict[str, str | CheckpointSource | None]:
    """``<folder>/<key>`` for every registered family."""
    return {key: str(Path(folder) / key) for key in list_models()}


def read_models_file(path: str | os.PathLike) -> dict[str, CheckpointSource]:
    """The checkpoints a models file names: ``<key>: {id: ..., revision: ...}`` or ``<key>: id``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a mapping of known model keys to ids (the message names the file and the
            entry).
    """
    path = Path(path)
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(entries, Mapping):
        raise ValueError(f"{path} must map model keys to checkpoints, got {type(entries).__name__}")
    sources = {}
    for key, entry in entries.items():
        try:
            get_model_family(key)
        except KeyError:
            raise ValueError(
                f"{path}: unknown model key {key!r}; expected {list_models()}"
            ) from None
        if isinstance(entry, str):
            sources[key] = CheckpointSource.parse(entry)
        elif isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
            revision = entry.get("revision")
            sources[key] = CheckpointSource(
                entry["id"], None if revision is None else str(revision)
            )
        else:
            raise ValueError(f"{path}: {key!r} must be an id or {{id: ..., revision: ...}}")
    return sources


def parse_arguments(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    models_file: str | os.PathLike | None = None,
) -> tuple[AppConfig, str, int]:
    """The app configuration, host and port (see the module docstring for the precedence).

    Args:
        argv: command-line arguments (None: ``sys.argv[1:]``).
        environ: environment variables (None: ``os.environ``).
        models_file: the models file used when neither ``--models-file`` nor
            ``HF_COVID_MODELS_FILE`` names one (a Space passes its own).
    """
    environ = os.environ if environ is None else environ
    defaults = AppConfig()
    parser = argparse.ArgumentParser(
        prog="hf-covid serve",
        description="Serve the hf_covid Gradio app (research software, not a diagnostic device).",
    )
    parser.add_argument("--host", default=environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(environ.get("GRADIO_SERVER_PORT", 7860)))
    for key in list_models():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            default=environ.get(environment_variable(key)),
            help=f"{get_model_family(key).display_name}: checkpoint folder, Hub id or "
            f"id@revision (env {environment_variable(key)})",
        )
    parser.add_argument(
        "--checkpoints-dir",
        default=environ.get("HF_COVID_CHECKPOINTS_DIR"),
        help="serve <dir>/<model key> for every model (env HF_COVID_CHECKPOINTS_DIR)",
    )
    parser.add_argument(
        "--models-file",
        default=environ.get("HF_COVID_MODELS_FILE", models_file),
        help="YAML file of Hub ids and revisions per model (env HF_COVID_MODELS_FILE)",
    )
    parser.add_argument("--examples-dir", type=Path, default=defaults.examples_dir)
    parser.add_argument("--max-file-size", default=defaults.max_file_size)
    parser.add_argument("--concurrency-limit", type=int, default=defaults.concurrency_limit)
    parser.add_argument("--max-queue-size", type=int, default=defaults.max_queue_size)
    parser.add_argument(
        "--max-age",
        type=float,
        default=float(environ.get("HF_COVID_UPLOAD_MAX_AGE", defaults.max_age)),
        help="seconds after its last use that an upload is deleted (env HF_COVID_UPLOAD_MAX_AGE)",
    )
    parser.add_argument(
        "--sweep-every",
        type=float,
        default=float(environ.get("HF_COVID_SWEEP_EVERY", defaults.sweep_every)),
        help="seconds between sweeps of the upload folder (env HF_COVID_SWEEP_EVERY)",
    )
    parser.add_argument(
        "--upload-quota-mb",
        type=float,
        default=float(environ.get("HF_COVID_UPLOAD_QUOTA_MB", defaults.upload_quota_bytes / 2**20)),
        help="disk space for uploads held at once, in MiB (env HF_COVID_UPLOAD_QUOTA_MB)",
    )
    parser.add_argument(
        "--explanation",
        choices=sorted(CAM_METHODS),
        default=environ.get("HF_COVID_EXPLANATION", defaults.explanation),
        help="CAM method of the overlays (env HF_COVID_EXPLANATION)",
    )
    stage = environ.get("HF_COVID_EXPLANATION_STAGE")
    parser.add_argument(
        "--explanation-stage",
        type=int,
        default=int(stage) if stage else defaults.explanation_stage,
        help="encoder stage explained, 0 = shallowest (default: each model's last block; "
        "env HF_COVID_EXPLANATION_STAGE)",
    )
    arguments = parser.parse_args(argv)
    if arguments.checkpoints_dir:
        checkpoints = checkpoints_in(arguments.checkpoints_dir)
    elif arguments.models_file:
        try:
            checkpoints = dict.fromkeys(list_models()) | read_models_file(arguments.models_file)
        except (OSError, ValueError) as error:
            parser.error(f"--models-file: {error}")
    else:
        checkpoints = defaults.checkpoints
    for key in list_models():
        if getattr(arguments, key):
            checkpoints[key] = getattr(arguments, key)
    config = AppConfig(
        checkpoints=checkpoints,
        max_file_size=arguments.max_file_size,
        concurrency_limit=arguments.concurrency_limit,
        max_queue_size=arguments.max_queue_size,
        sweep_every=arguments.sweep_every,
        max_age=arguments.max_age,
        upload_quota_bytes=int(arguments.upload_quota_mb * 2**20),
        examples_dir=arguments.examples_dir,
        explanation=arguments.explanation,
        explanation_stage=arguments.explanation_stage,
    )
    return config, arguments.host, arguments.port
