"""Confounds of the public-data study, measured on each configuration of the ablation.

A model can learn the collection (age, hospital, device, figure or film, image processing)
instead of disease. For one configuration's view of its composition (its lung crop and intensity
standardisation, :func:`hf_covid.study.probe_data.load_study_images`) this module measures:

(a) :func:`collection_probe`: a small CNN trained to tell the collections apart, from the whole
    image, from outside the lungs only (lungs blanked) and from the lungs only (everything
    outside blanked). The decision rule of every condition is corrected on the validation split
    (the class priors the probe learnt are divided out, so that the mean predicted distribution
    there is uniform): a probe that ranks well but always predicts one class (the first study's
    lungs-only probe: accuracy 0.285 at ROC-AUC 0.995) is not reported as chance;
(b) :func:`lungs_only_drop`: a trained classifier on its test split with everything outside the
    lungs blanked, and its accuracy drop (paired bootstrap over patients);
(c) :func:`leave_one_source_out`: a small COVID vs non-COVID CNN trained without one COVID source
    (each ieee8023 web site with enough images, and COVID-CXNet's hospital films as a whole, the
    within-study stand-in for an unseen hospital), tested on that source's COVID images against
    the test split's non-COVID images, and in distribution.

Lung masks come from the study's lung U-Net on every image, drawn the same way for every
collection. Intervals are 95% percentile bootstraps over patients. Research software: these
numbers describe these collections, not any clinical performance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hf_covid.checkpoints import load_checkpoint
from hf_covid.evaluation.metrics import bootstrap_mean_interval
from hf_covid.evaluation.predict import class_names_of
from hf_covid.models.labels import BINARY_LABELS
from hf_covid.registry import get_model_family

from .probe_data import POSITIVE_CLASS, StudyImages, predict_probabilities, scores_with_intervals

__all__ = [
    "HOSPITAL_FILMS",
    "REGIONS",
    "ProbeSettings",
    "blank",
    "collection_probe",
    "leave_one_source_out",
    "lungs_only_drop",
    "probe_settings",
    "prior_corrected",
]

logger = logging.getLogger(__name__)

REGIONS: dict[str, str] = {
    "whole": "the whole image",
    "outside_lungs": "outside the lungs only (lungs blanked)",
    "lungs_only": "the lungs only (everything outside blanked)",
}
"""Image regions a model is shown, by name."""
HOSPITAL_FILMS = "covid_cxnet"
"""The collection whose COVID images are hospital films (held out as a whole)."""


@dataclass(frozen=True)
class ProbeSettings:
    """Sizes of the probes: small enough for a shared 2-core CPU.

    Attributes:
        image_size: Side of the probe CNN's input (the view is downsampled to it).
        epochs: Training epochs of each probe CNN.
        batch_size: Images per step.
        learning_rate: Adam learning rate.
        n_resamples: Bootstrap resamples of every interval.
        held_out_sites: At most this many ieee8023 web sites are held out, largest first.
        min_source_images: A site is held out only with at least this many COVID images.
        seed: Seed of the CNNs and of the bootstrap.
    """

    image_size: int = 48
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 3e-3
    n_resamples: int = 1000
    held_out_sites: int = 4
    min_source_images: int = 20
    seed: int = 0


def probe_settings(quick: bool) -> ProbeSettings:
    """The full settings, or tiny ones for CI (``quick``)."""
    if quick:
        return ProbeSettings(
            image_size=16, epochs=1, n_resamples=50, held_out_sites=1, min_source_images=2
        )
    return ProbeSettings()


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


def _probe_view(images: torch.Tensor, settings: ProbeSettings) -> torch.Tensor:
    """The probe's input: the view downsampled (area) to the probe's size."""
    if images.shape[-1] == settings.image_size:
        return images
    return F.interpolate(images, size=(settings.image_size,) * 2, mode="area")


def _train_probe(
    images: torch.Tensor, labels: np.ndarray, num_classes: int, settings: ProbeSettings
) -> _SmallCNN:
    """A small CNN fitted with class-balanced cross-entropy (the classes are unequal)."""
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = _SmallCNN(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    images = _probe_view(images, settings)
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


def _probe_probabilities(
    model: _SmallCNN, images: torch.Tensor, settings: ProbeSettings
) -> np.ndarray:
    with torch.inference_mode():
        shown = _probe_view(images, settings)
        return torch.cat([model(batch).softmax(dim=-1) for batch in shown.split(256)]).numpy()


def prior_corrected(probabilities: np.ndarray, validation: np.ndarray) -> np.ndarray:
    """``probabilities`` with the class priors learnt by the model divided out.

    Each class's probability is divided by its mean on the validation split and the rows
    renormalised, so that the mean predicted distribution on validation is uniform: the decision
    rule is chosen on validation, never on the test images. With two classes it is a monotone
    map of the odds, so the ranking (ROC-AUC) is unchanged.
    """
    prior = np.clip(validation.mean(axis=0), 1e-6, None)
    adjusted = probabilities / prior
    return adjusted / adjusted.sum(axis=1, keepdims=True)


def _collection_labels(images: StudyImages, collections: Sequence[str]) -> np.ndarray:
    return np.array([list(collections).index(source) for source in images.sources])


def collection_probe(views: Mapping[str, StudyImages], settings: ProbeSettings) -> dict:
    """(a) How well a small CNN tells the collections apart, per region of the image.

    Args:
        views: ``"train"``, ``"validation"`` and ``"test"`` images of one configuration's view.
        settings: Probe sizes.

    Returns:
        ``collections``, ``n_train``, ``test_counts``, ``chance`` and one entry per region of
        :data:`REGIONS` with the test scores (accuracy and balanced accuracy after the
        validation prior correction, macro ROC-AUC) and their patient-bootstrap intervals.
    """
    collections = sorted(set(views["train"].sources) | set(views["test"].sources))
    if len(collections) < 2:
        return {"skipped": "the composition holds a single collection"}
    labels = {name: _collection_labels(view, collections) for name, view in views.items()}
    test_counts = np.bincount(labels["test"], minlength=len(collections))
    result: dict = {
        "collections": collections,
        "n_train": int(len(labels["train"])),
        "test_counts": dict(zip(collections, test_counts.tolist(), strict=True)),
        "chance": {
            "accuracy": float(test_counts.max() / test_counts.sum()),
            "balanced_accuracy": 1.0 / len(collections),
            "roc_auc": 0.5,
        },
        "conditions": [],
    }
    for region in REGIONS:
        logger.info("collection probe: %s", region)
        shown = {name: blank(view.images, view.unet_masks, region) for name, view in views.items()}
        probe = _train_probe(shown["train"], labels["train"], len(collections), settings)
        validation = _probe_probabilities(probe, shown["validation"], settings)
        test = prior_corrected(_probe_probabilities(probe, shown["test"], settings), validation)
        scores = scores_with_intervals(
            labels["test"],
            test,
            collections,
            n_resamples=settings.n_resamples,
            seed=settings.seed,
            names=("accuracy", "balanced_accuracy", "roc_auc"),
            groups=views["test"].groups,
        )
        result["conditions"].append({"region": region, **scores})
    return result


def lungs_only_drop(
    key: str, checkpoint_dir: Path, test: StudyImages, settings: ProbeSettings
) -> dict:
    """(b) A trained classifier on its test split (its own view), whole and lungs only.

    Returns:
        ``conditions``: per region (whole, lungs only) the scores, the most predicted classes,
        and for the lungs only the accuracy drop with its paired patient-bootstrap interval.
    """
    logger.info("lungs-only evaluation: %s", key)
    model, processor = load_checkpoint(checkpoint_dir)
    class_names = class_names_of(model.config)
    missing = [name for name in test.class_names if name not in class_names]
    if missing:
        raise ValueError(f"{checkpoint_dir}: the model has no class {missing} of its test split")
    labels = np.array([class_names.index(test.class_names[i]) for i in test.labels])
    result: dict = {
        "model": key,
        "display_name": get_model_family(model.config.model_type).display_name,
        "n_test": int(len(labels)),
        "conditions": [],
    }
    correct_whole = None
    for region in ("whole", "lungs_only"):
        shown = blank(test.images, test.unet_masks, region)
        probabilities = predict_probabilities(model, processor, shown, test.unet_masks)
        predicted = probabilities.argmax(axis=1)
        correct = (predicted == labels).astype(np.float64)
        condition = {
            "region": region,
            **scores_with_intervals(
                labels,
                probabilities,
                class_names,
                n_resamples=settings.n_resamples,
                seed=settings.seed,
                groups=test.groups,
            ),
            "predicted_fractions": dict(
                zip(
                    class_names,
                    (np.bincount(predicted, minlength=len(class_names)) / len(labels)).tolist(),
                    strict=True,
                )
            ),
        }
        if correct_whole is None:
            correct_whole = correct
        else:
            drop = correct_whole - correct
            condition["accuracy_drop"] = float(drop.mean())
            condition["accuracy_drop_interval"] = list(
                bootstrap_mean_interval(
                    drop, settings.n_resamples, 0.95, settings.seed, groups=test.groups
                )
            )
        result["conditions"].append(condition)
    return result


def _covid_source(images: StudyImages, covid: int) -> np.ndarray:
    """The COVID source of every image: an ieee8023 web site, or the hospital-films collection
    as a whole; "" for non-COVID images and images of no known source."""
    return np.array(
        [
            ""
            if label != covid
            else HOSPITAL_FILMS
            if source == HOSPITAL_FILMS
            else (site if source == "ieee8023" else "")
            for label, source, site in zip(images.labels, images.sources, images.sites, strict=True)
        ]
    )


def leave_one_source_out(
    train: StudyImages,
    test: StudyImages,
    settings: ProbeSettings,
    unseen: StudyImages | None = None,
) -> dict:
    """(c) COVID vs non-COVID CNNs trained without one COVID source, tested on it.

    Every image of the held-out source's patients leaves training; the source's COVID images
    (train and test split) are tested against the test split's non-COVID images, beside the
    in-distribution test (the test split without that source).

    Args:
        train: Training images (train and validation splits) of the configuration's view.
        test: Its test images.
        settings: Probe sizes.
        unseen: COVID images of sources the composition does not hold (COVID-CXNet for the
            first study's composition), in the same view: tested as held out, never trained on.
    """
    if POSITIVE_CLASS not in train.class_names:
        return {"skipped": f"the composition has no {POSITIVE_CLASS} class"}
    covid = train.class_names.index(POSITIVE_CLASS)
    sources = {"train": _covid_source(train, covid), "test": _covid_source(test, covid)}
    counts: dict[str, int] = {}
    for source in (*sources["train"], *sources["test"]):
        if source:
            counts[source] = counts.get(source, 0) + 1
    sites = sorted(
        (s for s, n in counts.items() if s != HOSPITAL_FILMS and n >= settings.min_source_images),
        key=lambda site: (-counts[site], site),
    )[: settings.held_out_sites]
    held_out = [*sites, *([HOSPITAL_FILMS] if HOSPITAL_FILMS in counts else [])]
    binary = {
        "train": (train.labels == covid).astype(int),
        "test": (test.labels == covid).astype(int),
    }
    names = ("covid_sensitivity", "roc_auc", "balanced_accuracy")
    result: dict = {"classes": list(BINARY_LABELS), "source_counts": counts, "held_out": []}

    def scores(labels: np.ndarray, probabilities: np.ndarray, groups) -> dict:
        return scores_with_intervals(
            labels,
            probabilities,
            BINARY_LABELS,
            n_resamples=settings.n_resamples,
            seed=settings.seed,
            names=names,
            groups=groups,
        )

    controls = binary["test"] == 0
    for source in held_out:
        patients = {
            (s, p)
            for images, where in ((train, sources["train"]), (test, sources["test"]))
            for s, p in zip(
                images.sources[where == source], images.patient_ids[where == source], strict=True
            )
            if p
        }
        away = {
            name: ~np.isin(
                [f"{s}\0{p}" for s, p in zip(images.sources, images.patient_ids, strict=True)],
                [f"{s}\0{p}" for s, p in patients],
            )
            & (sources[name] != source)
            for name, images in (("train", train), ("test", test))
        }
        logger.info("leave one source out: %s (%d COVID images)", source, counts[source])
        probe = _train_probe(
            train.images[away["train"]], binary["train"][away["train"]], 2, settings
        )
        in_distribution = test.select(away["test"])
        held = (
            train.select(sources["train"] == source).images,
            test.select(sources["test"] == source).images,
        )
        held_images = torch.cat([*held, test.images[controls & away["test"]]])
        held_labels = np.concatenate(
            [
                np.ones(sum(len(h) for h in held), int),
                np.zeros(int((controls & away["test"]).sum()), int),
            ]
        )
        held_groups = [
            *train.select(sources["train"] == source).groups,
            *test.select(sources["test"] == source).groups,
            *test.select(controls & away["test"]).groups,
        ]
        result["held_out"].append(
            {
                "source": source,
                "n_held_out_covid": int(counts[source]),
                "n_train": int(away["train"].sum()),
                "in_distribution": scores(
                    binary["test"][away["test"]],
                    _probe_probabilities(probe, in_distribution.images, settings),
                    in_distribution.groups,
                ),
                "held_out_source": scores(
                    held_labels, _probe_probabilities(probe, held_images, settings), held_groups
                ),
            }
        )
    if unseen is not None and len(unseen.images):
        probe = _train_probe(train.images, binary["train"], 2, settings)
        images = torch.cat([unseen.images, test.images[controls]])
        labels = np.concatenate(
            [np.ones(len(unseen.images), int), np.zeros(int(controls.sum()), int)]
        )
        result["held_out"].append(
            {
                "source": HOSPITAL_FILMS,
                "n_held_out_covid": int(len(unseen.images)),
                "n_train": int(len(train.images)),
                "not_in_composition": True,
                "held_out_source": scores(
                    labels,
                    _probe_probabilities(probe, images, settings),
                    [*unseen.groups, *test.select(controls).groups],
                ),
            }
        )
    return result
