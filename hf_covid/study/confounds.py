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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from datasets import concatenate_datasets
from torch import nn

from hf_covid.checkpoints import load_checkpoint
from hf_covid.data.public import ieee8023, kermany
from hf_covid.data.public.common import locate_collection
from hf_covid.data.xray_ct import PAIRING_DESCRIPTIONS
from hf_covid.evaluation.inputs import load_evaluation_split, model_image_size, prepare_inputs
from hf_covid.evaluation.metrics import bootstrap_mean_interval
from hf_covid.evaluation.predict import MODALITY_VARIANTS, class_names_of, predict
from hf_covid.models.labels import BINARY_LABELS
from hf_covid.registry import get_model_family

from .confounds_report import confounds_markdown, draw_confound_figures
from .probe_data import (
    FIGURES_DIR,
    LUNG_UNET,
    MODELS_DIR,
    POSITIVE_CLASS,
    Compositions,
    LungMasker,
    StudyImages,
    load_study_images,
    one_torch_thread,
    predict_probabilities,
    scores_with_intervals,
    study_checkpoints,
)

__all__ = [
    "COLLECTION_PROBE_CLASSES",
    "LUNGS_ONLY_CONDITIONS",
    "MASK_SOURCES",
    "PROBE_CONDITIONS",
    "REGIONS",
    "ProbeSettings",
    "blank",
    "collection_probe",
    "confounds_markdown",
    "dual_input_inputs",
    "leave_one_source_out",
    "lung_masks",
    "lungs_only_evaluation",
    "probe_settings",
    "run_confounds",
]

logger = logging.getLogger(__name__)

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


def probe_settings(quick: bool) -> ProbeSettings:
    """The full settings, or tiny ones for CI (``quick``)."""
    if quick:
        return ProbeSettings(
            image_size=32, epochs=2, n_resamples=100, held_out_sources=2, min_source_images=2
        )
    return ProbeSettings()


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
            n_resamples=settings.n_resamples,
            seed=settings.seed,
            names=("accuracy", "balanced_accuracy", "roc_auc"),
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
            **scores_with_intervals(
                labels,
                probabilities,
                class_names,
                n_resamples=settings.n_resamples,
                seed=settings.seed,
            ),
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
                    n_resamples=settings.n_resamples,
                    seed=settings.seed,
                    names=names,
                ),
                "held_out_source": scores_with_intervals(
                    held_out_labels,
                    _probe_probabilities(probe, held_out_images),
                    BINARY_LABELS,
                    n_resamples=settings.n_resamples,
                    seed=settings.seed,
                    names=names,
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
            output["labels"],
            output["probabilities"],
            class_names,
            n_resamples=settings.n_resamples,
            seed=settings.seed,
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
        (names under ``figures/``), ``recomposed`` (the dataset kinds composed again because
        ``<study_dir>/data/<kind>`` was missing; empty when every probe read the saved
        training compositions) and ``notes`` (what could not be measured, and why).
    """
    with one_torch_thread():
        return _run_confounds(Path(study_dir), Path(collections_root), probe_settings(quick))


def _run_confounds(study_dir: Path, collections_root: Path, settings: ProbeSettings) -> dict:
    checkpoints = study_checkpoints(study_dir)
    compositions = Compositions(collections_root, study_dir)
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
    # The model that takes an X-ray and a CT (the dual-input family).
    dual_input = next(
        (
            folder
            for key, folder in checkpoints.items()
            if "ct_pixel_values" in get_model_family(key).input_names
        ),
        None,
    )
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
        "dual_input": dual_input_inputs(dual_input, compositions, settings)
        if dual_input is not None
        else None,
    }
    if not classifiers:
        notes.append("No Radiography classifier checkpoint: (b) was not measured.")
    if result["dual_input"] is None:
        notes.append("No dual-input checkpoint: (d) was not measured.")
    if compositions.note():
        notes.append(compositions.note())
    result["recomposed"] = list(compositions.recomposed)
    result["figures"] = draw_confound_figures(result, study_dir / FIGURES_DIR)
    result["notes"] = notes
    return result
