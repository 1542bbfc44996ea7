"""The real-data study: train every model on the public collections, evaluate, probe, report.

``python scripts/study.py --collections-root public_data/`` (the public collections root) runs,
in order, for every registered model family whose record names a ``study`` recipe
(:func:`study_models`; ``--recipe KEY=RECIPE`` chooses the families and recipes instead):

1. the segmentation family (the lung U-Net) on the human v7labs masks;
2. the public Radiography composition with the U-Net's mask for every image, saved to disk
   beside the plain compositions (``<output-dir>/data/{radiography,xray_ct}``)
   (`hf_covid.lung_masks`), so a model that takes a lung mask (the dual-channel model) cannot
   read the class from a mask's presence;
3. the classifiers from their recipes, each on the composition of its dataset kind; final
   checkpoints under ``<output-dir>/models/<family key>``;
4. every model evaluated on its patient-grouped test split with 95% bootstrap intervals, per
   source (`hf_covid.evaluation.evaluate_checkpoint`), next to the published anchors; the U-Net
   by Dice / IoU on held-out patients; a model taking a lung mask with human vs U-Net masks;
   the dual-input model with both inputs, the X-ray only and the CT only;
5. the confound probes and the explanation scores (`hf_covid.study.confounds`,
   `hf_covid.study.explanations`), when importable;
6. ``results.json``, figures and ``public_study.md`` into ``--docs-dir``
   (`hf_covid.study.report`).

``--quick`` trains tiny models at 32 px for one or two epochs (CI). ``--only-analysis`` reuses
the checkpoints and evaluations of an earlier run and redoes step 5 and 6 only. Research
software, not a diagnostic device.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk

from hf_covid.checkpoints import portable
from hf_covid.data.public.compose import compose_radiography, compose_xray_ct, find_collections
from hf_covid.data.summary import read_build_summary
from hf_covid.evaluation import evaluate_checkpoint
from hf_covid.lung_masks import HUMAN_MASK_COLUMN, LungSegmenter, add_unet_masks, with_human_masks
from hf_covid.registry import ModelFamily, get_model_family, model_families
from hf_covid.training.arguments import DataArguments, checked_recipe, parse_arguments
from hf_covid.training.data import mask_presence
from hf_covid.training.run import train

from .probe_data import COMPOSITIONS_DIR, MODELS_DIR
from .report import study_markdown

__all__ = ["STUDY_RECIPE", "main", "run_study", "study_models", "study_recipes"]

STUDY_RECIPE = "study"
"""The recipe purpose (:data:`hf_covid.registry.RECIPE_PURPOSES`) a family takes part with."""

RESULTS_FILE = "results.json"
PARTIAL_RESULTS_FILE = "results.partial.json"
"""Written after every model, so a run stopped half-way leaves what it measured."""
DOCUMENT_FILE = "public_study.md"
UNET_MASK_DATASET = Path(COMPOSITIONS_DIR) / "radiography_unet_masks"
"""Below the output folder: the composition with U-Net masks the dual-channel model trains on."""
QUICK_EPOCHS = {"segmentation": 2}
"""``--quick`` epochs by task, where one is not enough to leave the initial state."""


def study_recipes(recipes: Mapping[str, str] | None = None) -> dict[str, str]:
    """Family key -> the recipe (a packaged recipe's name or a YAML path) it trains with.

    Args:
        recipes: Family key -> recipe: exactly these families take part, with these recipes
            (e.g. the variants of an ablation). None: every registered family whose record
            names a ``study`` recipe (:attr:`hf_covid.registry.ModelFamily.recipes`), with it.

    Raises:
        KeyError: an unknown family.
    """
    if recipes is None:
        return {
            family.key: family.recipes[STUDY_RECIPE]
            for family in model_families()
            if STUDY_RECIPE in family.recipes
        }
    return {get_model_family(key).key: recipe for key, recipe in recipes.items()}


def study_models(recipes: Mapping[str, str] | None = None) -> tuple[ModelFamily, ...]:
    """The families that take part (:func:`study_recipes`), in training order: segmentation
    families (the lung U-Net) first, since a model that takes a lung mask trains on their masks;
    otherwise in registration order."""
    chosen = study_recipes(recipes)
    taking_part = [family for family in model_families() if family.key in chosen]
    return tuple(sorted(taking_part, key=lambda family: family.task != "segmentation"))


def _log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _loadavg() -> str | None:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


def _recipe(recipe: str, overrides: dict[str, Any]) -> dict[str, Any]:
    values = checked_recipe(recipe)
    values.update(overrides)
    return values


def _quick_overrides(key: str) -> dict[str, Any]:
    return {
        "config_overrides": dict(get_model_family(key).tiny_config),
        "image_size": 32,
        "num_train_epochs": QUICK_EPOCHS.get(get_model_family(key).task, 1),
        "per_device_train_batch_size": 16,
        "logging_steps": 1,
        "early_stopping_patience": 0,
        "disable_tqdm": True,
    }


def _split_options(values: dict[str, Any]) -> dict[str, Any]:
    """The composition options a recipe trains with (so evaluation sees the same test split)."""
    names = {field.name for field in dataclasses.fields(DataArguments)}
    data_args = DataArguments(**{name: value for name, value in values.items() if name in names})
    return {
        "split_ratios": tuple(data_args.split_ratios),
        "seed": data_args.split_seed,
        "deduplicate": data_args.deduplicate,
        "cache_dir": data_args.cache_dir,
    }


def _train(values: dict[str, Any]) -> dict[str, Any]:
    return train(*parse_arguments([], recipe=values))


def _evaluate(checkpoint: Path, dataset, output_dir: Path, *, figures: bool = True) -> dict:
    return evaluate_checkpoint(
        checkpoint,
        dataset=dataset,
        split="test",
        output_dir=output_dir,
        figures=figures,
        progress=False,
    )


def _data_summary(dataset: DatasetDict) -> dict[str, Any]:
    """Rows per split, class and source, plus the composition's notes."""
    names = dataset["train"].features["label"].names
    source_column = "source" if "source" in dataset["train"].column_names else "xray_source"
    per_split = {}
    for split_name, split in dataset.items():
        counts: dict[str, dict[str, int]] = {}
        for label, source in zip(split["label"], split[source_column], strict=True):
            counts.setdefault(names[label], {}).setdefault(source or "(none)", 0)
            counts[names[label]][source or "(none)"] += 1
        per_split[split_name] = counts
    summary = read_build_summary(dataset)
    return {
        "classes": names,
        "split_sizes": {name: len(split) for name, split in dataset.items()},
        "per_split_class_source": per_split,
        "notes": list(summary.notes) if summary else [],
        "masks": dict(summary.masks) if summary else {},
    }


def _mask_comparison(checkpoint: Path, dataset: DatasetDict, output_dir: Path) -> dict:
    """The dual-channel model on the test images that have a human mask: human vs U-Net mask."""
    test = dataset["test"]
    has_human = mask_presence(test, HUMAN_MASK_COLUMN)
    if not has_human.any():
        return {"n_images": 0}
    unet = test.select(np.flatnonzero(has_human)).remove_columns(HUMAN_MASK_COLUMN)
    human = with_human_masks(test)
    results = {"n_images": int(has_human.sum())}
    for name, split in (("human_masks", human), ("unet_masks", unet)):
        evaluated = _evaluate(checkpoint, split, output_dir / name, figures=False)
        results[name] = {
            "metrics": evaluated["metrics"],
            "confidence_intervals": evaluated["confidence_intervals"],
        }
    return results


def _copy_figure(source: Path, docs_figures: Path, name: str) -> str | None:
    if not source.is_file():
        return None
    docs_figures.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, docs_figures / name)
    return name


def _optional_analysis(
    name: str, study_dir: Path, collections_root: Path, quick: bool
) -> tuple[dict, str | None]:
    """``run_<name>`` and ``<name>_markdown`` of ``hf_covid.study.<name>``, if importable.

    A failure is recorded (``status``, ``error``) instead of raised: the trained models and
    their evaluation are worth writing down without it, and ``--only-analysis`` retries.
    """
    try:
        module = importlib.import_module(f"hf_covid.study.{name}")
    except ImportError as error:
        _log(f"{name}: not run ({error})")
        return {"status": "not run", "reason": str(error)}, None
    runner: Callable[..., dict] = getattr(module, f"run_{name}")
    render: Callable[[dict], str] = getattr(module, f"{name}_markdown")
    _log(f"{name}: running")
    started = time.perf_counter()
    try:
        result = runner(study_dir, collections_root, quick=quick)
    except Exception as error:  # noqa: BLE001 - any failure of the probe is reported, not fatal
        _log(f"{name}: failed\n{traceback.format_exc()}")
        return {"status": "failed", "reason": f"{type(error).__name__}: {error}"}, None
    _log(f"{name}: done in {time.perf_counter() - started:.0f} s")
    return result, render(result)


def _save_results(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` (local paths stripped) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(results), indent=1) + "\n")


def _train_and_evaluate(
    key: str,
    values: dict[str, Any],
    dataset: DatasetDict,
    study_dir: Path,
    docs_figures: Path,
) -> dict[str, Any]:
    checkpoint = study_dir / MODELS_DIR / key
    started = time.perf_counter()
    trained = _train(values)
    train_wall = time.perf_counter() - started
    _log(f"{key}: trained in {train_wall:.0f} s; evaluating on the test split")
    evaluated = _evaluate(checkpoint, dataset, study_dir / "evaluation" / key)
    figure = _copy_figure(
        study_dir / "evaluation" / key / "figures" / "confusion_matrix.png",
        docs_figures,
        f"{key}_confusion_matrix.png",
    )
    return {
        "display_name": get_model_family(key).display_name,
        "recipe": {
            name: values[name]
            for name in ("image_size", "num_train_epochs", "config_overrides", "learning_rate")
            if name in values
        },
        "train_wall_s": round(train_wall, 1),
        "training": trained["training"],
        "dataset": trained["dataset"],
        "test": {
            name: evaluated.get(name)
            for name in ("metrics", "confidence_intervals", "per_source", "modalities")
        },
        "confusion_matrix_figure": figure,
    }


def run_study(
    collections_root: str | Path,
    output_dir: str | Path,
    docs_dir: str | Path,
    *,
    quick: bool = False,
    only_analysis: bool = False,
    recipes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run the study (see the module docstring) and return what ``results.json`` holds.

    Args:
        collections_root: The public collections side by side (``ieee8023/``, ``kermany/``,
            ``covid_ct/``); never written to.
        output_dir: Checkpoints, evaluations, caches (``models/<key>``, ``evaluation/<key>``).
        docs_dir: Where ``public_study.md``, ``public_study/results.json`` and the figures go.
        quick: Tiny models at 32 px, one or two epochs (CI).
        only_analysis: Reuse the checkpoints and evaluations of an earlier run in
            ``output_dir`` (its ``results.json``); redo the confounds, explanations and document.
        recipes: Family key -> recipe of the families that take part (:func:`study_recipes`;
            None: the ``study`` recipe of every family that has one).

    Raises:
        FileNotFoundError: no public collection below ``collections_root``, or no earlier run
            for ``only_analysis``.
        ConfigurationError: a recipe that does not exist or does not fit.
        ValueError: ``output_dir`` or ``docs_dir`` inside ``collections_root``.
    """
    root = Path(collections_root).expanduser().resolve()
    study_dir = Path(output_dir).expanduser().resolve()
    docs_dir = Path(docs_dir).expanduser().resolve()
    found = find_collections(root)
    if not found:
        raise FileNotFoundError(
            f"no public collection below '{root}': expected ieee8023/, kermany/ and covid_ct/ "
            "side by side"
        )
    for folder in (study_dir, docs_dir):
        if folder == root or root in folder.parents:
            raise ValueError(f"'{folder}' is inside the collections root '{root}'; pick another")
    docs_figures = docs_dir / "public_study"
    started = time.perf_counter()
    study_results_file = study_dir / RESULTS_FILE
    if only_analysis:
        if not study_results_file.is_file():
            raise FileNotFoundError(f"--only-analysis: no earlier run in '{study_dir}'")
        results = json.loads(study_results_file.read_text())
    else:
        results = _train_everything(root, study_dir, docs_figures, quick, study_recipes(recipes))
        _save_results(results, study_results_file)
    for name in ("confounds", "explanations"):
        result, markdown = _optional_analysis(name, study_dir, root, quick)
        results[name] = result
        results[f"{name}_markdown"] = markdown
    # Charts only: the explanation overlays show the collections' X-rays, whose licences
    # (NC, ND, none stated) keep them out of a repository; they stay under <output-dir>/figures.
    charts = (results["confounds"] or {}).get("figures") or {}
    results["analysis_figures"] = [
        _copy_figure(study_dir / "figures" / name, docs_figures, name)
        for name in sorted(charts.values())
    ]
    results["study"]["collections_found"] = sorted(found)
    results["study"]["analysis_wall_s"] = round(time.perf_counter() - started, 1)
    results["study"]["only_analysis"] = only_analysis
    results["study"]["loadavg_end"] = _loadavg()
    results = portable(results)
    _save_results(results, study_results_file)
    _save_results(results, docs_figures / RESULTS_FILE)
    (docs_dir / DOCUMENT_FILE).write_text(study_markdown(results))
    _log(f"wrote {docs_dir / DOCUMENT_FILE} and {docs_figures / RESULTS_FILE}")
    return results


def _train_everything(
    root: Path, study_dir: Path, docs_figures: Path, quick: bool, chosen: dict[str, str]
) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {
        "study": {
            "started_utc": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}",
            "quick": quick,
            "loadavg_start": _loadavg(),
            "collections_root": root.name,
            "torch_threads": torch.get_num_threads(),
        },
        "models": {},
    }
    common = {
        "data_dir": str(root),
        "cache_dir": str(study_dir / "cache"),
        "report_to": "none",
        "save_total_limit": 1,
    }
    families = study_models(chosen)
    recipes = {
        family.key: _recipe(
            chosen[family.key],
            common
            | {"output_dir": str(study_dir / MODELS_DIR / family.key)}
            | (_quick_overrides(family.key) if quick else {}),
        )
        for family in families
    }
    compositions = _compose(root, families, recipes, study_dir)
    results["data"] = {kind: _data_summary(composed) for kind, composed in compositions.items()}
    segmenters = [family.key for family in families if family.task == "segmentation"]
    unet_masks = None
    for index, family in enumerate(families, start=1):
        key = family.key
        _log(f"({index}/{len(families)}) training {key}")
        values, dataset = recipes[key], compositions[family.dataset_kind]
        takes_mask = "lung_mask" in family.input_names
        if takes_mask:
            if not segmenters:
                raise FileNotFoundError(
                    f"{key} takes a lung mask but no segmentation family takes part"
                )
            if unet_masks is None:
                segmenter_dir = study_dir / MODELS_DIR / segmenters[0]
                unet_masks = _unet_mask_dataset(dataset, segmenter_dir, study_dir, quick)
            dataset = unet_masks
            values = values | {"data_dir": str(study_dir / UNET_MASK_DATASET)}
        results["models"][key] = _train_and_evaluate(key, values, dataset, study_dir, docs_figures)
        if takes_mask:
            _log(f"{key}: human vs U-Net masks on the test images that have both")
            results["models"][key]["mask_comparison"] = _mask_comparison(
                study_dir / MODELS_DIR / key, dataset, study_dir / "evaluation" / f"{key}_masks"
            )
        _save_results(results, study_dir / PARTIAL_RESULTS_FILE)
    if unet_masks is not None:
        results["data"][UNET_MASK_DATASET.name] = _data_summary(unet_masks)
    results["study"]["training_wall_s"] = round(time.perf_counter() - started, 1)
    return results


def _compose(
    root: Path, families: Sequence[ModelFamily], recipes: dict[str, dict], study_dir: Path
) -> dict[str, DatasetDict]:
    """One composition per dataset kind of ``families``, with the split options (and, for the
    Radiography layout, the classes) of the first classifier's recipe of that kind (else the
    first family's); saved under ``<study_dir>/data/<kind>`` for the probes."""
    first_recipe: dict[str, dict] = {}
    for family in sorted(families, key=lambda family: family.task != "classification"):
        first_recipe.setdefault(family.dataset_kind, recipes[family.key])
    compositions = {}
    for kind, values in first_recipe.items():
        _log(f"composing the public collections in the {kind} layout")
        if kind == "xray_ct":
            composed = compose_xray_ct(root, **_split_options(values))
        else:
            composed = compose_radiography(
                root, classes=values.get("classes"), **_split_options(values)
            )
        composed.save_to_disk(str(study_dir / COMPOSITIONS_DIR / kind))
        compositions[kind] = composed
    return compositions


def _unet_mask_dataset(
    dataset: DatasetDict, segmenter_dir: Path, study_dir: Path, quick: bool
) -> DatasetDict:
    """The composition with the trained U-Net's mask for every image, saved and reloaded."""
    _log("lung U-Net masks for every image of the Radiography composition")
    segmenter = LungSegmenter.from_pretrained(segmenter_dir)
    target = study_dir / UNET_MASK_DATASET
    masked = add_unet_masks(
        dataset, segmenter, study_dir / COMPOSITIONS_DIR / "unet_masks", progress=not quick
    )
    if target.exists():
        shutil.rmtree(target)
    masked.save_to_disk(str(target))
    return load_from_disk(str(target))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train and evaluate every hf_covid model on the public collections, measure "
        "the confounds, write docs/public_study.md. Research software, not a diagnostic device.",
    )
    parser.add_argument(
        "--collections-root",
        required=True,
        help="Folder with ieee8023/, kermany/ and covid_ct/ side by side (never written to).",
    )
    parser.add_argument(
        "--output-dir",
        default="outputs/study",
        help="Checkpoints (models/<key>), evaluations and caches (default: outputs/study).",
    )
    parser.add_argument(
        "--docs-dir",
        default=None,
        help="Where public_study.md and public_study/ (results.json, figures) go "
        "(default: <output-dir>/docs; the committed run uses docs/).",
    )
    parser.add_argument("--quick", action="store_true", help="Tiny models, 32 px (CI).")
    parser.add_argument(
        "--only-analysis",
        action="store_true",
        help="Reuse the checkpoints of an earlier run; redo the probes and the document.",
    )
    parser.add_argument(
        "--recipe",
        action="append",
        metavar="KEY=RECIPE",
        help="A family and the recipe (a packaged recipe's name or a YAML file) it trains with, "
        "e.g. cnn_lstm=cnn_lstm_public; repeat for each family that takes part (default: every "
        "family whose registry record names a study recipe, with it).",
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
    recipes = None
    if args.recipe:
        pairs = [choice.partition("=") for choice in args.recipe]
        if any(not key or not recipe for key, _, recipe in pairs):
            print(f"error: --recipe takes KEY=RECIPE, got {args.recipe}", file=sys.stderr)
            return 2
        recipes = {key: recipe for key, _, recipe in pairs}
    try:
        results = run_study(
            args.collections_root,
            args.output_dir,
            docs_dir,
            quick=args.quick,
            only_analysis=args.only_analysis,
            recipes=recipes,
        )
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    study = results["study"]
    what = "analysis" if args.only_analysis else "study"
    _log(
        f"{what} done in {study['analysis_wall_s']:.0f} s (training: {study.get('training_wall_s')} s)"
    )
    return 0
