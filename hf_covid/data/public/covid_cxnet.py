"""The COVID-19 X-rays of COVID-CXNet as a `DatasetDict`.

Source: Haghanifar, Majdabadi, Choi, Deivalakshmi and Ko, "COVID-CXNet: Detecting COVID-19 in
Frontal Chest X-ray Images using Deep Learning", Multimedia Tools and Applications 2022;
https://github.com/armiro/COVID-CXNet (data on figshare, doi:10.6084/m9.figshare.12580328).
Licence: CC BY 4.0 (attribute Haghanifar et al.). Layout (as cloned)::

    <root>/metadata.csv                          filename, patient_id, sex, age, view, label,
                                                 pcr_test, location, url, ...
    <root>/chest_xray_images/covid19/<filename>  the COVID-19 X-rays

Classes (`COVID_CXNET_CATEGORIES`): covid (the ``label`` ``COVID-19``); rows with another label
are left out and counted. ``site`` is where each image was published (``twitter.com/ChestImaging``
for the Spanish hospital films shared by @ChestImaging), so a composition can balance and hold
out the hospital films.

What is wrong with it: most of COVID-CXNet copies other public collections (ieee8023 images,
Hannover Medical School images, Figure1 cases): only its hospital films shared by
@ChestImaging (PCR-positive adults in Spain) are new, and those are screen captures of films
(white padding, slight rotations, a burned-in side marker on many). A composition with ieee8023
finds the copies by its near-duplicate search and keeps them in one split. Views are blank for
most images (frontal films). The other folders of the repository (normal, pneumonia) are copies
of other collections and are not read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import DatasetDict

from ..io import DatasetCache, list_folder
from ..splits import DEFAULT_SPLIT_RATIOS
from .common import (
    XRAY,
    CollectionScan,
    PublicImage,
    age_group_of,
    age_problem_notes,
    build_collection_dataset,
    inspect_files,
    locate_collection,
    make_public_image,
    parse_age,
    site_of_url,
)
from .records import DownloadFile, DownloadSource, PublicCollection, ScanOptions
from .tables import read_csv_rows

__all__ = ["COVID_CXNET_CATEGORIES", "build_covid_cxnet_dataset", "scan_covid_cxnet"]

SOURCE = "covid_cxnet"
TITLE = "COVID-CXNet (Haghanifar et al.)"
URL = "https://github.com/armiro/COVID-CXNet"
LICENSE = "CC BY 4.0"
FOLDER_NAMES = ("covid_cxnet", "COVID-CXNet")
METADATA_FILE = "metadata.csv"
IMAGE_FOLDER = Path("chest_xray_images") / "covid19"
REQUIRED_COLUMNS = ("filename", "patient_id", "sex", "age", "view", "label", "url")
COVID_LABEL = "COVID-19"
COVID_CXNET_CATEGORIES: tuple[str, ...] = ("covid",)
_SEXES = {"male": "M", "female": "F", "m": "M", "f": "F"}


def is_collection(folder: Path) -> bool:
    """Whether ``folder`` holds the collection (``metadata.csv`` and the covid19 folder)."""
    return (folder / METADATA_FILE).is_file() and (folder / IMAGE_FOLDER).is_dir()


def _site(url: str) -> str:
    """``twitter.com/<account>`` for a tweet (each account shares one hospital's films), else
    the web site."""
    site = site_of_url(url)
    if site in ("twitter.com", "x.com", "mobile.twitter.com"):
        account = url.split("://", 1)[-1].split("/")[1:2]
        return f"twitter.com/{account[0]}" if account else "twitter.com"
    return site


def scan_covid_cxnet(
    root: str | Path,
    *,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> CollectionScan:
    """Read, validate and label COVID-CXNet (see `build_covid_cxnet_dataset`).

    Raises:
        FileNotFoundError: no ``metadata.csv`` with a ``chest_xray_images/covid19/`` folder.
        ValueError: ``metadata.csv`` lacks a column (the message names file and column).
    """
    root = locate_collection(
        root, FOLDER_NAMES, is_collection, f"{TITLE} ({METADATA_FILE} and {IMAGE_FOLDER}/)"
    )
    rows = read_csv_rows(root / METADATA_FILE, REQUIRED_COLUMNS)
    present = {path.name: path for path in list_folder(root / IMAGE_FOLDER)[0]}
    cache = DatasetCache(root, cache_dir)
    excluded: Counter[str] = Counter()
    selected: list[dict[str, str]] = []
    listed = set()
    for row in rows:
        listed.add(row["filename"])
        if row["label"] != COVID_LABEL:
            excluded[f"label '{row['label'] or 'blank'}' (only {COVID_LABEL} is read)"] += 1
        elif row["filename"] not in present:
            excluded[f"listed in {METADATA_FILE} but absent from {IMAGE_FOLDER}/"] += 1
        else:
            selected.append(row)
    unlisted = len(set(present) - listed)
    if unlisted:
        excluded[f"in {IMAGE_FOLDER}/ but not in {METADATA_FILE}"] += unlisted
    infos, skipped = inspect_files(
        cache,
        root,
        [present[row["filename"]] for row in selected],
        skip_bad_images=skip_bad_images,
        num_threads=num_threads,
    )
    images: list[PublicImage] = []
    age_problems: Counter[str] = Counter()
    for row, info in zip(selected, infos, strict=True):
        if info.error is not None:
            continue
        age, problem = parse_age(row["age"])
        if problem:
            age_problems[problem] += 1
        images.append(
            make_public_image(
                info,
                None,
                cache,
                source=SOURCE,
                category="covid",
                finding=row["label"],
                modality=XRAY,
                patient_id=row["patient_id"] or None,
                view=row["view"],
                license=LICENSE,
                age_group=age_group_of(age),
                age=age,
                sex=_SEXES.get(row["sex"].lower(), ""),
                site=_site(row["url"]),
            )
        )
    sites = Counter(image.site or "unknown" for image in images)
    notes = [
        f"{TITLE}: images by site: "
        + ", ".join(f"{site} {count}" for site, count in sites.most_common())
        + "; only the @ChestImaging hospital films are new, the rest copies other collections.",
        *age_problem_notes(SOURCE, age_problems),
    ]
    return CollectionScan(
        source=SOURCE,
        title=TITLE,
        root=root,
        categories=COVID_CXNET_CATEGORIES,
        images=images,
        excluded=dict(excluded),
        bad_files_skipped=skipped,
        grouping="patient_id (follow-ups together)",
        notes=notes,
    )


def build_covid_cxnet_dataset(
    root: str | Path,
    *,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    seed: int = 42,
    deduplicate: bool = True,
    skip_bad_images: bool = False,
    cache_dir: str | Path | None = None,
    num_threads: int | None = None,
) -> DatasetDict:
    """Build patient-grouped train/validation/test splits of the COVID-CXNet COVID-19 X-rays.

    One class only: use it in a composition (`hf_covid.data.public.compose`) beside controls
    from other collections, where its ``site`` column keeps the hospital films visible.

    Args:
        root: The cloned ``COVID-CXNet`` folder (``metadata.csv`` and
            ``chest_xray_images/covid19/``), or a folder holding it as ``covid_cxnet/``.
        split_ratios: Fractions for train, validation and test.
        seed: Seed of the split.
        deduplicate: Keep near-duplicate images (perceptual hash) in one split.
        skip_bad_images: Skip unreadable files instead of raising `BadImagesError`.
        cache_dir: Where the scan cache goes; never inside ``root``.
        num_threads: Threads for the first-time validation of the files.

    Returns:
        A `DatasetDict` with the shared public columns, labels `COVID_CXNET_CATEGORIES`.
    """
    scan = scan_covid_cxnet(
        root, skip_bad_images=skip_bad_images, cache_dir=cache_dir, num_threads=num_threads
    )
    return build_collection_dataset(
        scan, split_ratios=split_ratios, seed=seed, deduplicate=deduplicate
    )


def _scan_for_composition(root: Path, options: ScanOptions) -> CollectionScan:
    return scan_covid_cxnet(root, **options.file_options)


_COVID_CXNET_COMMIT = "3ade488b3828705706fc5f58c0667421d8b04a01"
DOWNLOAD = DownloadSource(
    folder="covid_cxnet",
    files=(
        DownloadFile(
            url=f"https://github.com/armiro/COVID-CXNet/archive/{_COVID_CXNET_COMMIT}.zip",
            name=f"COVID-CXNet-{_COVID_CXNET_COMMIT[:12]}.zip",
            strip_components=1,
            members=("chest_xray_images/covid19/", "metadata.csv", "LICENSE"),
        ),
    ),
    checksums="none published: GitHub makes the archive of the pinned commit on request "
    "(repository MIT; the images CC BY 4.0 per the authors' figshare deposit "
    "10.6084/m9.figshare.12580328)",
)


COLLECTION = PublicCollection(
    name=SOURCE,
    title=TITLE,
    url=URL,
    license=LICENSE,
    categories=COVID_CXNET_CATEGORIES,
    modalities=(XRAY,),
    folder_names=FOLDER_NAMES,
    is_collection=is_collection,
    scan=_scan_for_composition,
    build=build_covid_cxnet_dataset,
    summary="COVID-19 X-rays; its @ChestImaging subset is PCR-positive hospital films of adults "
    "in Spain, the rest copies other collections",
    download=DOWNLOAD,
)
