"""The main job on the embedded default: synthetic data, demo models, evaluation, app.

``scripts/demo.py`` (``make demo``) calls :func:`run_demo`. Every step is skipped when its output
already exists and ``reuse`` is on, so a second run goes straight to serving the app.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import EVAL_RESULTS_FILE, is_complete_checkpoint_folder
from .data.synthetic import generate_all
from .evaluation import evaluate_checkpoint
from .registry import get_model_family, model_families
from .training import train_from_recipe

__all__ = [
    "DEMO_MODELS",
    "DemoSettings",
    "evaluate_demo_models",
    "format_results_table",
    "make_demo_data",
    "run_demo",
    "serve_app",
    "train_demo_models",
]

logger = logging.getLogger(__name__)

DEMO_MODELS: tuple[str, ...] = tuple(
    family.key for family in model_families() if "demo" in family.recipes
)
"""Demo checkpoints: every registered family with a demo recipe (``recipes["demo"]`` of its
record), each trained from it on the phantoms of its dataset kind
(``<output_dir>/data/<dataset_kind>``)."""


@dataclass
class DemoSettings:
    """Where the demo writes and how much it does.

    Attributes:
        output_dir: root of everything the demo writes (``data/``, ``checkpoints/``).
        images_per_class: phantoms per class and layout.
        seed: seed of the phantoms and of training.
        models: which demo models to train, evaluate and serve.
        reuse: keep data and checkpoints that already exist instead of remaking them.
        serve: start the Gradio app at the end.
        host: address the app listens on.
        port: port the app listens on.
    """

    output_dir: Path = Path("outputs/demo")
    images_per_class: int = 200
    seed: int = 0
    models: Sequence[str] = DEMO_MODELS
    reuse: bool = True
    serve: bool = True
    host: str = "127.0.0.1"
    port: int = 7860

    @property
    def data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / "checkpoints"


def make_demo_data(settings: DemoSettings) -> Path:
    """Write the synthetic phantoms (both layouts and the patient-paired variant)."""
    if settings.reuse and (settings.data_dir / "radiography").is_dir():
        print(f"[data] reusing synthetic data in {settings.data_dir}")
        return settings.data_dir
    generate_all(
        settings.data_dir,
        images_per_class=settings.images_per_class,
        seed=settings.seed,
        overwrite=True,
    )
    print(f"[data] synthetic phantoms written to {settings.data_dir}")
    return settings.data_dir


def train_demo_models(settings: DemoSettings) -> dict[str, Path]:
    """Train each demo model from its demo recipe; return the checkpoint folders."""
    folders = {}
    for name in settings.models:
        folder = settings.checkpoints_dir / name
        folders[name] = folder
        if settings.reuse and is_complete_checkpoint_folder(folder):
            print(f"[train] reusing {folder}")
            continue
        print(f"[train] {name} -> {folder}")
        family = get_model_family(name)
        train_from_recipe(
            family.recipes["demo"],
            {
                "data_dir": str(settings.data_dir / family.dataset_kind),
                "output_dir": str(folder),
                "seed": settings.seed,
            },
        )
    return folders


def evaluate_demo_models(settings: DemoSettings, folders: dict[str, Path]) -> dict[str, dict]:
    """Evaluate every checkpoint on its test split; reports go to ``<checkpoint>/evaluation_test``."""
    results = {}
    for name, folder in folders.items():
        report_dir = folder / "evaluation_test"
        report_file = report_dir / EVAL_RESULTS_FILE
        if (
            settings.reuse
            and report_file.is_file()
            and (report_file.stat().st_mtime >= (folder / "model.safetensors").stat().st_mtime)
        ):
            results[name] = json.loads(report_file.read_text())
            print(f"[evaluate] reusing {report_dir}")
            continue
        print(f"[evaluate] {name}")
        results[name] = evaluate_checkpoint(
            folder,
            data_dir=settings.data_dir / get_model_family(name).dataset_kind,
            split="test",
            output_dir=report_dir,
        )
    return results


HEADLINE_METRICS = ("accuracy", "f1_macro", "covid_sensitivity", "roc_auc", "dice", "iou")


def format_results_table(results: dict[str, dict]) -> str:
    """A Markdown table of the headline test metrics of every demo model."""
    rows = ["| model | " + " | ".join(HEADLINE_METRICS) + " |"]
    rows.append("|---" * (len(HEADLINE_METRICS) + 1) + "|")
    for name, result in results.items():
        metrics = result.get("metrics", result)
        cells = []
        for metric in HEADLINE_METRICS:
            value = metrics.get(metric)
            cells.append(f"{value:.3f}" if isinstance(value, int | float) else "-")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def serve_app(settings: DemoSettings, folders: dict[str, Path]) -> int:
    """Serve the app (:func:`hf_covid.app.main`) on the demo checkpoints until interrupted,
    with the Space's examples when run from a source checkout."""
    from .app import main as serve  # the app extra (gradio), needed only here

    arguments = ["--host", settings.host, "--port", str(settings.port)]
    for name, folder in folders.items():
        arguments += [f"--{name.replace('_', '-')}", str(folder)]
    examples = Path(__file__).resolve().parents[1] / "spaces_app" / "examples"
    if examples.is_dir():
        arguments += ["--examples-dir", str(examples)]
    print(f"[serve] starting the app on http://{settings.host}:{settings.port} (Ctrl+C stops it)")
    try:
        return serve(arguments)
    except KeyboardInterrupt:
        return 0


def run_demo(settings: DemoSettings) -> dict[str, dict]:
    """Make data, train, evaluate and (optionally) serve; return the test results per model."""
    make_demo_data(settings)
    folders = train_demo_models(settings)
    results = evaluate_demo_models(settings, folders)
    table = format_results_table(results)
    (settings.output_dir / "results.md").write_text(table + "\n")
    print("\nTest-split metrics of the demo models (synthetic phantoms; research use only):")
    print(table)
    print(f"\nCheckpoints and reports: {settings.checkpoints_dir}")
    if settings.serve:
        serve_app(settings, folders)
    return results
