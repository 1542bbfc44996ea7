"""What the public-collection builders share: the image record, the scan, the columns, the split.

Every collection builder (`ieee8023`, `kermany`, `covid_ct`, `nih_chestxray14`, `covid_cxnet`,
`rsna`, `covidx`) first *scans* its folder into a `CollectionScan`: one `PublicImage` per usable
image (validated and hashed once through `hf_covid.data.io.DatasetCache` by `inspect_files`,
cached outside the data folder), with the collection's own category (``"covid"``, ``"normal"``,
``"viral"``, ...), patient id, site, view, licence, age and sex, plus a count of every image it
left out and why. `build_image_dataset` then splits any list of
such images (one collection, or a composition of several) by patient, stratified by label, with
near-duplicates kept in one split, into a `DatasetDict` with the columns of `public_features`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from datasets import ClassLabel, DatasetDict, Features, Image, Value

from ..dedup import ImageHashes
from ..io import DatasetCache, ImageFileInfo, report_bad_input
from ..radiography import mask_column_value
from ..splits import DEFAULT_SPLIT_RATIOS, SPLIT_NAMES, SplitPlan, make_dataset_dict, plan_splits
from ..summary import DatasetBuildSummary

__all__ = [
    "CATEGORY_DESCRIPTIONS",
    "ADULT_AGE",
    "CollectionScan",
    "PublicImage",
    "build_image_dataset",
    "cross_collection_duplicate_groups",
    "cross_collection_note",
    "age_problem_notes",
    "inspect_files",
    "locate_collection",
    "parse_age",
    "public_features",
    "site_of_url",
]

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "covid": "COVID-19 (with or without ARDS)",
    "non_covid": "no COVID-19 (normal or another finding; COVID-CT's NonCOVID slices)",
    "normal": "no finding",
    "viral": "viral pneumonia other than COVID-19 (SARS, MERS, influenza, varicella, ...)",
    "bacterial": "bacterial pneumonia (Streptococcus, Klebsiella, Legionella, ...)",
    "fungal": "fungal pneumonia (Pneumocystis, Aspergillus, ...)",
    "other": "another or unspecified finding (ARDS, lipoid pneumonia, 'Pneumonia')",
    "pneumonia": "pneumonia other than COVID-19 of unstated cause (NIH's text-mined 'Pneumonia' "
    "label, often with infiltration, atelectasis, edema or effusion; COVIDx 'pneumonia')",
    "lung_opacity": "lung opacity suggestive of pneumonia, with boxes (RSNA 'Lung Opacity')",
    "not_normal": "no lung opacity but not normal either (RSNA 'No Lung Opacity / Not Normal')",
}
"""The categories a collection builder labels its images with (its ClassLabel names), also the
names a composition's ``class_map`` refers to as ``"<collection>:<category>"``."""

XRAY, CT = "X-ray", "CT"
"""Values of the ``modality`` column."""

COLUMNS = (
    "image",
    "mask",
    "label",
    "image_id",
    "source",
    "site",
    "patient_id",
    "modality",
    "view",
    "finding",
    "license",
    "age",
    "age_group",
    "sex",
)
STRATUM_KEYS = ("class", "source", "age_group", "view")
"""The keys of a build summary's ``strata`` rows (besides the image count)."""
ADULT_AGE = 18
"""Age in years from which a patient counts as an adult."""
PLAUSIBLE_AGES = (0.0, 120.0)
"""Ages outside this range (years) are data errors: counted and treated as unknown."""


def public_features(
    class_names: Sequence[str], extra_features: Mapping[str, object] | None = None
) -> Features:
    """Features of a public-collection dataset (one collection or a single-image composition).

    The Radiography columns (``image``, ``mask``, ``label``, ``image_id``, ``source``: the
    collection) plus ``site`` (the hospital or web site the image comes from, "" unknown),
    ``patient_id``, ``modality`` (X-ray, CT), ``view``, ``finding`` (the collection's own label
    text), ``license`` ("" when not stated), ``age`` (years, None unknown), ``age_group``
    (pediatric, adult, "" unknown) and ``sex`` (M, F, "" unknown); then a collection's own
    ``extra_features`` (NIH's multi-label findings, ...).
    """
    typed = {"image": Image(), "mask": Image(), "label": ClassLabel(names=list(class_names))}
    typed["age"] = Value("float32")
    strings = {name: Value("string") for name in COLUMNS if name not in typed}
    return Features(
        {
            **{name: typed.get(name, strings.get(name)) for name in COLUMNS},
            **dict(extra_features or {}),
        }
    )


@dataclass(frozen=True)
class PublicImage:
    """One usable image of a public collection.

    Attributes:
        file: The image file in the collection.
        value: What the ``image`` column holds (the file, or a PNG copy in the cache for DICOM).
        image_id: Path relative to the collection folder.
        source: The collection (``"ieee8023"``, ``"kermany"``, ``"covid_ct"``).
        category: The collection's category (a key of `CATEGORY_DESCRIPTIONS`).
        finding: The label as the collection writes it (``"COVID-19, ARDS"``, ``"bacteria"``).
        modality: `XRAY` or `CT`.
        patient_id: Patient within the collection, or None where the collection has none.
        view: PA, AP, AP Supine, L, axial, coronal, or "" when unknown.
        license: Licence of the image as stated by the collection, "" when not stated.
        age_group: ``"pediatric"``, ``"adult"`` or "" when unknown.
        mask: What the ``mask`` column holds (lung mask at the image size), or None.
        hashes: Perceptual hashes (near-duplicate search).
        width: Width in pixels.
        height: Height in pixels.
        image_format: Format by content ("PNG", "JPEG", ...), whatever the file name says.
        site: The hospital or web site the image comes from, "" when unknown.
        age: Age in years, None when unknown.
        sex: ``"M"``, ``"F"`` or "" when unknown.
        extra: Values of the collection's own columns (`CollectionScan.extra_features`).
    """

    file: Path
    value: str
    image_id: str
    source: str
    category: str
    finding: str
    modality: str
    patient_id: str | None
    view: str
    license: str
    age_group: str
    mask: str | None
    hashes: ImageHashes
    width: int
    height: int
    image_format: str
    site: str = ""
    age: float | None = None
    sex: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def group_key(self) -> tuple[str, str] | None:
        """Split group: the patient, namespaced by collection (ids repeat across collections)."""
        return (self.source, self.patient_id) if self.patient_id else None

    def column_values(self) -> dict[str, object]:
        """This image's values for `COLUMNS`, all but ``label``."""
        return {
            "image": self.value,
            "mask": self.mask,
            "image_id": self.image_id,
            "source": self.source,
            "site": self.site,
            "patient_id": self.patient_id,
            "modality": self.modality,
            "view": self.view,
            "finding": self.finding,
            "license": self.license,
            "age": self.age,
            "age_group": self.age_group,
            "sex": self.sex,
        }


def make_public_image(
    info: ImageFileInfo,
    mask_info: ImageFileInfo | None,
    cache: DatasetCache,
    **fields: object,
) -> PublicImage:
    """A `PublicImage` from a validated file (``info.error`` is None) and its optional mask."""
    mask, _ = mask_column_value(mask_info, info, cache)
    value = str(cache.derived_png(info.path)) if info.image_format == "DICOM" else str(info.path)
    return PublicImage(
        file=info.path,
        value=value,
        image_id=info.path.relative_to(cache.data_root).as_posix(),
        mask=mask,
        hashes=info.hashes,
        width=info.width,
        height=info.height,
        image_format=info.image_format,
        **fields,
    )


@dataclass
class CollectionScan:
    """A scanned public collection: its usable images and what was left out.

    Attributes:
        source: Collection name (the ``source`` column).
        title: Human name for summaries.
        root: The collection folder.
        categories: The collection's categories, in label order.
        images: Usable images.
        excluded: Images left out, by reason (``{"unlabelled (finding 'todo')": 78}``).
        bad_files_skipped: Unreadable files skipped with ``skip_bad_images``.
        grouping: What the split groups by (``"patient_id"``, or why there is none).
        notes: Caveats for the summary, one sentence each.
        official_split: Split name per image id where the collection ships its own split lists.
        extra_features: Features of the collection's own columns (``PublicImage.extra``), kept
            by its own builder and dropped by compositions.
    """

    source: str
    title: str
    root: Path
    categories: tuple[str, ...]
    images: list[PublicImage]
    excluded: dict[str, int] = field(default_factory=dict)
    bad_files_skipped: int = 0
    grouping: str = "patient_id"
    notes: list[str] = field(default_factory=list)
    official_split: dict[str, str] | None = None
    extra_features: dict[str, object] = field(default_factory=dict)


def cross_collection_duplicate_groups(plan: SplitPlan, sources: Sequence[str]) -> list[list[int]]:
    """The near-duplicate groups of ``plan`` whose images come from more than one collection."""
    return [
        group for group in plan.duplicate_groups if len({sources[index] for index in group}) > 1
    ]


def cross_collection_note(plan: SplitPlan, sources: Sequence[str]) -> str:
    """The summary sentence counting near-duplicate groups that span collections."""
    crossing = cross_collection_duplicate_groups(plan, sources)
    return (
        f"Near-duplicates across collections: {len(crossing)} group(s) "
        f"({sum(len(group) for group in crossing)} images), each kept in one split."
    )


def build_image_dataset(
    images: Sequence[PublicImage],
    labels: Sequence[int],
    *,
    class_names: Sequence[str],
    kind: str,
    title: str,
    grouping: str,
    dataset_name: str,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    excluded: Mapping[str, int] | None = None,
    bad_files_skipped: int = 0,
    notes: Sequence[str] = (),
    fixed_split: Sequence[str] | None = None,
    extra_features: Mapping[str, object] | None = None,
) -> DatasetDict:
    """Split images into train/validation/test (by patient, stratified, near-duplicates together).

    Args:
        images: The images, from one collection or several.
        labels: Class index of every image, into ``class_names``.
        class_names: The ClassLabel names.
        kind, title, grouping: The `DatasetBuildSummary` fields of the same name.
        dataset_name: ``DatasetInfo.dataset_name`` of every split.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicates (perceptual hash, all images compared) in one split.
        excluded: Images left out, by reason (the summary's ``ignored_files``).
        bad_files_skipped: Unreadable files skipped.
        notes: Caveats for the summary.
        fixed_split: A split name (`SPLIT_NAMES`) per image, e.g. a collection's official split
            lists, used instead of planning one (near-duplicates are then only counted).
        extra_features: Features of columns of the images' ``extra`` values to keep (one
            collection's own columns).

    Returns:
        A `DatasetDict` with the columns of `public_features`; its build summary carries
        per-source and per-licence counts and the cross-collection near-duplicate groups.
    """
    if not images:
        raise ValueError(f"{title}: no usable image")
    sources = [image.source for image in images]
    plan = plan_splits(
        labels,
        group_keys=[image.group_key for image in images],
        hashes=[image.hashes for image in images] if deduplicate else None,
        split_ratios=split_ratios,
        seed=seed,
        align_crops=True,  # real collections: copies are often crops of one paper figure
    )
    split_of_item = (
        [SPLIT_NAMES.index(name) for name in fixed_split]
        if fixed_split is not None
        else plan.split_of_item
    )
    all_notes = list(notes)
    if deduplicate:
        if len(set(sources)) > 1:
            all_notes.append(cross_collection_note(plan, sources))
        if fixed_split is not None:
            split_across = sum(
                len({split_of_item[index] for index in group}) > 1
                for group in plan.duplicate_groups
            )
            all_notes.append(
                f"The official split lists were used: {split_across} near-duplicate group(s) "
                "lie in more than one split."
            )
    class_counts = Counter(labels)
    with_mask = sum(image.mask is not None for image in images)
    strata = Counter(
        (class_names[label], image.source, image.age_group or "unknown", image.view or "unknown")
        for image, label in zip(images, labels, strict=True)
    )
    summary = DatasetBuildSummary(
        kind=kind,
        title=title,
        classes=list(class_names),
        images_per_class={name: class_counts.get(i, 0) for i, name in enumerate(class_names)},
        split_ratios=list(split_ratios),
        split_seed=seed,
        grouping=grouping if fixed_split is None else "the collection's official split lists",
        deduplicate=deduplicate,
        near_duplicates=plan.near_duplicates() if deduplicate else None,
        bad_files_skipped=bad_files_skipped,
        ignored_files=dict(excluded or {}),
        masks={"matched": with_mask, "missing": len(images) - with_mask},
        sources=dict(Counter(sources)),
        licenses=dict(Counter(image.license or "not stated" for image in images)),
        strata=[
            dict(zip(STRATUM_KEYS, key, strict=True), images=count)
            for key, count in sorted(strata.items())
        ],
        notes=all_notes,
    )
    extra_columns = list(extra_features or {})
    columns_by_split = {
        name: {column: [] for column in (*COLUMNS, *extra_columns)} for name in SPLIT_NAMES
    }
    for image, label, split in zip(images, labels, split_of_item, strict=True):
        columns = columns_by_split[SPLIT_NAMES[split]]
        columns["label"].append(label)
        for column, value in image.column_values().items():
            columns[column].append(value)
        for column in extra_columns:
            columns[column].append(image.extra.get(column))
    return make_dataset_dict(
        columns_by_split,
        features=public_features(class_names, extra_features),
        summary=summary,
        dataset_name=dataset_name,
    )


def build_collection_dataset(
    scan: CollectionScan,
    *,
    split_ratios: Sequence[float],
    seed: int,
    deduplicate: bool,
    use_official_split: bool = False,
    fixed_split: Sequence[str] | None = None,
) -> DatasetDict:
    """`build_image_dataset` over one scanned collection, labelled by its categories.

    The split is ``fixed_split`` when given (a split name per image), else the collection's own
    split lists with ``use_official_split``, else planned.
    """
    if fixed_split is None and use_official_split and scan.official_split is not None:
        fixed_split = [scan.official_split[image.image_id] for image in scan.images]
    return build_image_dataset(
        scan.images,
        [scan.categories.index(image.category) for image in scan.images],
        class_names=scan.categories,
        kind=scan.source,
        title=scan.title,
        grouping=scan.grouping,
        dataset_name=scan.source,
        split_ratios=split_ratios,
        seed=seed,
        deduplicate=deduplicate,
        excluded=scan.excluded,
        bad_files_skipped=scan.bad_files_skipped,
        notes=scan.notes,
        fixed_split=fixed_split,
        extra_features=scan.extra_features,
    )


def inspect_files(
    cache: DatasetCache,
    root: Path,
    paths: Sequence[Path],
    *,
    skip_bad_images: bool,
    num_threads: int | None,
    problems: Sequence[tuple[str, str]] = (),
) -> tuple[list[ImageFileInfo], int]:
    """Validate and hash a collection's files once (the scan cache) and report the bad ones.

    Every file that does not decode, with ``problems`` (other bad entries the scan found), raises
    one `BadImagesError` naming them all, or is counted and skipped with ``skip_bad_images``.

    Returns:
        One `ImageFileInfo` per path, in order (``error`` set for a bad file), and the number of
        bad files and folders skipped.
    """
    infos = cache.inspect(paths, num_threads=num_threads)
    found = [
        *problems,
        *((info.path.relative_to(root).as_posix(), info.error) for info in infos if info.error),
    ]
    return infos, report_bad_input(root, found, skip_bad_images=skip_bad_images)


def age_group_of(age: float | None) -> str:
    """``"pediatric"`` under `ADULT_AGE` years, ``"adult"`` from it, "" when unknown."""
    if age is None:
        return ""
    return "pediatric" if age < ADULT_AGE else "adult"


def parse_age(text: str | None) -> tuple[float | None, str | None]:
    """An age in years from a table cell, never guessed.

    Returns:
        ``(age, None)`` for a plausible number (`PLAUSIBLE_AGES`), ``(None, None)`` for a blank
        cell, and ``(None, problem)`` for a cell that is not a number or not a plausible age
        (the caller counts the problem; the image's age is then unknown).
    """
    text = (text or "").strip()
    if not text:
        return None, None
    try:
        age = float(text)
    except ValueError:
        return None, "age not a number"
    if not PLAUSIBLE_AGES[0] <= age <= PLAUSIBLE_AGES[1]:
        return None, f"age outside {PLAUSIBLE_AGES[0]:g}-{PLAUSIBLE_AGES[1]:g} years"
    return age, None


def age_problem_notes(collection: str, problems: Mapping[str, int]) -> list[str]:
    """One summary sentence per kind of unusable age cell (see `parse_age`)."""
    return [
        f"{collection}: {count} image(s) with {problem}; their age is unknown (never guessed), so "
        "an age filter leaves them out."
        for problem, count in sorted(problems.items())
    ]


def site_of_url(url: str) -> str:
    """The web site of a URL (``radiopaedia.org``), or "" for a blank or unparsable one."""
    return urlparse((url or "").strip()).netloc.lower().removeprefix("www.")


def locate_collection(
    root: str | Path, candidates: Sequence[str], is_collection: Callable[[Path], bool], title: str
) -> Path:
    """The collection folder: ``root`` itself or one of ``candidates`` below it.

    Args:
        root: A folder the user passed (the collection folder, or a folder holding it).
        candidates: Relative folder names to try below ``root``, in order.
        is_collection: Whether a folder holds the collection (e.g. has ``metadata.csv``).
        title: Collection name for the error message.

    Raises:
        FileNotFoundError: Listing every folder that was looked at.
    """
    root = Path(root).expanduser().resolve()
    tried = [root, *(root / candidate for candidate in candidates)]
    for folder in tried:
        if folder.is_dir() and is_collection(folder):
            return folder
    raise FileNotFoundError(
        f"{title} not found: looked for it in " + ", ".join(f"'{folder}'" for folder in tried)
    )
