"""Confounds of the public-data study, measured (issue 14.3).

The public collections mix adult COVID-19 cases from papers and websites (ieee8023) with
pediatric controls from one hospital (Kermany), so a model can learn the collection (age,
hospital, device, image processing) instead of disease. :func:`run_confounds` measures it on the
study's data and checkpoints (``<study_dir>/models/<family key>``):

(a) a collection probe: a small CNN trained to tell ieee8023 from Kermany images, from the whole
    image, from outside the lungs only (lungs blanked) and from the lungs only, on the
    composition's patient-grouped train and test splits;
(b) every trained Radiography classifier on its test split with everything outside the lungs
    blanked, and its accuracy drop (paired bootstrap);
(c) leave-one-source-out within the COVID collection: a small COVID vs Non-COVID CNN trained
    without one ieee8023 source (the web site or journal of the ``url`` in ``metadata.csv``),
    tested on that source and in distribution;
(d) the dual-input model with both inputs, the X-ray only and the CT only, and which input its
    fused decision follows when the two disagree (label pairing makes either input sufficient).

Lung masks come from the study's lung U-Net (``models/lung_unet``) on every image, so that the
blanked region is drawn the same way for both collections; the variant with the human (v7labs)
masks where they exist (ieee8023 only) is reported beside it. Intervals are percentile bootstraps
over test images (not patients, so somewhat narrow where a patient has several images).
Research software: these numbers describe these collections, not any clinical performance.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict, concatenate_datasets
from matplotlib.figure import Figure
from torch import nn
from transformers import PreTrainedModel

from hf_covid.checkpoints import is_complete_checkpoint_folder, load_checkpoint
from hf_covid.data import preprocess_for_training
from hf_covid.data.public import ieee8023, kermany
from hf_covid.data.public.common import locate_collection
from hf_covid.data.xray_ct import PAIRING_DESCRIPTIONS
from hf_covid.evaluation.checkpoint import (
    build_dataset,
    load_evaluation_split,
    model_image_size,
    prepare_inputs,
    run_build_options,
)
from hf_covid.evaluation.metrics import (
    bootstrap_confidence_intervals,
    bootstrap_mean_interval,
    classification_metrics,
)
from hf_covid.evaluation.predict import MODALITY_VARIANTS, class_names_of, predict
from hf_covid.evaluation.report import markdown_table
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.models.labels import BINARY_LABELS
from hf_covid.registry import get_model_family, list_models

__all__ = [
    "COLLECTION_PROBE_CLASSES",
    "FIGURES_DIR",
    "LUNGS_ONLY_CONDITIONS",
    "LUNG_UNET",
    "MASK_SOURCES",
    "MODELS_DIR",
    "POSITIVE_CLASS",
    "PROBE_CONDITIONS",
    "REGIONS",
    "SCORED_METRICS",
    "Compositions",
    "LungMasker",
    "ProbeSettings",
    "StudyImages",
    "blank",
    "collection_probe",
    "confounds_markdown",
    "dual_input_inputs",
    "leave_one_source_out",
    "load_study_images",
    "lung_masks",
    "lungs_only_evaluation",
    "model_inputs",
    "one_torch_thread",
    "predict_probabilities",
    "probe_settings",
    "run_confounds",
    "scores_with_intervals",
    "study_checkpoints",
]

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
"""Sub-folder of the study folder holding one checkpoint folder per model family key."""
FIGURES_DIR = "figures"
"""Sub-folder of the study folder where the figures go."""
LUNG_UNET = "lung_unet"
"""Family key of the lung U-Net whose masks blank the lungs."""
COLLECTION_PROBE_CLASSES: tuple[str, ...] = (kermany.SOURCE, ieee8023.SOURCE)
"""Classes of the collection probe: pediatric controls (0) and the adult COVID collection (1)."""

REGIONS: dict[str, str] = {
    "whole": "the whole image",
    "outside_lungs": "outside the lungs only (lungs blanked)",
    "lungs_only": "the lungs only (everything outside blanked)",
}
"""Image regions a model is shown, by name."""
MASK_SOURCES: dict[str, str] = {
    "unet": "the study's lung U-Net on every image",
    "human": "human (v7labs) masks where they exist, the U-Net elsewhere",
}
"""Where the lung masks come from, by name."""
POSITIVE_CLASS = BINARY_LABELS[1]
"""COVID: the positive class of every sensitivity and ROC-AUC here."""
SCORED_METRICS = ("accuracy", "balanced_accuracy", "covid_sensitivity", "roc_auc")
"""Metrics (``classification_metrics`` keys) given with intervals throughout."""


@dataclass(frozen=True)
class ProbeSettings:
    """Sizes of the probes: small enough for a shared 2-core CPU.

    Attributes:
        image_size: Side of the probe CNN's input.
        epochs: Training epochs of each probe CNN.
        batch_size: Images per step.
        learning_rate: Adam learning rate.
        n_resamples: Bootstrap resamples of every interval.
        held_out_sources: At most this many ieee8023 sources are held out, largest first.
        min_source_images: A source is held out only with at least this many COVID images.
        seed: Seed of the CNNs and of the bootstrap.
    """

    image_size: int = 48
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 3e-3
    n_resamples: int = 1000
    held_out_sources: int = 4
    min_source_images: int = 20
    seed: int = 0


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored afterwards).

    The probes' tensors are small; on a busy shared CPU, intra-op threads spin-wait for each
    other and one epoch took 6x longer with two threads than with one (measured).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def probe_settings(quick: bool) -> ProbeSettings:
    """The full settings, or tiny ones for CI (``quick``)."""
    if quick:
        return ProbeSettings(
            image_size=32, epochs=2, n_resamples=100, held_out_sources=2, min_source_images=2
        )
    return ProbeSettings()


def study_checkpoints(study_dir: str | Path) -> dict[str, Path]:
    """Family key -> checkpoint folder, for every complete one under ``<study_dir>/models``."""
    folder = Path(study_dir) / MODELS_DIR
    return {
        key: folder / key for key in list_models() if is_complete_checkpoint_folder(folder / key)
    }


class Compositions:
    """The public compositions a checkpoint was trained on, built once per set of options.

    The split options (ratios, seed, deduplication, classes, unpaired rows) come from the
    checkpoint's run record (:func:`~hf_covid.evaluation.checkpoint.run_build_options`), so
    ``test`` is the training run's test split.
    """

    def __init__(self, collections_root: str | Path) -> None:
        self.root = Path(collections_root)
        self._built: dict[tuple, DatasetDict] = {}

    def for_checkpoint(self, checkpoint_dir: Path | None, dataset_kind: str) -> DatasetDict:
        """The composition in the ``dataset_kind`` layout with the options of ``checkpoint_dir``
        (the builders' defaults when None or without a run record)."""
        options = run_build_options(checkpoint_dir, dataset_kind)
        key = (dataset_kind, tuple(sorted((k, str(v)) for k, v in options.items())))
        if key not in self._built:
            self._built[key] = build_dataset(self.root, dataset_kind, options)
        return self._built[key]


@dataclass
class StudyImages:
    """X-rays of one split at one size, with their labels, masks and provenance.

    Attributes:
        images: (N, 1, S, S) float in [0, 1].
        human_masks: (N, 1, S, S) 0/1 human lung masks (zeros where there is none).
        has_human_mask: (N,) whether an image has a human mask.
        labels: (N,) class ids into ``class_names``.
        class_names: The split's classes.
        sources: (N,) collection of each image.
        patient_ids: (N,) patient within the collection ("" when unknown).
        image_ids: (N,) path within the collection.
    """

    images: torch.Tensor
    human_masks: torch.Tensor
    has_human_mask: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    sources: np.ndarray
    patient_ids: np.ndarray
    image_ids: np.ndarray

    def select(self, rows: np.ndarray) -> StudyImages:
        """The images at ``rows`` (indices or a boolean mask)."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        index = torch.as_tensor(rows, dtype=torch.long)
        return StudyImages(
            self.images[index],
            self.human_masks[index],
            self.has_human_mask[rows],
            self.labels[rows],
            self.class_names,
            self.sources[rows],
            self.patient_ids[rows],
            self.image_ids[rows],
        )


def load_study_images(split: Dataset, image_size: int) -> StudyImages:
    """Decode and resize a Radiography-layout split (``image``, ``mask``, ``label``) once."""
    prepared = preprocess_for_training(
        DatasetDict({"study": split}), image_size=image_size, mask_column="mask"
    )["study"]
    rows = prepared[:]
    count = len(split)

    def column(name: str) -> np.ndarray:
        values = rows.get(name)
        return np.array(["" if v is None else str(v) for v in values] if values else [""] * count)

    return StudyImages(
        images=torch.stack(rows["pixel_values"]).float() / 255.0,
        human_masks=torch.stack(rows["lung_mask"]).float(),
        has_human_mask=np.array(rows["mask_available"], dtype=bool),
        labels=np.array(rows["labels"], dtype=np.int64),
        class_names=tuple(split.features["label"].names),
        sources=column("source"),
        patient_ids=column("patient_id"),
        image_ids=column("image_id"),
    )


class LungMasker:
    """Lung masks from a trained lung U-Net checkpoint, for X-rays of any size.

    Args:
        checkpoint_dir: The U-Net's checkpoint folder.
        batch_size: Images per forward pass.
    """

    def __init__(self, checkpoint_dir: str | Path, batch_size: int = 32) -> None:
        self.model, processor = load_checkpoint(checkpoint_dir)
        self.model.eval()
        side = model_image_size(self.model.config, processor)
        self.processor = processor or ChestImageProcessor(num_channels=1)
        self.size = (side, side)
        self.batch_size = batch_size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) 0/1 masks of (N, 1, H, W) X-rays in [0, 1]."""
        masks = []
        with torch.inference_mode():
            for batch in images.split(self.batch_size):
                resized = F.interpolate(batch, size=self.size, mode="bilinear", align_corners=False)
                predicted = self.model.predict_mask(self.processor.to_model_input(resized))
                masks.append(F.interpolate(predicted, size=images.shape[-2:], mode="nearest"))
        return torch.cat(masks).float()


def lung_masks(images: StudyImages, masker: LungMasker) -> dict[str, torch.Tensor]:
    """Masks per :data:`MASK_SOURCES` name for ``images``."""
    predicted = masker(images.images)
    human = torch.as_tensor(images.has_human_mask)[:, None, None, None]
    return {"unet": predicted, "human": torch.where(human, images.human_masks, predicted)}


def blank(images: torch.Tensor, masks: torch.Tensor, region: str) -> torch.Tensor:
    """``images`` showing only ``region`` (a :data:`REGIONS` name); the rest set to 0."""
    if region == "whole":
        return images
    if region == "outside_lungs":
        return images * (1 - masks)
    if region == "lungs_only":
        return images * masks
    raise ValueError(f"unknown region {region!r}; expected one of {list(REGIONS)}")


def model_inputs(
    model: PreTrainedModel,
    processor: ChestImageProcessor | None,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The keyword inputs of a classifier for (N, 1, S, S) X-rays in [0, 1], X-ray only.

    ``masks`` is the lung-mask input of models that take one (the dual-channel CNN); the
    dual-input model gets its X-ray with the CT marked missing.

    Raises:
        ValueError: a model that needs masks called without them.
    """
    family = get_model_family(model.config.model_type)
    processor = processor or ChestImageProcessor(num_channels=1)
    pixel_values = processor.to_model_input(images)
    inputs = {"pixel_values": pixel_values}
    if "lung_mask" in family.input_names:
        if masks is None:
            raise ValueError(f"the {family.display_name} needs lung masks as input")
        inputs["lung_mask"] = masks
    if "ct_pixel_values" in family.input_names:
        inputs["ct_pixel_values"] = torch.zeros_like(pixel_values)
        inputs["xray_available"] = torch.ones(len(images), dtype=torch.bool)
        inputs["ct_available"] = torch.zeros(len(images), dtype=torch.bool)
    return inputs


def predict_probabilities(
    model: PreTrainedModel,
    processor: ChestImageProcessor | None,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """(N, K) class probabilities of a classifier for X-rays (inputs as :func:`model_inputs`)."""
    model.eval()
    probabilities = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            inputs = model_inputs(
                model, processor, images[batch], None if masks is None else masks[batch]
            )
            probabilities.append(model(**inputs).logits.float().softmax(dim=-1).numpy())
    return np.concatenate(probabilities)


def scores_with_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    settings: ProbeSettings,
    names: Sequence[str] = SCORED_METRICS,
) -> dict:
    """``{"metrics": ..., "confidence_intervals": ...}`` for the defined metrics of ``names``."""
    metrics = classification_metrics(labels, probabilities, class_names)
    kept = [name for name in names if metrics.get(name) is not None]
    intervals = bootstrap_confidence_intervals(
        labels, probabilities, class_names, kept, settings.n_resamples, 0.95, settings.seed
    )
    return {
        "metrics": {name: metrics[name] for name in kept} | {"n_samples": metrics["n_samples"]},
        "confidence_intervals": {k: list(v) if v else None for k, v in intervals.items()},
    }


class _SmallCNN(nn.Module):
    """Three convolution blocks, global average pooling and a linear layer: a probe, no more."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (8, 16, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3)))


def _train_probe(
    images: torch.Tensor, labels: np.ndarray, num_classes: int, settings: ProbeSettings
) -> _SmallCNN:
    """A small CNN fitted with class-balanced cross-entropy (the classes are unequal)."""
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = _SmallCNN(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    targets = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(targets, minlength=num_classes).clamp_min(1).float()
    weights = counts.sum() / (num_classes * counts)
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            if len(batch) < 2:  # batch norm needs two images
                continue
            loss = F.cross_entropy(model(images[batch]), targets[batch], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _probe_probabilities(model: _SmallCNN, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([model(b).softmax(dim=-1) for b in images.split(256)]).numpy()


def _probe_images(
    compositions: Compositions, settings: ProbeSettings
) -> tuple[StudyImages, StudyImages]:
    """Train (train + validation) and test images of the default Radiography composition."""
    splits = compositions.for_checkpoint(None, "radiography")
    train = concatenate_datasets([splits["train"], splits["validation"]])
    return (
        load_study_images(train, settings.image_size),
        load_study_images(splits["test"], settings.image_size),
    )


PROBE_CONDITIONS: tuple[tuple[str, str | None], ...] = (
    ("whole", None),
    ("outside_lungs", "unet"),
    ("lungs_only", "unet"),
    ("outside_lungs", "human"),
)
"""(region, mask source) of the collection probe's conditions."""


def collection_probe(
    train: StudyImages,
    test: StudyImages,
    masks: Mapping[str, Mapping[str, torch.Tensor]] | None,
    settings: ProbeSettings,
) -> dict:
    """(a) How well a small CNN tells the collections apart, per region of the image.

    Args:
        train, test: Patient-grouped splits of the Radiography composition.
        masks: ``{"train": lung_masks(train), "test": lung_masks(test)}``, or None without a
            U-Net (then only the whole image is probed).
        settings: Probe sizes.
    """
    sets = {}
    for name, images in (("train", train), ("test", test)):
        keep = np.isin(images.sources, COLLECTION_PROBE_CLASSES)
        target = np.array([COLLECTION_PROBE_CLASSES.index(s) for s in images.sources[keep]])
        sets[name] = (images.select(keep), target, np.flatnonzero(keep))
    test_target = sets["test"][1]
    if len(set(sets["train"][1].tolist())) < 2 or len(test_target) == 0:
        return {"skipped": "the splits do not hold images of both collections to probe"}
    result = {
        "classes": list(COLLECTION_PROBE_CLASSES),
        "n_train": int(len(sets["train"][1])),
        "n_test": int(len(test_target)),
        "test_counts": dict(
            zip(
                COLLECTION_PROBE_CLASSES,
                np.bincount(test_target, minlength=2).tolist(),
                strict=True,
            )
        ),
        "chance": {
            "accuracy": float(np.bincount(test_target, minlength=2).max() / len(test_target)),
            "balanced_accuracy": 0.5,
            "roc_auc": 0.5,
        },
        "conditions": [],
    }
    for region, source in PROBE_CONDITIONS:
        if source is not None and masks is None:
            continue
        logger.info("collection probe: %s (%s masks)", region, source or "no")
        shown = {}
        for name, (images, _, rows) in sets.items():
            region_masks = None if source is None else masks[name][source][rows]
            shown[name] = blank(images.images, region_masks, region)
        probe = _train_probe(shown["train"], sets["train"][1], 2, settings)
        probabilities = _probe_probabilities(probe, shown["test"])
        scores = scores_with_intervals(
            test_target,
            probabilities,
            COLLECTION_PROBE_CLASSES,
            settings,
            ("accuracy", "balanced_accuracy", "roc_auc"),
        )
        result["conditions"].append({"region": region, "mask_source": source, **scores})
    return result


LUNGS_ONLY_CONDITIONS: tuple[tuple[str, str], ...] = (
    ("whole", "unet"),
    ("lungs_only", "unet"),
    ("lungs_only", "human"),
)
"""(region, mask source) of the lungs-only evaluation. The mask is also the dual-channel model's
input; whole images get the U-Net's, as that model was trained with U-Net masks on every image."""


def lungs_only_evaluation(
    key: str,
    checkpoint_dir: Path,
    compositions: Compositions,
    masker: LungMasker,
    settings: ProbeSettings,
) -> dict:
    """(b) A trained Radiography classifier on its test split, whole and lungs only."""
    logger.info("lungs-only evaluation: %s", key)
    model, processor = load_checkpoint(checkpoint_dir)
    family = get_model_family(model.config.model_type)
    class_names = class_names_of(model.config)
    size = model_image_size(model.config, processor)
    test = load_study_images(
        compositions.for_checkpoint(checkpoint_dir, family.dataset_kind)["test"], size
    )
    missing = [name for name in test.class_names if name not in class_names]
    if missing:
        raise ValueError(f"{checkpoint_dir}: the model has no class {missing} of its test split")
    labels = np.array([class_names.index(test.class_names[i]) for i in test.labels])
    masks = lung_masks(test, masker)
    result: dict = {
        "model": key,
        "display_name": family.display_name,
        "n_test": int(len(labels)),
        "conditions": [],
    }
    correct_whole = None
    for region, source in LUNGS_ONLY_CONDITIONS:
        shown = blank(test.images, masks[source], region)
        probabilities = predict_probabilities(model, processor, shown, masks[source])
        correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
        predicted = np.bincount(probabilities.argmax(axis=1), minlength=len(class_names))
        condition = {
            "region": region,
            "mask_source": source,
            **scores_with_intervals(labels, probabilities, class_names, settings),
            "predicted_fractions": dict(
                zip(class_names, (predicted / len(labels)).tolist(), strict=True)
            ),
        }
        if correct_whole is None:
            correct_whole = correct
        else:
            drop = correct_whole - correct
            condition["accuracy_drop"] = float(drop.mean())
            condition["accuracy_drop_interval"] = list(
                bootstrap_mean_interval(drop, settings.n_resamples, 0.95, settings.seed)
            )
        result["conditions"].append(condition)
    return result


def _url_sources(collections_root: Path) -> dict[str, str]:
    """ieee8023 ``<folder>/<filename>`` -> the site of its ``url`` (``radiopaedia.org``)."""
    root = locate_collection(
        collections_root, ieee8023.FOLDER_NAMES, ieee8023.is_collection, ieee8023.TITLE
    )
    sites = {}
    with (root / ieee8023.METADATA_FILE).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            site = urlparse((row.get("url") or "").strip()).netloc.lower().removeprefix("www.")
            sites[f"{row.get('folder') or 'images'}/{row.get('filename')}"] = site
    return sites


def _away_from(
    images: StudyImages, sites: np.ndarray, site: str, patients: set[tuple[str, str]]
) -> np.ndarray:
    """Images neither from ``site`` nor of one of its ``patients`` (collection, patient id)."""
    of_patient = np.array(
        [key in patients for key in zip(images.sources, images.patient_ids, strict=True)],
        dtype=bool,
    )
    return (sites != site) & ~of_patient


def leave_one_source_out(
    train: StudyImages, test: StudyImages, collections_root: Path, settings: ProbeSettings
) -> dict:
    """(c) COVID vs Non-COVID CNNs trained without one ieee8023 source, tested on it.

    The held-out source's COVID images (and every image of their patients) leave training; its
    COVID images are tested against the test split's Non-COVID images, beside the in-distribution
    test (the test split without that source).
    """
    sites = _url_sources(collections_root)
    if POSITIVE_CLASS not in train.class_names:
        return {"skipped": f"the composition has no {POSITIVE_CLASS} class"}
    covid = train.class_names.index(POSITIVE_CLASS)

    def site_of(images: StudyImages) -> np.ndarray:
        is_covid = (images.sources == ieee8023.SOURCE) & (images.labels == covid)
        return np.array(
            [sites.get(i, "") if c else "" for i, c in zip(images.image_ids, is_covid, strict=True)]
        )

    train_sites, test_sites = site_of(train), site_of(test)
    counts: dict[str, int] = {}
    for site in (*train_sites, *test_sites):
        if site:
            counts[site] = counts.get(site, 0) + 1
    candidates = sorted(
        (site for site, count in counts.items() if count >= settings.min_source_images),
        key=lambda site: (-counts[site], site),
    )[: settings.held_out_sources]
    result: dict = {"classes": list(BINARY_LABELS), "source_counts": counts, "held_out": []}
    binary = {
        "train": (train.labels == covid).astype(int),
        "test": (test.labels == covid).astype(int),
    }
    for site in candidates:
        patients = {
            (source, patient)
            for images, where in ((train, train_sites), (test, test_sites))
            for source, patient in zip(
                images.sources[where == site], images.patient_ids[where == site], strict=True
            )
            if patient
        }
        kept = _away_from(train, train_sites, site, patients)
        logger.info("leave one source out: %s (%d COVID images)", site, counts[site])
        probe = _train_probe(train.images[kept], binary["train"][kept], 2, settings)
        in_distribution = _away_from(test, test_sites, site, patients)
        controls = binary["test"] == 0
        held_out_images = torch.cat(
            [
                train.images[train_sites == site],
                test.images[test_sites == site],
                test.images[controls & in_distribution],
            ]
        )
        held_out_labels = np.concatenate(
            [
                np.ones(int((train_sites == site).sum()) + int((test_sites == site).sum()), int),
                np.zeros(int((controls & in_distribution).sum()), int),
            ]
        )
        names = ("covid_sensitivity", "roc_auc", "balanced_accuracy")
        result["held_out"].append(
            {
                "source": site,
                "n_held_out_covid": int(counts[site]),
                "n_train": int(kept.sum()),
                "in_distribution": scores_with_intervals(
                    binary["test"][in_distribution],
                    _probe_probabilities(probe, test.images[in_distribution]),
                    BINARY_LABELS,
                    settings,
                    names,
                ),
                "held_out_source": scores_with_intervals(
                    held_out_labels,
                    _probe_probabilities(probe, held_out_images),
                    BINARY_LABELS,
                    settings,
                    names,
                ),
            }
        )
    return result


def dual_input_inputs(
    checkpoint_dir: Path, compositions: Compositions, settings: ProbeSettings
) -> dict:
    """(d) The dual-input model with both inputs, X-ray only, CT only; which input it follows."""
    logger.info("dual-input model: both inputs, X-ray only, CT only")
    model, processor = load_checkpoint(checkpoint_dir)
    family = get_model_family(model.config.model_type)
    class_names = class_names_of(model.config)
    raw = load_evaluation_split(
        family,
        class_names,
        "test",
        dataset=compositions.for_checkpoint(checkpoint_dir, family.dataset_kind),
    )
    prepared, collator, _ = prepare_inputs(model, processor, raw)
    both = np.array(prepared["xray_available"], dtype=bool) & np.array(
        prepared["ct_available"], dtype=bool
    )
    rows = np.flatnonzero(both)
    if rows.size == 0:
        return {"skipped": "no test pair holds both an X-ray and a CT"}
    subset = prepared.select(rows)
    variants, predicted = {}, {}
    for variant, switched_off in MODALITY_VARIANTS.items():
        output = predict(model, subset, collator, switch_off=switched_off, progress=False)
        predicted[variant] = output["probabilities"].argmax(axis=1)
        variants[variant] = scores_with_intervals(
            output["labels"], output["probabilities"], class_names, settings
        )
    disagree = predicted["xray"] != predicted["ct"]
    fused = predicted["xray+ct"][disagree]
    return {
        "pairing": "label",
        "pairing_note": PAIRING_DESCRIPTIONS["label"],
        "n_pairs": int(len(rows)),
        "variants": variants,
        "single_inputs_disagree": int(disagree.sum()),
        "fused_follows_xray": float(np.mean(fused == predicted["xray"][disagree]))
        if disagree.any()
        else None,
        "fused_follows_ct": float(np.mean(fused == predicted["ct"][disagree]))
        if disagree.any()
        else None,
    }


def _plot_intervals(
    rows: Sequence[tuple[str, float, Sequence[float] | None]],
    path: Path,
    title: str,
    label: str,
    chance: float | None = None,
) -> Path:
    """Points with 95% intervals, one row each (what the probes measured)."""
    figure = Figure(figsize=(7, 0.5 * len(rows) + 1.4))
    axis = figure.subplots()
    positions = np.arange(len(rows))[::-1]
    for position, (_, value, interval) in zip(positions, rows, strict=True):
        low, high = interval if interval else (value, value)
        axis.errorbar(value, position, xerr=[[value - low], [high - value]], fmt="o", capsize=4)
    if chance is not None:
        axis.axvline(chance, color="grey", linestyle="--", label="chance")
        axis.legend(loc="lower right")
    axis.set_yticks(positions, [name for name, _, _ in rows])
    axis.set_xlim(0, 1.02)
    axis.set_xlabel(label)
    axis.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _condition_name(condition: Mapping) -> str:
    """``"outside lungs (unet masks)"``; the whole image names no mask."""
    source = condition.get("mask_source")
    shown = condition["region"] != "whole" and source
    return condition["region"].replace("_", " ") + (f" ({source} masks)" if shown else "")


def _draw_figures(result: Mapping, folder: Path) -> dict[str, str]:
    drawn = {}
    probe = result.get("collection_probe")
    if probe and probe.get("conditions"):
        rows = [
            (
                _condition_name(c),
                c["metrics"]["balanced_accuracy"],
                c["confidence_intervals"]["balanced_accuracy"],
            )
            for c in probe["conditions"]
        ]
        path = _plot_intervals(
            rows,
            folder / "confounds_collection_probe.png",
            "Telling ieee8023 (adult) from Kermany (pediatric) images",
            "balanced accuracy of a small CNN (95% CI)",
            chance=0.5,
        )
        drawn["collection_probe"] = path.name
    models = result.get("lungs_only") or []
    if models:
        rows = [
            (
                f"{m['model']}: {_condition_name(c)}",
                c["metrics"]["accuracy"],
                c["confidence_intervals"]["accuracy"],
            )
            for m in models
            for c in m["conditions"]
        ]
        path = _plot_intervals(
            rows,
            folder / "confounds_lungs_only.png",
            "Trained classifiers, whole image vs lungs only",
            "test accuracy (95% CI)",
        )
        drawn["lungs_only"] = path.name
    return drawn


def run_confounds(study_dir: Path, collections_root: Path, *, quick: bool) -> dict:
    """Measure the confounds (a)-(d) of the module docstring on the study's checkpoints.

    Args:
        study_dir: The study folder (checkpoints under ``models/<family key>``; figures go to
            ``figures/``).
        collections_root: The public collections side by side (``ieee8023/``, ``kermany/``,
            ``covid_ct/``).
        quick: Tiny probes for CI (:func:`probe_settings`).

    Returns:
        A JSON-able dict: ``settings``, ``collection_probe``, ``lungs_only`` (one entry per
        Radiography classifier), ``leave_one_source_out``, ``dual_input`` (or None), ``figures``
        (names under ``figures/``) and ``notes`` (what could not be measured, and why).
    """
    with one_torch_thread():
        return _run_confounds(Path(study_dir), Path(collections_root), probe_settings(quick))


def _run_confounds(study_dir: Path, collections_root: Path, settings: ProbeSettings) -> dict:
    checkpoints = study_checkpoints(study_dir)
    compositions = Compositions(collections_root)
    masker = LungMasker(checkpoints[LUNG_UNET]) if LUNG_UNET in checkpoints else None
    notes = []
    if masker is None:
        notes.append(
            f"No lung U-Net under {MODELS_DIR}/{LUNG_UNET}: the lungs could not be blanked, so "
            "only the whole-image probe ran."
        )
    classifiers = {
        key: folder
        for key, folder in checkpoints.items()
        if get_model_family(key).dataset_kind == "radiography"
        and get_model_family(key).task == "classification"
    }
    train, test = _probe_images(compositions, settings)
    probe_masks = None
    if masker is not None:
        probe_masks = {"train": lung_masks(train, masker), "test": lung_masks(test, masker)}
    result: dict = {
        "settings": asdict(settings),
        "collection_probe": collection_probe(train, test, probe_masks, settings),
        "lungs_only": [
            lungs_only_evaluation(key, folder, compositions, masker, settings)
            for key, folder in classifiers.items()
            if masker is not None
        ],
        "leave_one_source_out": leave_one_source_out(train, test, collections_root, settings),
        "dual_input": dual_input_inputs(checkpoints["dual_input"], compositions, settings)
        if "dual_input" in checkpoints
        else None,
    }
    if not classifiers:
        notes.append("No Radiography classifier checkpoint: (b) was not measured.")
    if result["dual_input"] is None:
        notes.append("No dual-input checkpoint: (d) was not measured.")
    result["figures"] = _draw_figures(result, study_dir / FIGURES_DIR)
    result["notes"] = notes
    return result


def _value(scores: Mapping, name: str) -> str:
    value = scores["metrics"].get(name)
    interval = scores["confidence_intervals"].get(name)
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _above_chance(scores: Mapping, name: str, chance: float) -> bool:
    interval = scores["confidence_intervals"].get(name)
    return bool(interval) and interval[0] > chance


def _probe_section(probe: Mapping) -> list[str]:
    if probe.get("skipped"):
        return ["### (a) Can the collection be read off the image?", "", probe["skipped"]]
    counts = ", ".join(f"{name} {count}" for name, count in probe["test_counts"].items())
    lines = [
        "### (a) Can the collection be read off the image?",
        "",
        f"A small CNN (three convolution blocks) learns to tell ieee8023 (adult COVID-19 "
        f"cases) from Kermany (children aged 1-5) on {probe['n_train']} training images and is "
        f"tested on {probe['n_test']} held-out patients' images ({counts}; majority-class "
        f"accuracy {probe['chance']['accuracy']:.3f}, chance balanced accuracy and AUC 0.5).",
        "",
    ]
    rows = [
        [_condition_name(c), *(_value(c, n) for n in ("accuracy", "balanced_accuracy", "roc_auc"))]
        for c in probe["conditions"]
    ]
    lines += markdown_table(["Image shown", "Accuracy", "Balanced accuracy", "ROC-AUC"], rows)
    outside = [
        c
        for c in probe["conditions"]
        if c["region"] == "outside_lungs" and c["mask_source"] == "unet"
    ]
    if any(c["mask_source"] == "human" for c in probe["conditions"]):
        lines += [
            "",
            "The *human masks* rows mix two mask sources along the collection line (human masks "
            "exist for ieee8023 images only, the U-Net draws the rest), so the outline of the "
            "blanked region alone can give the collection away there; the *unet masks* rows, one "
            "mask source for every image, are the fair comparison.",
        ]
    if outside:
        readable = _above_chance(outside[0], "balanced_accuracy", 0.6)
        lines += [
            "",
            "With the lungs blanked (U-Net masks) the collection is "
            + (
                "still predicted far above chance: the images carry their source (age, hospital, "
                "device, processing) outside the lungs, where no disease is, so any "
                "COVID-vs-control number on this mix can be earned by that alone."
                if readable
                else "not clearly predicted above chance from outside the lungs here."
            ),
            "The shape and size of the blanked region also differ between adults and children, "
            "so part of this signal is anatomy, not hospital; either way it is not COVID-19.",
        ]
    return lines


def _lungs_only_section(models: Sequence[Mapping]) -> list[str]:
    lines = [
        "",
        "### (b) Trained classifiers with everything outside the lungs blanked",
        "",
        "Each classifier on its own test split; the drop is whole-image accuracy minus "
        "lungs-only accuracy, with a paired bootstrap interval over the test images.",
        "",
    ]
    rows = []
    for model in models:
        for condition in model["conditions"]:
            drop = condition.get("accuracy_drop")
            interval = condition.get("accuracy_drop_interval")
            fractions = condition["predicted_fractions"]
            top = max(fractions, key=fractions.get)
            rows.append(
                [
                    model["model"],
                    _condition_name(condition),
                    _value(condition, "accuracy"),
                    _value(condition, "covid_sensitivity"),
                    "" if drop is None else f"{drop:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]",
                    f"{top} {fractions[top]:.0%}",
                ]
            )
    header = ["Model", "Image shown", "Accuracy", "COVID sensitivity", "Drop", "Most predicted"]
    lines += markdown_table(header, rows)
    lines += [
        "",
        "None of these models saw blanked images in training, so part of any drop is the change "
        "of input distribution; a large drop still says the model relied on what lies outside "
        "the lungs. *Most predicted* shows when the blanked images collapse onto one class. "
        "With *human masks* the COVID images (ieee8023) are cut by human outlines and the "
        "others by the U-Net's, so the outline itself differs by class there.",
    ]
    return lines


def _loso_section(loso: Mapping) -> list[str]:
    lines = ["", "### (c) Leave one COVID source out", ""]
    if loso.get("skipped") or not loso.get("held_out"):
        return lines + [loso.get("skipped") or "No ieee8023 source was large enough to hold out."]
    lines += [
        "A small COVID vs Non-COVID CNN is trained without one ieee8023 source (the site of the "
        "image's `url` in `metadata.csv`, with every image of its patients), then tested on that "
        "source's COVID images against the test split's Non-COVID images, and in distribution "
        "on the test split without that source.",
        "",
    ]
    rows = [
        [
            fold["source"],
            str(fold["n_held_out_covid"]),
            _value(fold["in_distribution"], "covid_sensitivity"),
            _value(fold["held_out_source"], "covid_sensitivity"),
            _value(fold["in_distribution"], "roc_auc"),
            _value(fold["held_out_source"], "roc_auc"),
        ]
        for fold in loso["held_out"]
    ]
    header = [
        "Held-out source",
        "COVID images",
        "Sensitivity in distribution",
        "Sensitivity held out",
        "ROC-AUC in distribution",
        "ROC-AUC held out",
    ]
    lines += markdown_table(header, rows)
    lines += [
        "",
        "Every COVID source here is adult and every control pediatric, so a shortcut shared by "
        "all COVID sources (age, adult hospital equipment) survives holding one source out: a "
        "small drop does not clear the model, a large one shows source-specific shortcuts.",
    ]
    return lines


def _dual_input_section(dual: Mapping) -> list[str]:
    lines = ["", "### (d) The dual-input model: which input carries the fused number", ""]
    if dual.get("skipped"):
        return [*lines, dual["skipped"]]
    names = {"xray+ct": "X-ray + CT", "xray": "X-ray only", "ct": "CT only"}
    ranking = {
        name: tuple(
            dual["variants"][variant]["metrics"].get(m) or 0.0 for m in ("accuracy", "roc_auc")
        )
        for variant, name in (("xray", "X-ray"), ("ct", "CT"))
    }
    better = (
        "X-ray and CT alike" if ranking["X-ray"] == ranking["CT"] else max(ranking, key=ranking.get)
    )
    rows = [
        [
            names.get(v, v),
            _value(s, "accuracy"),
            _value(s, "covid_sensitivity"),
            _value(s, "roc_auc"),
        ]
        for v, s in dual["variants"].items()
    ]
    lines += [f"On the {dual['n_pairs']} test pairs with both images:", ""]
    lines += markdown_table(["Inputs", "Accuracy", "COVID sensitivity", "ROC-AUC"], rows)
    if dual.get("fused_follows_xray") is not None:
        lines += [
            "",
            f"The X-ray-only and CT-only predictions disagree on {dual['single_inputs_disagree']} "
            f"pairs; there the fused prediction follows the X-ray in "
            f"{100 * dual['fused_follows_xray']:.0f}% and the CT in "
            f"{100 * dual['fused_follows_ct']:.0f}% of cases.",
        ]
    lines += [
        "",
        f"Pairing: **{dual['pairing']}** ({dual['pairing_note'].rstrip('.')}). Both images of a "
        "pair carry the pair's label by construction, so either one suffices, and a fused "
        "accuracy near the "
        f"better single input's (here: {better}) is explained by that input alone; the X-ray "
        "also carries the collection shortcut of (a). The fused number says nothing about how "
        "an X-ray and a CT of the same patient would combine.",
    ]
    return lines


def confounds_markdown(result: Mapping) -> str:
    """The confound section of the study document, from :func:`run_confounds`'s result."""
    lines = [
        "## Confounds, measured",
        "",
        "Research software: these numbers describe the public collections used here, not any "
        "clinical performance. Intervals are 95% percentile bootstraps over test images.",
        "",
    ]
    lines += _probe_section(result["collection_probe"])
    if result.get("lungs_only"):
        lines += _lungs_only_section(result["lungs_only"])
    lines += _loso_section(result["leave_one_source_out"])
    if result.get("dual_input"):
        lines += _dual_input_section(result["dual_input"])
    figures = result.get("figures") or {}
    if figures:
        lines += ["", "Figures: " + ", ".join(f"`{name}`" for name in figures.values()) + "."]
    if result.get("notes"):
        lines += ["", *(f"- {note}" for note in result["notes"])]
    return "\n".join(lines) + "\n"
