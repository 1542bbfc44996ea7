"""Compose the public collections into the two layouts the models train on.

* `compose_radiography`: the COVID-19 Radiography Database label set (`RADIOGRAPHY_LABELS`).
  By default (`DEFAULT_RADIOGRAPHY_CLASS_MAP`) COVID comes from ieee8023, Normal and Viral
  Pneumonia from Kermany and the ieee8023 "No Finding" / viral rows. **Lung_Opacity has no public
  source here**: the composition says so (log and build summary) and holds only the classes it
  could fill, unless ``class_map`` names a source for it, e.g.
  ``class_map={"Lung_Opacity": ["ieee8023:bacterial", "ieee8023:fungal"]}``. A source is
  ``"<collection>:<category>"`` (see `hf_covid.data.public.common.CATEGORY_DESCRIPTIONS`).
* `compose_xray_ct`: the binary X-ray + CT layout of the Mendeley data. COVID / Non-COVID
  X-rays from ieee8023 (frontal) and Kermany (all Non-COVID), CTs from COVID-CT and the ieee8023
  CT figure crops, label-paired within each split exactly as `build_xray_ct_dataset` does.

Both split all images together: grouped by patient (per collection), stratified by label, and
near-duplicates found across collections (perceptual hashes of every image compared with every
other, e.g. the COVID-CT slices also published in ieee8023) kept in one split. Both take the
split, seed, deduplication and cache options of `build_radiography_dataset` /
`build_xray_ct_dataset`.

What is wrong with any such composition: every class comes from different collections (COVID:
adults in paper figures; Normal and Viral Pneumonia: mostly children aged 1-5 from one hospital),
so a model can learn age, hospital and image processing instead of disease. Treat any accuracy
on it as a software check, never as diagnostic evidence.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, DatasetDict, Features, Image, Value

from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS

from ..splits import DEFAULT_SPLIT_RATIOS, make_dataset_dict, plan_splits
from ..summary import DatasetBuildSummary
from ..xray_ct import MODALITIES, MODALITY_NAMES, PAIRING_DESCRIPTIONS, pair_by_split
from . import covid_ct, ieee8023, kermany
from .collections import PUBLIC_COLLECTIONS, get_collection
from .common import (
    CollectionScan,
    PublicImage,
    ScanOptions,
    build_image_dataset,
    cross_collection_note,
)

__all__ = [
    "DEFAULT_RADIOGRAPHY_CLASS_MAP",
    "PUBLIC_COMPOSERS",
    "PUBLIC_COMPOSITION_KINDS",
    "PublicSelection",
    "compose_radiography",
    "compose_xray_ct",
    "resolve_radiography_class_map",
    "select_radiography_images",
    "select_xray_ct_images",
]

logger = logging.getLogger(__name__)

DEFAULT_RADIOGRAPHY_CLASS_MAP: dict[str, tuple[str, ...]] = {
    "COVID": ("ieee8023:covid",),
    "Lung_Opacity": (),
    "Normal": ("kermany:normal", "ieee8023:normal"),
    "Viral Pneumonia": ("kermany:viral", "ieee8023:viral"),
}
"""Radiography class -> ``"<collection>:<category>"`` sources; Lung_Opacity has none here."""

PUBLIC_RADIOGRAPHY_KIND = "public_radiography"
PUBLIC_XRAY_CT_KIND = "public_xray_ct"
PUBLIC_COMPOSITION_KINDS = (PUBLIC_RADIOGRAPHY_KIND, PUBLIC_XRAY_CT_KIND)
"""``DatasetBuildSummary.kind`` of the two compositions (how a record knows it holds them)."""

XRAY_CT_COLLECTIONS: tuple[str, ...] = (ieee8023.SOURCE, kermany.SOURCE, covid_ct.SOURCE)
"""The collections the X-ray + CT composition reads."""
XRAY_CT_COVID_CATEGORY = "covid"
"""The category that is COVID in the binary layout; every other labelled category is Non-COVID."""


@dataclass
class PublicSelection:
    """Images chosen from the collections for one layout, before splitting.

    Attributes:
        images: The images.
        labels: Class index of every image, into ``class_names``.
        class_names: The layout's classes that have images, in layout order.
        excluded: Images left out, by ``"<collection>: <reason>"``.
        bad_files_skipped: Unreadable files skipped.
        notes: Caveats for the summary (missing classes, merged patients, ...).
        collection_roots: The folder of every collection read.
    """

    images: list[PublicImage]
    labels: list[int]
    class_names: tuple[str, ...]
    collection_roots: dict[str, Path] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    bad_files_skipped: int = 0
    notes: list[str] = field(default_factory=list)


def _parse_source(reference: str) -> tuple[str, str]:
    collection, _, category = reference.partition(":")
    record = PUBLIC_COLLECTIONS.get(collection)
    if record is None or category not in record.categories:
        known = [f"{r.name}:{c}" for r in PUBLIC_COLLECTIONS.values() for c in r.categories]
        raise ValueError(f"unknown source {reference!r} in class_map; expected one of {known}")
    return collection, category


def resolve_radiography_class_map(
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, tuple[str, ...]]:
    """Radiography class -> sources, for the classes that will be filled.

    Args:
        classes: Classes wanted (default: every class that has a source).
        class_map: Sources per class, replacing `DEFAULT_RADIOGRAPHY_CLASS_MAP`'s entry for each
            class it names (``{"Lung_Opacity": ["ieee8023:bacterial"]}``).

    Returns:
        The selected classes, in `RADIOGRAPHY_LABELS` order, each with its sources.

    Raises:
        ValueError: An unknown class or source, a source given to two classes, or a requested
            class without a source (naming how to map one).
    """
    merged = {name: tuple(sources) for name, sources in DEFAULT_RADIOGRAPHY_CLASS_MAP.items()}
    for name, sources in (class_map or {}).items():
        if name not in merged:
            raise ValueError(f"class_map: {name!r} is not one of {list(RADIOGRAPHY_LABELS)}")
        merged[name] = (sources,) if isinstance(sources, str) else tuple(sources)
    owner: dict[str, str] = {}
    for name, sources in merged.items():
        for source in sources:
            _parse_source(source)
            if owner.setdefault(source, name) != name:
                raise ValueError(
                    f"class_map: {source!r} is mapped to both {owner[source]!r} and {name!r}"
                )
    if classes is None:
        selected = [name for name in RADIOGRAPHY_LABELS if merged[name]]
    else:
        unknown = [name for name in classes if name not in merged]
        if unknown or not classes:
            raise ValueError(
                f"classes must be a non-empty subset of {list(RADIOGRAPHY_LABELS)}, got {list(classes)}"
            )
        empty = [name for name in classes if not merged[name]]
        if empty:
            raise ValueError(
                f"class(es) {empty} have no source in the public collections; map one "
                f"explicitly, e.g. class_map={{{empty[0]!r}: ['ieee8023:bacterial']}}, or leave "
                "them out of classes"
            )
        selected = [name for name in RADIOGRAPHY_LABELS if name in set(classes)]
    return {name: merged[name] for name in selected}


def _scan_collections(
    collections_root: str | Path, names: Sequence[str], options: ScanOptions
) -> dict[str, CollectionScan]:
    """Scan the collections ``names`` below ``collections_root`` with ``options``."""
    root = Path(collections_root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"collections folder '{root}' does not exist")
    return {name: get_collection(name).scan(root, options) for name in names}


def _selection(
    scans: Mapping[str, CollectionScan],
    class_of: Callable[[PublicImage], str | None],
    class_names: Sequence[str],
    notes: Sequence[str] = (),
) -> PublicSelection:
    """Keep the images that ``class_of`` assigns to a class; count the rest by category."""
    selection = PublicSelection(
        images=[],
        labels=[],
        class_names=tuple(class_names),
        collection_roots={name: scan.root for name, scan in scans.items()},
    )
    excluded: Counter[str] = Counter()
    for name, scan in scans.items():
        for reason, count in scan.excluded.items():
            excluded[f"{name}: {reason}"] += count
        for image in scan.images:
            class_name = class_of(image)
            if class_name is None:
                excluded[f"{name}: {image.modality} {image.category} (no class mapped)"] += 1
                continue
            selection.images.append(image)
            selection.labels.append(list(class_names).index(class_name))
        selection.bad_files_skipped += scan.bad_files_skipped
        selection.notes += scan.notes
    selection.excluded = dict(excluded)
    selection.notes = [*notes, *selection.notes]
    return selection


def select_radiography_images(
    collections_root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, Sequence[str]] | None = None,
    include_lateral: bool = False,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> PublicSelection:
    """The X-rays of the collections assigned to Radiography classes (see `compose_radiography`)."""
    mapping = resolve_radiography_class_map(classes, class_map)
    class_of_source = {source: name for name, sources in mapping.items() for source in sources}
    needed = {_parse_source(source)[0] for source in class_of_source}
    options = ScanOptions(
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
        include_lateral=include_lateral,
    )
    scans = _scan_collections(
        collections_root, [name for name in PUBLIC_COLLECTIONS if name in needed], options
    )
    missing = [name for name in RADIOGRAPHY_LABELS if name not in mapping]
    notes = []
    if missing:
        notes.append(
            f"Classes without a public source, left out: {', '.join(missing)} (the composition "
            f"holds {', '.join(mapping)}); map one with class_map=... to fill it."
        )
        logger.warning("public Radiography composition: %s", notes[0])
    notes.append(
        "Sources per class: "
        + "; ".join(f"{name} <- {', '.join(sources)}" for name, sources in mapping.items())
        + "."
    )
    return _selection(
        scans,
        lambda image: class_of_source.get(f"{image.source}:{image.category}"),
        list(mapping),
        notes,
    )


def compose_radiography(
    collections_root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, Sequence[str]] | None = None,
    include_lateral: bool = False,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Compose the public X-rays into the Radiography label set, split by patient.

    Args:
        collections_root: Folder holding the collections side by side (``ieee8023/``,
            ``kermany/chest_xray/``, ``covid_ct/``; see each builder for accepted names).
        classes: Classes wanted; default: every class with a source (COVID, Normal, Viral
            Pneumonia). A class without a source raises.
        class_map: Sources per class, replacing the default entry of each class named.
        include_lateral: Also use lateral ieee8023 X-rays.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicates (all collections compared) in one split.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan caches go; never inside a collection.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the Radiography columns (``label``: ClassLabel of the filled
        classes, in `RADIOGRAPHY_LABELS` order; ``source``: the collection) plus ``patient_id``,
        ``modality``, ``view``, ``finding``, ``license`` and ``age_group``. Train on a subset with
        the recipe's ``classes`` set to the same names.
    """
    selection = select_radiography_images(
        collections_root,
        classes=classes,
        class_map=class_map,
        include_lateral=include_lateral,
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )
    return build_image_dataset(
        selection.images,
        selection.labels,
        class_names=selection.class_names,
        kind=PUBLIC_RADIOGRAPHY_KIND,
        title="Public collections in the Radiography label set",
        grouping="patient_id within each collection",
        dataset_name="public_radiography",
        split_ratios=split_ratios,
        seed=seed,
        deduplicate=deduplicate,
        excluded=selection.excluded,
        bad_files_skipped=selection.bad_files_skipped,
        notes=selection.notes,
    )


def select_xray_ct_images(
    collections_root: str | Path,
    *,
    include_ieee8023_ct: bool = True,
    include_lateral: bool = False,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> PublicSelection:
    """The X-rays and CTs of the collections as COVID / Non-COVID (see `compose_xray_ct`)."""
    options = ScanOptions(
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
        include_lateral=include_lateral,
        xray_only=not include_ieee8023_ct,
    )
    scans = _scan_collections(collections_root, XRAY_CT_COLLECTIONS, options)
    return _selection(
        scans,
        lambda image: BINARY_LABELS[int(image.category == XRAY_CT_COVID_CATEGORY)],
        BINARY_LABELS,
    )


MODALITY_KEYS = {name: key for key, name in MODALITY_NAMES.items()}
"""``modality`` column value ("X-ray", "CT") -> the X-ray + CT layout's key ("xray", "ct")."""
PER_IMAGE_COLUMNS = ("source", "patient_id", "view", "license", "age_group")
"""Columns given once per modality (``xray_source``, ``ct_source``, ...) in the X-ray+CT layout."""


def compose_xray_ct(
    collections_root: str | Path,
    *,
    keep_unpaired: bool = False,
    include_ieee8023_ct: bool = True,
    include_lateral: bool = False,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Compose the public X-rays and CTs into the binary X-ray + CT layout, label-paired.

    Images are split first (grouped by patient, stratified by modality and class, near-
    duplicates of all collections together in one split), then each X-ray is joined to a CT of
    the same class *from a different person* within its split, drawn by a seeded generator
    (`hf_covid.data.xray_ct` pairing; ``pairing`` is ``"label"`` on every paired row).

    Args:
        collections_root: Folder holding the collections side by side.
        keep_unpaired: Keep images without a partner as one-modality rows (``"unpaired"``).
        include_ieee8023_ct: Also use the ieee8023 CT figure crops (with COVID-CT's).
        include_lateral: Also use lateral ieee8023 X-rays.
        split_ratios, seed, deduplicate, skip_bad_images, cache_dir, num_threads: As in
            `build_xray_ct_dataset`.

    Returns:
        A `DatasetDict` with the X-ray + CT columns (``xray``, ``ct``, ``label``, ``xray_id``,
        ``ct_id`` as ``<collection>/<path>``, ``patient_id`` None: label-paired rows join two
        people, ``pairing``) plus ``xray_<c>`` and ``ct_<c>`` for ``c`` in `PER_IMAGE_COLUMNS`.
    """
    selection = select_xray_ct_images(
        collections_root,
        include_ieee8023_ct=include_ieee8023_ct,
        include_lateral=include_lateral,
        skip_bad_images=skip_bad_images,
        cache_dir=cache_dir,
        num_threads=num_threads,
    )
    images = selection.images
    modalities = [MODALITY_KEYS[image.modality] for image in images]
    strata = [
        MODALITIES.index(modality) * 2 + label
        for modality, label in zip(modalities, selection.labels, strict=True)
    ]
    plan = plan_splits(
        strata,
        group_keys=[image.group_key for image in images],
        hashes=[image.hashes for image in images] if deduplicate else None,
        split_ratios=split_ratios,
        seed=seed,
        align_crops=True,  # real collections: copies are often crops of one paper figure
    )
    identifiers = [f"{image.source}/{image.image_id}" for image in images]
    items = [
        {
            "value": image.value,
            "id": identifier,
            "modality": modality,
            "label": label,
            "patient_id": None,
            "hashes": image.hashes,
        }
        for image, identifier, modality, label in zip(
            images, identifiers, modalities, selection.labels, strict=True
        )
    ]
    columns_by_split, pairing_lines = pair_by_split(
        items, plan.split_of_item, "label", keep_unpaired, seed
    )
    image_of = dict(zip(identifiers, images, strict=True))
    for columns in columns_by_split.values():
        for modality in MODALITIES:
            chosen = [image_of.get(identifier) for identifier in columns[f"{modality}_id"]]
            for name in PER_IMAGE_COLUMNS:
                columns[f"{modality}_{name}"] = [
                    getattr(image, name) if image is not None else None for image in chosen
                ]

    stratum_names = [f"{MODALITY_NAMES[m]} {name}" for m in MODALITIES for name in BINARY_LABELS]
    counts = Counter(strata)
    summary = DatasetBuildSummary(
        kind=PUBLIC_XRAY_CT_KIND,
        title="Public collections in the X-ray + CT layout",
        classes=list(BINARY_LABELS),
        images_per_class={name: counts.get(i, 0) for i, name in enumerate(stratum_names)},
        split_ratios=list(split_ratios),
        split_seed=seed,
        grouping="patient_id within each collection (before pairing)",
        deduplicate=deduplicate,
        near_duplicates=plan.near_duplicates() if deduplicate else None,
        pairing="label",
        pairing_note=PAIRING_DESCRIPTIONS["label"],
        bad_files_skipped=selection.bad_files_skipped,
        ignored_files=selection.excluded,
        sources=dict(Counter(image.source for image in images)),
        licenses=dict(Counter(image.license or "not stated" for image in images)),
        notes=[
            *pairing_lines,
            *(
                [cross_collection_note(plan, [image.source for image in images])]
                if deduplicate
                else []
            ),
            *selection.notes,
        ],
    )
    image_features = {
        "xray": Image(),
        "ct": Image(),
        "label": ClassLabel(names=list(BINARY_LABELS)),
    }
    string_columns = ["xray_id", "ct_id", "patient_id", "pairing"] + [
        f"{modality}_{name}" for modality in MODALITIES for name in PER_IMAGE_COLUMNS
    ]
    features = Features({**image_features, **{name: Value("string") for name in string_columns}})
    return make_dataset_dict(
        columns_by_split,
        features=features,
        summary=summary,
        dataset_name="public_xray_ct_label_paired",
    )


PUBLIC_COMPOSERS: dict[str, Callable[..., DatasetDict]] = {
    "radiography": compose_radiography,
    "xray_ct": compose_xray_ct,
}
"""Dataset layout key (``hf_covid.registry.DATASET_KINDS``) -> the composition into that layout
(the collections-root counterpart of ``hf_covid.data.DATASET_BUILDERS``)."""
