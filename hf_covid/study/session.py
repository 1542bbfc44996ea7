"""One run of the study: its folders, recipes, compositions and views, and the pieces each
configuration's models are trained, scored and held out with (:mod:`hf_covid.study.run` runs
them in order). Research software, not a diagnostic device."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from datasets import DatasetDict, concatenate_datasets

from hf_covid.checkpoints import load_checkpoint
from hf_covid.data.public.compose import compose_radiography
from hf_covid.data.summary import read_build_summary
from hf_covid.evaluation.external import external_metrics
from hf_covid.evaluation.predict import class_names_of
from hf_covid.lung_masks import LungSegmenter
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.registry import get_model_family
from hf_covid.training.arguments import checked_recipe, parse_arguments
from hf_covid.training.run import train

from .configurations import ADULT_COMPOSITION, LUNG_CROP_MARGIN, StudyConfiguration
from .confounds import HOSPITAL_FILMS, ProbeSettings, probe_settings
from .explanations import explanation_settings
from .probe_data import (
    LUNG_UNET,
    StudyImages,
    composition_dir,
    load_study_images,
    predict_probabilities,
    unet_dir,
)

__all__ = [
    "COMPOSITION_OPTIONS",
    "HOLDOUT_DIR",
    "STUDY_RECIPE",
    "StudySession",
    "covid_scores",
    "log",
    "study_recipes",
    "train_model",
    "without_hospital_films",
]

STUDY_RECIPE = "study"
"""The recipe purpose (:data:`hf_covid.registry.RECIPE_PURPOSES`) a family trains with here."""
HOLDOUT_DIR = "holdout"
"""Below the output folder: ``<configuration>/<model>`` trained without COVID-CXNet."""


def log(message: str) -> None:
    """A time-stamped progress line of the study."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def study_recipes(
    models: Sequence[str], recipes: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Family key -> the recipe (a packaged recipe's name or a YAML path) it trains with: the
    lung U-Net and ``models``, each with its family's ``study`` recipe unless ``recipes`` names
    another.

    Raises:
        KeyError: an unknown family, or one without a ``study`` recipe and none given.
    """
    given = {get_model_family(key).key: recipe for key, recipe in (recipes or {}).items()}
    chosen = {}
    for key in (LUNG_UNET, *models):
        family = get_model_family(key)
        recipe = given.get(family.key) or family.recipes.get(STUDY_RECIPE)
        if recipe is None:
            raise KeyError(f"{family.key} has no {STUDY_RECIPE!r} recipe; pass --recipe {key}=...")
        chosen[family.key] = recipe
    return chosen


def _quick_overrides(key: str) -> dict[str, Any]:
    family = get_model_family(key)
    return {
        "config_overrides": dict(family.tiny_config),
        "image_size": 32,
        "num_train_epochs": 2 if family.task == "segmentation" else 1,
        "per_device_train_batch_size": 16,
        "logging_steps": 1,
        "early_stopping_patience": 0,
    }


class StudySession:
    """One run's folders, base recipes and settings (see the module docstring)."""

    def __init__(
        self, root: Path, study_dir: Path, quick: bool, recipes: Mapping[str, str]
    ) -> None:
        self.root, self.study_dir, self.quick = root, study_dir, quick
        self.recipes = dict(recipes)
        self.models = tuple(key for key in recipes if key != LUNG_UNET)
        self.probes: ProbeSettings = probe_settings(quick)
        self.explanations = explanation_settings(quick)
        self.cache = study_dir / "cache"
        self._views: dict[tuple, dict[str, StudyImages]] = {}
        self._compositions: dict[str, DatasetDict] = {}
        self._segmenter: LungSegmenter | None = None

    def recipe(self, key: str, **overrides: Any) -> dict[str, Any]:
        values = checked_recipe(self.recipes[key])
        values |= {
            "data_dir": str(self.root),
            "cache_dir": str(self.cache),
            "report_to": "none",
            "save_total_limit": 1,
            "disable_tqdm": True,
        }
        if self.quick:
            values |= _quick_overrides(key)
        return values | overrides

    @property
    def segmenter(self) -> LungSegmenter:
        if self._segmenter is None:
            self._segmenter = LungSegmenter.from_pretrained(unet_dir(self.study_dir))
        return self._segmenter

    def composition(self, configuration: StudyConfiguration) -> DatasetDict:
        """The configuration's composition, composed once with the first model's split options
        (the same for every model's recipe) and saved for the probes."""
        name = configuration.composition
        if name not in self._compositions:
            values = self.recipe(self.models[0])
            log(f"composing the public collections: {name}")
            composed = compose_radiography(
                self.root,
                composition=name,
                classes=configuration.classes,
                split_ratios=tuple(values.get("split_ratios", (0.7, 0.15, 0.15))),
                seed=values.get("split_seed", 42),
                cache_dir=self.cache,
            )
            composed.save_to_disk(str(composition_dir(self.study_dir, name)))
            self._compositions[name] = composed
        return self._compositions[name]

    def view_processor(self, configuration: StudyConfiguration) -> ChestImageProcessor:
        size = int(self.recipe(self.models[0])["image_size"])
        return ChestImageProcessor(
            size={"height": size, "width": size},
            lung_crop_margin=LUNG_CROP_MARGIN if configuration.lung_crop else None,
            intensity_standardization=configuration.intensity_standardization,
        )

    def views(self, configuration: StudyConfiguration) -> dict[str, StudyImages]:
        """The configuration's images (train with validation, validation, test) as its models
        see them, loaded once per view."""
        key = configuration.preprocessing_key
        if key not in self._views:
            composed = self.composition(configuration)
            processor = self.view_processor(configuration)

            def load(split) -> StudyImages:
                return load_study_images(split, processor, self.segmenter, self.cache)

            self._views[key] = {
                "train": load(concatenate_datasets([composed["train"], composed["validation"]])),
                "validation": load(composed["validation"]),
                "test": load(composed["test"]),
            }
        return self._views[key]

    def hospital_film_test(
        self, configuration: StudyConfiguration
    ) -> tuple[StudyImages, StudyImages]:
        """The unseen-hospital test in the configuration's view: every COVID-CXNet film, and the
        adult Normal images of the adult composition's test split (NIH, ieee8023) against
        them, so that every configuration meets the same adult COVID vs adult Normal task."""
        key = ("hospital films", *configuration.preprocessing_key)
        if key not in self._views:
            adult = self.composition(ADULT_COMPOSITION)
            processor = self.view_processor(configuration)
            every = concatenate_datasets(list(adult.values()))
            films = every.select(np.flatnonzero(np.array(every["source"]) == HOSPITAL_FILMS))
            normal = adult["test"].features["label"].names.index("Normal")
            normals = adult["test"].select(
                np.flatnonzero(np.array(adult["test"]["label"]) == normal)
            )
            self._views[key] = {
                name: load_study_images(split, processor, self.segmenter, self.cache)
                for name, split in (("films", films), ("normals", normals))
            }
        return self._views[key]["films"], self._views[key]["normals"]


def covid_scores(checkpoint: Path, images: StudyImages, settings: ProbeSettings) -> dict:
    """A checkpoint's COVID-vs-the-rest scores on images of a study view, the way an external
    evaluation scores a folder (:func:`~hf_covid.evaluation.external.external_metrics`: COVID
    sensitivity, specificity and ROC-AUC of COVID, accuracy), with intervals over patients.

    The images' classes are matched to the model's by name (every one must be a model class).
    """
    model, processor = load_checkpoint(checkpoint)
    class_names = class_names_of(model.config)
    labels = np.array([class_names.index(images.class_names[i]) for i in images.labels])
    probabilities = predict_probabilities(model, processor, images.images, images.unet_masks)
    return external_metrics(
        labels,
        probabilities,
        class_names,
        n_resamples=settings.n_resamples,
        seed=settings.seed,
        groups=images.groups,
    )


COMPOSITION_OPTIONS = ("composition", "class_map", "age_groups")
"""Recipe options that choose a composition: dropped when a model trains on a saved dataset."""


def train_model(
    study: StudySession,
    configuration: StudyConfiguration,
    key: str,
    output_dir: Path,
    data_dir=None,
) -> float:
    """Train one model of a configuration (on ``data_dir``, a saved dataset, when given);
    returns the training wall time in seconds."""
    family = get_model_family(key)
    overrides = configuration.recipe_overrides(
        unet_dir(study.study_dir), "lung_mask" in family.input_names
    )
    if data_dir is not None:
        overrides = {k: v for k, v in overrides.items() if k not in COMPOSITION_OPTIONS}
        overrides["data_dir"] = str(data_dir)
    values = study.recipe(key, output_dir=str(output_dir), **overrides)
    started = time.perf_counter()
    train(*parse_arguments([], recipe=values))
    return round(time.perf_counter() - started, 1)


def without_hospital_films(study: StudySession, configuration: StudyConfiguration) -> Path:
    """The configuration's composition with COVID-CXNet removed from train and validation,
    saved once (the held-out-hospital models train on it)."""
    folder = composition_dir(
        study.study_dir, f"{configuration.composition}_without_{HOSPITAL_FILMS}"
    )
    if not folder.is_dir():
        composed = study.composition(configuration)
        kept = DatasetDict(
            {
                name: split.filter(lambda source: source != HOSPITAL_FILMS, input_columns="source")
                if name != "test"
                else split
                for name, split in composed.items()
            }
        )
        summary = read_build_summary(composed)
        if summary is not None:
            summary.notes.append(
                f"{HOSPITAL_FILMS} removed from the train and validation splits: its hospital "
                "films are held out as an unseen hospital."
            )
            for split in kept.values():
                split.info.description = summary.to_json()
        kept.save_to_disk(str(folder))
    return folder
