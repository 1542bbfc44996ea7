"""The models an app serves: where each checkpoint comes from, loading them, and what each was
trained on and scored.

A checkpoint is named by a :class:`~hf_covid.checkpoints.CheckpointSource`: a local folder, or a
Hub id with an optional revision (``"org/covid-cnn-lstm@3f2a..."``), resolved by
:func:`~hf_covid.checkpoints.resolve_checkpoint`. :func:`load_served_models` loads one per
registered family and reports, never raises, a missing or broken one. For every served model,
:class:`ModelProvenance` says in plain words what it was trained on (from its run record:
synthetic phantoms, which public collections, or unknown; for X-ray + CT data, the pairing and
what it means), its test metrics with confidence intervals (from its evaluation results) and
its results on every external data set it was evaluated on
(:func:`~hf_covid.checkpoint_results.read_external_evaluations`, the records its model card
reads too), so the app can show them next to each prediction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard
from transformers import AutoConfig

from ..checkpoint_results import read_external_evaluations
from ..checkpoints import (
    MODEL_CARD_FILE,
    CheckpointSource,
    EvaluationResults,
    RunRecord,
    is_hub_id,
    resolve_checkpoint,
)
from ..data.validation import DEFAULT_INPUT_POLICY, InputPolicy
from ..evaluation.report import METRIC_TITLES
from ..lung_masks import LungSegmenter
from ..registry import ModelFamily, model_families
from .predictor import ChestPredictor

__all__ = [
    "EXTERNAL_SHOWN_METRICS",
    "SHOWN_METRICS",
    "ExternalResult",
    "ModelProvenance",
    "Scores",
    "ServedModels",
    "load_served_models",
    "read_model_card",
    "read_provenance",
]

logger = logging.getLogger(__name__)

SHOWN_METRICS: tuple[str, ...] = ("accuracy", "f1_macro", "covid_sensitivity", "roc_auc", "dice")
"""Test metrics shown next to a prediction, where the evaluation has them."""
EXTERNAL_SHOWN_METRICS: tuple[str, ...] = (
    "covid_sensitivity",
    "specificity_COVID",
    "roc_auc_COVID",
)
"""Metrics of each external evaluation shown next to a prediction, where it has them."""

Scores = dict[str, tuple[float, tuple[float, float] | None]]
"""Metric title -> (value, interval or None)."""


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _scores(evaluation: EvaluationResults, names: tuple[str, ...]) -> Scores:
    scores: Scores = {}
    for name in names:
        value = evaluation.metrics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            interval = evaluation.confidence_intervals.get(name)
            scores[METRIC_TITLES[name]] = (
                float(value),
                (float(interval[0]), float(interval[1])) if interval else None,
            )
    return scores


@dataclass(frozen=True)
class ExternalResult:
    """A served model's results on one external data set (``hf-covid evaluate --dataset_name``).

    Attributes:
        name: the data set's name.
        n_images: how many images it holds.
        metrics: metric title -> (value, interval or None): COVID sensitivity, specificity and
            ROC-AUC of COVID vs the classes present, where defined.
        confidence: coverage of the intervals.
    """

    name: str
    n_images: int | None
    metrics: Scores
    confidence: float = 0.95


@dataclass(frozen=True)
class ModelProvenance:
    """What a served model was trained on and how it scored on its test split.

    Attributes:
        training_data: ``"synthetic"``, ``"public"`` or ``"unknown"``.
        description: the training data in plain words.
        metrics: metric title -> (value, 95% interval or None), from the evaluation results.
        evaluation: what the metrics were measured on ("test split, 120 images"), or None when
            the checkpoint has no evaluation results.
        pairing: for X-ray + CT data, the pairing and what it means (the data record's
            ``pairing_note``), else None.
        external: its results on each external data set, by name.
    """

    training_data: str
    description: str
    metrics: Scores
    evaluation: str | None
    pairing: str | None = None
    external: tuple[ExternalResult, ...] = ()

    @property
    def synthetic(self) -> bool:
        """Trained on the project's phantoms only: its answers on real images mean nothing."""
        return self.training_data == "synthetic"


def read_provenance(folder: str | os.PathLike) -> ModelProvenance:
    """The provenance of a local checkpoint folder, from its run record, evaluation results and
    external evaluations.

    A record that is absent or unreadable makes that part "unknown" (or, for the external
    evaluations, leaves them out); it never fails.
    """
    run = _read_record(RunRecord.read, folder)
    evaluation = _read_record(EvaluationResults.read, folder)
    external = _read_record(read_external_evaluations, folder) or {}
    dataset = (run.dataset if run else None) or (evaluation.dataset if evaluation else None)
    if dataset is None:
        kind = "unknown"
        description = "unknown: the checkpoint has no run record saying what it was trained on"
    elif dataset.synthetic:
        kind = "synthetic"
        description = f"synthetic phantoms (the project's generator, {dataset.name} layout)"
    else:
        kind = "public"
        collections = ", ".join(sorted(dataset.sources)) or dataset.name
        description = f"public data: {collections}"
    metrics: Scores = {}
    summary = None
    if evaluation is not None:
        metrics = _scores(evaluation, SHOWN_METRICS)
        count = evaluation.metrics.get("n_samples")
        summary = f"{evaluation.split} split" + (f", {count} images" if count else "")
    pairing = None
    if dataset is not None and dataset.pairing:
        pairing = dataset.pairing_note or dataset.pairing
    external_results = tuple(
        ExternalResult(
            name,
            _count(results.metrics.get("n_samples")),
            _scores(results, EXTERNAL_SHOWN_METRICS),
            results.confidence,
        )
        for name, results in external.items()
    )
    return ModelProvenance(kind, description, metrics, summary, pairing, external_results)


def _read_record(reader: Callable[[Any], Any], folder: str | os.PathLike) -> Any:
    try:
        return reader(folder)
    except (OSError, ValueError) as error:  # a broken record: say "unknown", keep serving
        logger.warning("cannot read a record of %s: %s", folder, error)
        return None


@dataclass
class ServedModels:
    """The models an app serves, loaded from checkpoint folders or Hub ids.

    Attributes:
        classifiers: model key (a registry key) -> predictor, for those loaded.
        lung_segmenter: the lung U-Net, or None.
        unavailable: model key -> why it is not served (shown in the app).
        model_cards: model key -> the checkpoint's model card (README.md) text, where it has one.
        provenance: model key -> what it was trained on and its test metrics.
        sources: model key -> where it was loaded from.
    """

    classifiers: dict[str, ChestPredictor]
    lung_segmenter: LungSegmenter | None
    unavailable: dict[str, str]
    model_cards: dict[str, str]
    provenance: dict[str, ModelProvenance]
    sources: dict[str, CheckpointSource]


def load_served_models(
    checkpoints: Mapping[str, str | os.PathLike | CheckpointSource | None],
    *,
    policy: InputPolicy = DEFAULT_INPUT_POLICY,
    explanation: str = "gradcam",
    explanation_stage: int | None = None,
) -> ServedModels:
    """Load a checkpoint per registered family; one that is missing or fails is reported, not raised.

    Every classifier family gets a :class:`ChestPredictor`; the segmentation family (the lung
    U-Net) a :class:`LungSegmenter` that makes the classifiers' lung masks.

    Args:
        checkpoints: model key (``hf_covid.registry.list_models()``) -> folder, Hub id
            (``"org/name@revision"`` pins a revision) or :class:`CheckpointSource`; None: not
            configured.
        policy: input limits of the predictors.
        explanation: CAM method of every classifier (see :class:`ChestPredictor`).
        explanation_stage: encoder stage explained (None: each model's default layer).

    Raises:
        KeyError: an unknown model key.
        RuntimeError: no classifier could be loaded (the message lists why for each).
    """
    families = {family.key: family for family in model_families()}
    unknown = set(checkpoints) - set(families)
    if unknown:
        raise KeyError(f"unknown model keys {sorted(unknown)}; expected {list(families)}")
    served = ServedModels({}, None, {}, {}, {}, {})

    def load(family: ModelFamily, loader: Callable[[str], Any]) -> Any:
        key = family.key
        configured = checkpoints.get(key)
        if configured is None:
            served.unavailable[key] = "no checkpoint configured"
            return None
        source = (
            configured
            if isinstance(configured, CheckpointSource)
            else CheckpointSource.parse(configured)
        )
        if not Path(source.location).is_dir() and not is_hub_id(source.location):
            served.unavailable[key] = f"no checkpoint folder at {source.location}"
            logger.warning("not serving %s: %s", key, served.unavailable[key])
            return None
        try:
            folder = resolve_checkpoint(source)
            model_type = AutoConfig.from_pretrained(folder).model_type
            if model_type != family.model_type:
                raise ValueError(
                    f"expected a {family.model_type} checkpoint, found model_type {model_type!r}"
                )
            loaded = loader(folder)
        except Exception as error:  # a broken checkpoint must not take the app down
            served.unavailable[key] = (
                f"could not be loaded from {source} ({type(error).__name__}: {error})"
            )
        else:
            logger.info("serving %s from %s", key, source)
            served.sources[key] = source
            served.provenance[key] = read_provenance(folder)
            card = read_model_card(folder)
            if card:
                served.model_cards[key] = card
            return loaded
        logger.warning("not serving %s: %s", key, served.unavailable[key])
        return None

    for family in families.values():
        if family.task == "segmentation" and served.lung_segmenter is None:
            served.lung_segmenter = load(family, LungSegmenter.from_pretrained)
    for key, family in families.items():
        if family.task == "segmentation":
            continue
        predictor = load(
            family,
            lambda folder: ChestPredictor.from_pretrained(
                folder,
                lung_segmenter=served.lung_segmenter,
                policy=policy,
                explanation=explanation,
                explanation_stage=explanation_stage,
            ),
        )
        if predictor is not None:
            served.classifiers[key] = predictor
    if not served.classifiers:
        reasons = "; ".join(f"{key}: {reason}" for key, reason in served.unavailable.items())
        raise RuntimeError(f"no classifier checkpoint could be loaded ({reasons})")
    return served


def read_model_card(folder: str | os.PathLike) -> str | None:
    """The model card (README.md) of a local checkpoint folder without its YAML header, or None
    when it has none."""
    path = Path(folder) / MODEL_CARD_FILE
    if not path.is_file():
        return None
    try:
        return ModelCard.load(path).text.strip() or None
    except Exception:  # an unreadable card: the app shows the rest
        return None
