"""Compose the public collections into the two layouts the models train on.

* `compose_radiography`: the COVID-19 Radiography Database label set (`RADIOGRAPHY_LABELS`),
  filled as a named composition says (`hf_covid.data.public.class_maps`): which
  ``"<collection>:<category>"`` sources fill each class and which age groups are kept.
  ``pediatric_controls`` (the default, the first study's): COVID from ieee8023, Normal and Viral
  Pneumonia from Kermany and the ieee8023 "No Finding" / viral rows, no Lung_Opacity source (the
  composition says so in the log and build summary and holds only the classes it could fill).
  ``adult_controls``: adults only; COVID from ieee8023 and COVID-CXNet, Normal and Lung_Opacity
  from NIH ChestX-ray14 (Lung_Opacity stated as the nearest public source), Viral Pneumonia
  from ieee8023. ``class_map`` replaces single classes' sources, e.g.
  ``class_map={"Lung_Opacity": ["ieee8023:bacterial", "ieee8023:fungal"]}``; ``age_groups``
  replaces the age filter.
* `compose_xray_ct`: the binary X-ray + CT layout of the Mendeley data. COVID / Non-COVID
  X-rays from ieee8023 (frontal) and Kermany (all Non-COVID), CTs from COVID-CT and the ieee8023
  CT figure crops, label-paired within each split exactly as `build_xray_ct_dataset` does.

Both split all images together: grouped by patient (per collection), stratified by label, and
near-duplicates found across collections (perceptual hashes of every image compared with every
other, e.g. the COVID-CT slices also published in ieee8023) kept in one split. Both take the
split, seed, deduplication and cache options of `build_radiography_dataset` /
`build_xray_ct_dataset`.

What is wrong with any such composition: every class comes from different collections
(``pediatric_controls``: COVID from adults in paper figures, the controls mostly children aged 1-5
from one hospital; ``adult_controls``: COVID from figures and one Spanish hospital's films, the
controls from one US hospital), so a model can learn age, hospital, device and image processing
instead of disease. The build summary's class x source x age group x view table shows how far;
treat any accuracy on such a mix as a software check, never as diagnostic evidence.
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
from .class_maps import (
    DEFAULT_RADIOGRAPHY_COMPOSITION,
    check_age_groups,
    get_radiography_composition,
    parse_source,
    resolve_radiography_class_map,
)
from .collections import PUBLIC_COLLECTIONS, get_collection
from .common import CollectionScan, PublicImage, build_image_dataset, cross_collection_note
from .records import ScanOptions

__all__ = [
    "PUBLIC_COMPOSERS",
    "PUBLIC_COMPOSITION_KINDS",
    "PublicSelection",
    "compose_radiography",
    "compose_xray_ct",
    "select_radiography_images",
    "select_xray_ct_images",
]

logger = logging.getLogger(__name__)

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
    age_groups: Sequence[str] | None = None,
) -> PublicSelection:
    """Keep the images that ``class_of`` assigns to a class and whose age group is in
    ``age_groups`` (None: any); count the rest by category or age group."""
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
            age_group = image.age_group or "unknown"
            if age_groups is not None and age_group not in age_groups:
                excluded[f"{name}: {image.category}, age group {age_group} (age filter)"] += 1
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
    composition: str = DEFAULT_RADIOGRAPHY_COMPOSITION,
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, Sequence[str]] | None = None,
    age_groups: Sequence[str] | None = None,
    include_lateral: bool = False,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> PublicSelection:
    """The X-rays of the collections assigned to Radiography classes (see `compose_radiography`)."""
    chosen = get_radiography_composition(composition)
    mapping = resolve_radiography_class_map(classes, class_map, composition)
    kept_ages = check_age_groups(age_groups) if age_groups is not None else chosen.age_groups
    class_of_source = {source: name for name, sources in mapping.items() for source in sources}
    needed = {parse_source(source)[0] for source in class_of_source}
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
    notes = [f"Composition {chosen.name!r}: {chosen.description}.", *chosen.notes]
    if kept_ages != chosen.age_groups:
        notes.append(
            "Age groups kept: " + (", ".join(kept_ages) if kept_ages else "all") + " (recipe)."
        )
    if missing:
        notes.append(
            f"Classes without a public source, left out: {', '.join(missing)} (the composition "
            f"holds {', '.join(mapping)}); map one with class_map=... to fill it."
        )
        logger.warning("public Radiography composition: %s", notes[-1])
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
        kept_ages,
    )


def compose_radiography(
    collections_root: str | Path,
    *,
    composition: str = DEFAULT_RADIOGRAPHY_COMPOSITION,
    classes: Sequence[str] | None = None,
    class_map: Mapping[str, Sequence[str]] | None = None,
    age_groups: Sequence[str] | None = None,
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
            ``kermany/chest_xray/``, ``covid_ct/``, ``nih_chestxray14/``, ``covid_cxnet/``; see
            each collection's ``folder_names`` for accepted names).
        composition: The named composition (`RADIOGRAPHY_COMPOSITIONS`): which sources fill
            which class and which ages are kept.
        classes: Classes wanted; default: every class with a source. A class without a source
            raises.
        class_map: Sources per class, replacing the composition's entry of each class named.
        age_groups: The age groups kept (`AGE_GROUPS`), replacing the composition's filter.
        include_lateral: Also use lateral ieee8023 X-rays.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicates (all collections compared) in one split.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan caches go; never inside a collection.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the Radiography columns (``label``: ClassLabel of the filled
        classes, in `RADIOGRAPHY_LABELS` order; ``source``: the collection) plus the other
        shared public columns (``site``, ``patient_id``, ``view``, ``age``, ``age_group``, ...).
        The build summary names the composition, its notes and a class x source x age group x
        view table. Train on a subset with the recipe's ``classes`` set to the same names.
    """
    selection = select_radiography_images(
        collections_root,
        composition=composition,
        classes=classes,
        class_map=class_map,
        age_groups=age_groups,
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
