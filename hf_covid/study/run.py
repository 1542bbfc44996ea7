"""The real-data study, v2: an ablation from the first study's data to every shortcut mitigation.

``hf-covid study --collections-root public_data/`` runs, in order:

1. the lung U-Net (`LUNG_UNET`) on the human v7labs masks of the ieee8023 X-rays
   (``<output-dir>/models/lung_unet``), evaluated by Dice on held-out patients;
2. for every configuration of :data:`~hf_covid.study.configurations.STUDY_CONFIGURATIONS` (each
   adds one mitigation to the one before), on its composition (saved once under
   ``<output-dir>/data/<composition>``):

   - the collection probe and the leave-one-source-out probes on the configuration's view of
     the images (:mod:`hf_covid.study.confounds`; shared by configurations that show the same
     images);
   - every model of :data:`~hf_covid.study.configurations.ABLATION_MODELS` trained from its
     family's ``study`` recipe (:attr:`hf_covid.registry.ModelFamily.recipes`; ``--recipe
     KEY=RECIPE`` replaces one) with the configuration's settings, a full checkpoint under
     ``<output-dir>/models/<configuration>/<model>``, evaluated on its patient-grouped test
     split (intervals over patients, per source and per age group), with everything outside
     the lungs blanked, and its CAMs scored against human lung masks
     (:mod:`hf_covid.study.explanations`);
   - the hospital films held out: each model of the configuration trained again without
     COVID-CXNet (``<output-dir>/holdout/<configuration>/<model>``; the first composition holds
     none, so its models are tested as they are) and tested on all of COVID-CXNet's films
     against the adult Normal images of the adult composition's test split: adult COVID vs
     adult Normal from a hospital it never saw, the within-study stand-in for an external set;
3. ``results.json``, figures and ``public_study.md`` into ``--docs-dir``
   (:mod:`hf_covid.study.report`).

``--quick`` trains tiny models at 32 px for one epoch (CI). ``--only-analysis`` redoes step 3
from an earlier run's ``results.json``. Research software, not a diagnostic device.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from hf_covid.checkpoint_results import StudyProbes
from hf_covid.checkpoints import STUDY_PROBES_FILE, is_complete_checkpoint_folder, portable
from hf_covid.data.public.collections import find_collections
from hf_covid.data.summary import read_build_summary
from hf_covid.evaluation import evaluate_checkpoint
from hf_covid.model_card import write_model_card
from hf_covid.registry import get_model_family
from hf_covid.training.arguments import ConfigurationError, parse_arguments
from hf_covid.training.run import train

from .configurations import ABLATION_MODELS, STUDY_CONFIGURATIONS, StudyConfiguration
from .confounds import HOSPITAL_FILMS, collection_probe, leave_one_source_out, lungs_only_drop
from .explanations import explain_checkpoint
from .probe_data import FIGURES_DIR, LUNG_UNET, MODELS_DIR, StudyImages, one_torch_thread, unet_dir
from .report import draw_study_figures, study_markdown
from .session import (
    HOLDOUT_DIR,
    StudySession,
    covid_scores,
    log,
    study_recipes,
    train_model,
    without_hospital_films,
)

__all__ = ["main", "run_study"]

RESULTS_FILE = "results.json"
PARTIAL_RESULTS_FILE = "results.partial.json"
"""Written after every model, so a run stopped half-way leaves what it measured."""
DOCUMENT_FILE = "public_study.md"


def _loadavg() -> str | None:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


def _save_results(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` (local paths stripped) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(results), indent=1) + "\n")


def _train_unet(study: StudySession) -> dict[str, Any]:
    """The lung U-Net on the human masks; Dice on held-out patients."""
    log("training the lung U-Net on the human lung masks")
    started = time.perf_counter()
    trained = train(
        *parse_arguments(
            [], recipe=study.recipe(LUNG_UNET, output_dir=str(unet_dir(study.study_dir)))
        )
    )
    return {
        "train_wall_s": round(time.perf_counter() - started, 1),
        "test": {
            "metrics": trained["metrics"],
            "confidence_intervals": trained["confidence_intervals"],
        },
        "interval_unit": trained.get("interval_unit"),
        "dataset": trained["dataset"],
    }


def _evaluate_model(
    study: StudySession,
    configuration: StudyConfiguration,
    key: str,
    checkpoint: Path,
    views: dict[str, StudyImages],
) -> dict[str, Any]:
    """Internal test metrics (and COVID vs the rest, scored as the held-out films are), the
    lungs-only drop and the explanation scores of one model."""
    evaluated = evaluate_checkpoint(
        checkpoint,
        dataset=study.composition(configuration),
        split="test",
        output_dir=study.study_dir / "evaluation" / configuration.key / key,
        figures=not study.quick,
        progress=False,
        n_resamples=study.probes.n_resamples,
    )
    figure = study.study_dir / FIGURES_DIR / f"explanations_{configuration.key}_{key}.png"
    return {
        "test_covid": covid_scores(checkpoint, views["test"], study.probes),
        "test": {
            name: evaluated.get(name)
            for name in (
                "metrics",
                "confidence_intervals",
                "interval_unit",
                "per_source",
                "per_age_group",
                "masks",
            )
        },
        "lungs_only": lungs_only_drop(key, checkpoint, views["test"], study.probes),
        "explanations": explain_checkpoint(
            key, checkpoint, views["test"], study.explanations, figure
        ),
    }


def _run_configuration(
    study: StudySession, configuration: StudyConfiguration, shared: dict
) -> dict:
    """Probes, models and held-out hospital films of one configuration."""
    log(f"configuration {configuration.key}: {configuration.adds}")
    composed = study.composition(configuration)
    summary = read_build_summary(composed)
    views = study.views(configuration)
    films, normals = study.hospital_film_test(configuration)
    in_composition = HOSPITAL_FILMS in set(views["train"].sources)
    view_key = configuration.preprocessing_key
    if view_key not in shared:
        with one_torch_thread():
            shared[view_key] = {
                "view_of": configuration.key,
                "collection_probe": collection_probe(views, study.probes),
                "leave_one_source_out": leave_one_source_out(
                    views["train"], views["test"], study.probes, None if in_composition else films
                ),
            }
    entry: dict[str, Any] = {
        "key": configuration.key,
        "title": configuration.title,
        "adds": configuration.adds,
        "composition": configuration.composition,
        "data": {
            "split_sizes": {name: len(split) for name, split in composed.items()},
            "classes": composed["train"].features["label"].names,
            "strata": summary.strata if summary else [],
            "notes": summary.notes if summary else [],
        },
        **shared[view_key],
        "models": {},
    }
    for key in study.models:
        checkpoint = study.study_dir / MODELS_DIR / configuration.key / key
        log(f"{configuration.key}: training {key}")
        wall = train_model(study, configuration, key, checkpoint)
        model: dict[str, Any] = {"display_name": get_model_family(key).display_name}
        model["train_wall_s"] = wall
        with one_torch_thread():
            model |= _evaluate_model(study, configuration, key, checkpoint, views)
        held_out = checkpoint
        if in_composition:
            held_out = study.study_dir / HOLDOUT_DIR / configuration.key / key
            log(f"{configuration.key}: training {key} without {HOSPITAL_FILMS}")
            model["hospital_films_train_wall_s"] = train_model(
                study, configuration, key, held_out, without_hospital_films(study, configuration)
            )
        with one_torch_thread():
            model["hospital_films"] = {
                "n_films": len(films.labels),
                "n_controls": len(normals.labels),
                **covid_scores(held_out, films.concatenate(normals), study.probes),
            }
        entry["models"][key] = model
    return entry


def run_study(
    collections_root: str | Path,
    output_dir: str | Path,
    docs_dir: str | Path,
    *,
    quick: bool = False,
    only_analysis: bool = False,
    configurations: Sequence[str] | None = None,
    models: Sequence[str] = ABLATION_MODELS,
    recipes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run the study (see the module docstring) and return what ``results.json`` holds.

    Args:
        collections_root: The public collections side by side (``ieee8023/``, ``kermany/``,
            ``covid_ct/``, ``nih_chestxray14/``, ``covid_cxnet/``); never written to.
        output_dir: Checkpoints, evaluations, caches, figures.
        docs_dir: Where ``public_study.md``, ``public_study/results.json`` and the charts go.
        quick: Tiny models at 32 px, one epoch, tiny probes (CI).
        only_analysis: Rewrite the document and charts from an earlier run's ``results.json``.
        configurations: Keys of the configurations to run (default: all, in order).
        models: The model families each configuration trains.
        recipes: Family key -> recipe replacing its ``study`` recipe (:func:`study_recipes`).

    Raises:
        FileNotFoundError: a collection a configuration needs is missing, a recipe is missing,
            or no earlier run for ``only_analysis``.
        ValueError: ``output_dir`` or ``docs_dir`` inside ``collections_root``.
    """
    root = Path(collections_root).expanduser().resolve()
    study_dir = Path(output_dir).expanduser().resolve()
    docs_dir = Path(docs_dir).expanduser().resolve()
    for folder in (study_dir, docs_dir):
        if folder == root or root in folder.parents:
            raise ValueError(f"'{folder}' is inside the collections root '{root}'; pick another")
    chosen = [c for c in STUDY_CONFIGURATIONS if configurations is None or c.key in configurations]
    results_file = study_dir / RESULTS_FILE
    if only_analysis:
        if not results_file.is_file():
            raise FileNotFoundError(f"--only-analysis: no earlier run in '{study_dir}'")
        results = json.loads(results_file.read_text())
    else:
        missing = sorted(
            {"ieee8023", "kermany", "nih_chestxray14", "covid_cxnet"} - set(find_collections(root))
        )
        if missing:
            raise FileNotFoundError(
                f"the study needs the collections {missing} below '{root}' (side by side with "
                "the others); see docs/public_training.md"
            )
        results = _train_everything(root, study_dir, quick, study_recipes(models, recipes), chosen)
    _record_probes_on_checkpoints(results, study_dir)
    results["figures"] = draw_study_figures(results, docs_dir / "public_study")
    results = portable(results)
    _save_results(results, results_file)
    _save_results(results, docs_dir / "public_study" / RESULTS_FILE)
    (docs_dir / DOCUMENT_FILE).write_text(study_markdown(results))
    log(f"wrote {docs_dir / DOCUMENT_FILE} and {docs_dir / 'public_study' / RESULTS_FILE}")
    return results


def _record_probes_on_checkpoints(results: Mapping[str, Any], study_dir: Path) -> None:
    """Write each study checkpoint's ``study_probes.json`` and re-render its model card, so the
    card shows what the study measured of it (rewritten on every run: never an earlier run's)."""
    for configuration in results["configurations"]:
        for key in configuration["models"]:
            checkpoint = study_dir / MODELS_DIR / configuration["key"] / key
            if not is_complete_checkpoint_folder(checkpoint):
                log(f"{checkpoint}: no checkpoint here; its study probes are not recorded on it")
                continue
            StudyProbes.from_study_results(configuration, key).save(checkpoint / STUDY_PROBES_FILE)
            write_model_card(checkpoint)


def _train_everything(
    root: Path,
    study_dir: Path,
    quick: bool,
    recipes: Mapping[str, str],
    configurations: Sequence[StudyConfiguration],
) -> dict[str, Any]:
    started = time.perf_counter()
    study = StudySession(root, study_dir, quick, recipes)
    results: dict[str, Any] = {
        "study": {
            "started_utc": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}",
            "quick": quick,
            "loadavg_start": _loadavg(),
            "collections_root": root.name,
            "collections_found": sorted(find_collections(root)),
            "torch_threads": torch.get_num_threads(),
            "recipes": dict(recipes),
        },
        "unet": _train_unet(study),
        "configurations": [],
    }
    shared: dict = {}
    for configuration in configurations:
        results["configurations"].append(_run_configuration(study, configuration, shared))
        _save_results(results, study_dir / PARTIAL_RESULTS_FILE)
    results["study"]["wall_s"] = round(time.perf_counter() - started, 1)
    results["study"]["loadavg_end"] = _loadavg()
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="The ablation study on the public collections: every configuration's models "
        "trained, evaluated and probed for shortcuts; writes docs/public_study.md. Research "
        "software, not a diagnostic device.",
    )
    parser.add_argument(
        "--collections-root",
        required=True,
        help="Folder with ieee8023/, kermany/, covid_ct/, nih_chestxray14/ and covid_cxnet/ side "
        "by side (never written to).",
    )
    parser.add_argument(
        "--output-dir",
        default="outputs/study",
        help="Checkpoints (models/lung_unet, models/<configuration>/<model>), evaluations, "
        "caches and figures (default: outputs/study).",
    )
    parser.add_argument(
        "--docs-dir",
        default=None,
        help="Where public_study.md and public_study/ (results.json, charts) go (default: "
        "<output-dir>/docs; the committed run uses docs/).",
    )
    parser.add_argument("--quick", action="store_true", help="Tiny models, 32 px (CI).")
    parser.add_argument(
        "--only-analysis",
        action="store_true",
        help="Rewrite the document and charts from an earlier run's results.json.",
    )
    parser.add_argument(
        "--configurations",
        nargs="+",
        default=None,
        metavar="KEY",
        help="Configurations to run (default: all): "
        + ", ".join(c.key for c in STUDY_CONFIGURATIONS),
    )
    parser.add_argument(
        "--models", nargs="+", default=list(ABLATION_MODELS), help="Model families to train."
    )
    parser.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="KEY=RECIPE",
        help="A family and the recipe (a packaged recipe's name or a YAML file) it trains with "
        "instead of its study recipe, e.g. resnet=my_resnet.yaml; repeat for each.",
    )
    parser.add_argument(
        "--num-threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's). On a CPU shared with other jobs, 1 is "
        "several times faster than 2 (no oversubscription).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the study; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    docs_dir = args.docs_dir or str(Path(args.output_dir) / "docs")
    pairs = [choice.partition("=") for choice in args.recipe]
    if any(not key or not recipe for key, _, recipe in pairs):
        print(f"error: --recipe takes KEY=RECIPE, got {args.recipe}", file=sys.stderr)
        return 2
    try:
        results = run_study(
            args.collections_root,
            args.output_dir,
            docs_dir,
            quick=args.quick,
            only_analysis=args.only_analysis,
            configurations=args.configurations,
            models=args.models,
            recipes={key: recipe for key, _, recipe in pairs},
        )
    except (FileNotFoundError, ValueError, KeyError, ConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.only_analysis:
        log(f"study done in {results['study'].get('wall_s')} s")
    return 0
