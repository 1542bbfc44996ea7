"""Builders, compositions, prepared layouts and the licence gate of the public collections.

Every test builds tiny trees in the upstream layouts in ``tmp_path`` (never the real data).
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from chest_trees import random_image
from PIL import Image

from hf_covid.data import build_radiography_dataset, build_xray_ct_dataset
from hf_covid.data.public import (
    build_covid_ct_dataset,
    build_ieee8023_dataset,
    build_kermany_dataset,
    classify_finding,
    kermany_patient_id,
)
from hf_covid.data.public.class_maps import resolve_radiography_class_map
from hf_covid.data.public.compose import compose_radiography, compose_xray_ct
from hf_covid.data.public.licenses import (
    NIH_CHESTXRAY14_LICENSE,
    RestrictedLicenseError,
    check_publishable,
    license_counts,
    license_restriction,
)
from hf_covid.data.public.prepare import prepare_public_data
from hf_covid.data.summary import read_build_summary

METADATA_COLUMNS = [
    "patientid",
    "offset",
    "sex",
    "age",
    "finding",
    "view",
    "modality",
    "date",
    "location",
    "folder",
    "filename",
    "doi",
    "url",
    "license",
    "clinical_notes",
    "other_notes",
]

# (patient, age, finding, view, modality, folder, file, licence)
IEEE8023_ROWS = [
    *[
        (str(p), "60", "COVID-19", "PA" if k else "AP", "X-ray", "images", f"c{p}-{k}.png", lic)
        for p, lic in zip(range(1, 7), ["CC BY-NC-SA 4.0", "", "CC BY 4.0"] * 2, strict=True)
        for k in range(2)
    ],
    ("7", "70", "COVID-19, ARDS", "AP Supine", "X-ray", "images", "ards.png", "CC BY-NC-ND"),
    ("8", "50", "COVID-19", "L", "X-ray", "images", "lateral.png", "CC BY 4.0"),
    ("9", "", "todo", "PA", "X-ray", "images", "todo.png", ""),
    ("10", "45", "Pneumonia", "PA", "X-ray", "images", "shared.png", "CC BY 4.0"),
    ("11", "45", "Pneumonia", "PA", "X-ray", "images", "shared.png", "CC BY 4.0"),
    ("11", "45", "Streptococcus", "PA", "X-ray", "images", "strep.png", "CC BY 4.0"),
    ("12", "10", "No Finding", "PA", "X-ray", "images", "normal-child.png", "CC BY 4.0"),
    ("13", "40", "No Finding", "PA", "X-ray", "images", "normal-adult.png", "CC BY 4.0"),
    ("14", "33", "SARS", "PA", "X-ray", "images", "sars.png", "CC BY 4.0"),
    ("15", "33", "Influenza", "AP", "X-ray", "images", "flu.jpg", "CC BY 4.0"),
    ("16", "66", "COVID-19", "Axial", "CT", "images", "ct-copy.png", "CC BY 4.0"),
    ("17", "66", "COVID-19", "Axial", "CT", "volumes", "volume.nii.gz", "CC BY 4.0"),
]


def _save(path: Path, pixels: np.ndarray, image_format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=image_format)


def write_collections(root: Path, seed: int = 0) -> Path:
    """ieee8023, Kermany and COVID-CT side by side, with one CT shared by two collections."""
    rng = np.random.default_rng(seed)
    ieee = root / "ieee8023"
    for *_, folder, name, _licence in IEEE8023_ROWS:
        if folder == "images" and not (ieee / "images" / name).exists():
            # flu.jpg holds PNG data, as 17 upstream files do.
            _save(ieee / "images" / name, random_image(rng), "PNG")
    (ieee / "masks").mkdir()
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(ieee / "masks" / "c1-0.png")
    with (ieee / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        for patient, age, finding, view, modality, folder, name, licence in IEEE8023_ROWS:
            writer.writerow(
                {
                    "patientid": patient,
                    "age": age,
                    "finding": finding,
                    "view": view,
                    "modality": modality,
                    "folder": folder,
                    "filename": name,
                    "license": licence,
                }
            )
    kermany = root / "kermany" / "chest_xray"
    names = {
        "train/NORMAL": [f"IM-{p:04d}-0001.jpeg" for p in range(1, 6)]
        + ["NORMAL2-IM-0587-0001.jpeg", "NORMAL2-IM-0587-0002.jpeg"],
        "train/PNEUMONIA": [f"person{p}_virus_{p * 2}.jpeg" for p in range(1, 6)]
        + [f"person{p}_bacteria_{p * 3}.jpeg" for p in range(1, 6)],
        "test/NORMAL": ["IM-0100-0001.jpeg"],
    }
    for folder, files in names.items():
        for name in files:
            _save(kermany / folder / name, random_image(rng), "JPEG")
    covid_ct = root / "covid_ct"
    shared_ct = random_image(rng, 48)
    for folder, count in (("CT_COVID", 5), ("CT_NonCOVID", 5)):
        for index in range(count):
            # a .png holding JPEG data, as 34 upstream COVID-CT files do.
            _save(covid_ct / folder / f"{index}.png", random_image(rng, 48), "JPEG")
    _save(covid_ct / "CT_COVID" / "kjr-copy.png", shared_ct)
    _save(ieee / "images" / "ct-copy.png", shared_ct)
    return root


@pytest.fixture
def collections(tmp_path: Path) -> Path:
    return write_collections(tmp_path / "collections")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _column(dataset_dict, name: str) -> list:
    return [value for split in dataset_dict.values() for value in split[name]]


def test_classify_finding_maps_pathogens_and_leaves_todo_unlabelled() -> None:
    assert classify_finding("COVID-19, ARDS") == "covid"
    assert classify_finding("Pneumonia/Viral/COVID-19") == "covid"
    assert classify_finding("No Finding") == "normal"
    assert classify_finding("SARS") == "viral"
    assert classify_finding("Mycoplasma Bacterial Pneumonia") == "bacterial"
    assert classify_finding("Pneumocystis") == "fungal"
    assert classify_finding("Lipoid") == "other"
    assert classify_finding("todo") is None


def test_ieee8023_keeps_frontal_xrays_and_counts_what_it_leaves_out(collections, cache_dir):
    dataset = build_ieee8023_dataset(collections, cache_dir=cache_dir)
    ids = _column(dataset, "image_id")
    assert "images/lateral.png" not in ids and "images/todo.png" not in ids
    assert "images/ct-copy.png" not in ids
    assert ids.count("images/shared.png") == 1
    ignored = read_build_summary(dataset).ignored_files
    assert ignored["unlabelled (finding 'todo')"] == 1
    assert ignored["lateral view (include_lateral=False)"] == 1
    assert ignored["CT (modality='X-ray')"] == 1
    assert ignored["not an image file (folder 'volumes/')"] == 1
    assert set(_column(dataset, "view")) == {"PA", "AP", "AP Supine"}
    assert set(_column(dataset, "source")) == {"ieee8023"}


def test_ieee8023_lateral_and_ct_on_request(collections, cache_dir):
    dataset = build_ieee8023_dataset(
        collections, include_lateral=True, modality=None, cache_dir=cache_dir
    )
    views = dict(zip(_column(dataset, "image_id"), _column(dataset, "view"), strict=True))
    assert views["images/lateral.png"] == "L"
    assert views["images/ct-copy.png"] == "axial"


def test_ieee8023_merges_patient_ids_that_list_the_same_file(collections, cache_dir):
    dataset = build_ieee8023_dataset(collections, cache_dir=cache_dir)
    patient_of = dict(
        zip(_column(dataset, "image_id"), _column(dataset, "patient_id"), strict=True)
    )
    assert patient_of["images/shared.png"] == patient_of["images/strep.png"] == "10"
    assert any("10, 11 merged into 10" in note for note in read_build_summary(dataset).notes)


def test_ieee8023_columns_mask_age_group_license_and_content_format(collections, cache_dir):
    dataset = build_ieee8023_dataset(collections, cache_dir=cache_dir)
    rows = {row["image_id"]: row for split in dataset.values() for row in split}
    assert rows["images/c1-0.png"]["mask"] is not None
    assert rows["images/c1-1.png"]["mask"] is None
    assert rows["images/normal-child.png"]["age_group"] == "pediatric"
    assert rows["images/normal-adult.png"]["age_group"] == "adult"
    assert rows["images/c1-0.png"]["license"] == "CC BY-NC-SA 4.0"
    assert rows["images/flu.jpg"]["image"].size == (40, 40)  # PNG data behind a .jpg name
    names = dataset["train"].features["label"].names
    assert names[rows["images/ards.png"]["label"]] == "covid"


def test_splits_keep_each_patient_in_one_split(collections, cache_dir):
    dataset = build_ieee8023_dataset(collections, cache_dir=cache_dir, seed=3)
    split_of_patient: dict[str, set[str]] = {}
    for name, split in dataset.items():
        for patient in split["patient_id"]:
            split_of_patient.setdefault(patient, set()).add(name)
    assert all(len(splits) == 1 for splits in split_of_patient.values())


def test_kermany_patient_ids_and_categories_from_file_names(collections, cache_dir):
    assert kermany_patient_id("person12_virus_44.jpeg") == "person12_virus"
    assert kermany_patient_id("NORMAL2-IM-0587-0001.jpeg") == "NORMAL2-IM-0587"
    dataset = build_kermany_dataset(collections, cache_dir=cache_dir)
    names = dataset["train"].features["label"].names
    labels = Counter(names[label] for label in _column(dataset, "label"))
    assert labels == {"normal": 8, "viral": 5, "bacterial": 5}  # test/ pooled with train/
    assert set(_column(dataset, "age_group")) == {"pediatric"}
    assert set(_column(dataset, "license")) == {"CC BY 4.0"}
    patients = _column(dataset, "patient_id")
    assert patients.count("NORMAL2-IM-0587") == 2


def test_covid_ct_without_metadata_says_it_has_no_patient_ids(collections, cache_dir):
    dataset = build_covid_ct_dataset(collections, cache_dir=cache_dir)
    assert set(_column(dataset, "patient_id")) == {None}
    summary = read_build_summary(dataset)
    assert summary.grouping == "image (no patient ids)"
    assert any("no patient id" in note for note in summary.notes)
    assert sum(summary.images_per_class.values()) == 11


def test_covid_ct_uses_official_split_lists(collections, cache_dir):
    lists = collections / "covid_ct" / "Data-split"
    lists.mkdir()
    (lists / "trainCT_COVID.txt").write_text("0.png\n1.png\n2.png\n")
    (lists / "testCT_COVID.txt").write_text("3.png\n")
    (lists / "valCT_NonCOVID.txt").write_text("0.png\n")
    dataset = build_covid_ct_dataset(collections, cache_dir=cache_dir)
    assert {name: len(split) for name, split in dataset.items()} == {
        "train": 3,
        "validation": 1,
        "test": 1,
    }
    assert read_build_summary(dataset).ignored_files == {"not in the official Data-split lists": 6}


def test_missing_collection_error_lists_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="kermany"):
        build_kermany_dataset(tmp_path)


def test_compose_radiography_states_that_lung_opacity_has_no_source(collections, cache_dir, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = compose_radiography(collections, cache_dir=cache_dir)
    assert dataset["train"].features["label"].names == ["COVID", "Normal", "Viral Pneumonia"]
    assert "Lung_Opacity" in caplog.text
    summary = read_build_summary(dataset)
    assert any("Lung_Opacity" in note for note in summary.notes)
    assert summary.sources == {"ieee8023": 17, "kermany": 13}
    assert summary.ignored_files["kermany: X-ray bacterial (no class mapped)"] == 5


def test_compose_radiography_maps_a_class_when_asked(collections, cache_dir):
    dataset = compose_radiography(
        collections,
        class_map={"Lung_Opacity": ["ieee8023:bacterial", "kermany:bacterial"]},
        cache_dir=cache_dir,
    )
    names = dataset["train"].features["label"].names
    assert names == ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    assert Counter(names[label] for label in _column(dataset, "label"))["Lung_Opacity"] == 6


def test_class_map_errors_name_the_problem():
    with pytest.raises(ValueError, match="no source"):
        resolve_radiography_class_map(classes=["COVID", "Lung_Opacity"])
    with pytest.raises(ValueError, match="unknown source"):
        resolve_radiography_class_map(class_map={"Lung_Opacity": ["ieee8023:opacity"]})
    with pytest.raises(ValueError, match="mapped to both"):
        resolve_radiography_class_map(class_map={"Lung_Opacity": ["kermany:normal"]})


def test_compose_xray_ct_pairs_by_label_and_keeps_cross_collection_duplicates_together(
    collections, cache_dir
):
    dataset = compose_xray_ct(collections, keep_unpaired=True, cache_dir=cache_dir)
    rows = [row for split in dataset.values() for row in split]
    assert {row["pairing"] for row in rows} <= {"label", "unpaired"}
    assert all(row["patient_id"] is None for row in rows)
    split_of = {
        row[column]: name
        for name, split in dataset.items()
        for row in split
        for column in ("xray_id", "ct_id")
        if row[column]
    }
    assert split_of["ieee8023/images/ct-copy.png"] == split_of["covid_ct/CT_COVID/kjr-copy.png"]
    summary = read_build_summary(dataset)
    assert summary.pairing == "label"
    assert any("across collections: 1 group(s)" in note for note in summary.notes)
    ct_sources = {row["ct_source"] for row in rows if row["ct"] is not None}
    assert ct_sources == {"covid_ct", "ieee8023"}


def test_license_gate_refuses_public_push_of_restricted_images(collections, cache_dir):
    dataset = compose_radiography(collections, cache_dir=cache_dir)
    counts = license_counts(dataset)
    assert counts["CC BY-NC-SA 4.0"] == 4 and counts["not stated"] == 4
    with pytest.raises(RestrictedLicenseError, match="non-commercial"):
        check_publishable(dataset, private=False)
    assert check_publishable(dataset, private=True)["CC BY-NC-ND"] == 1
    assert check_publishable(dataset, private=False, allow_restricted=True)
    kermany_only = build_kermany_dataset(collections, cache_dir=cache_dir)
    assert check_publishable(kermany_only, private=False) == {}


def test_license_restriction_reads_ieee8023_strings():
    assert license_restriction("CC BY-NC-SA 4.0") == "non-commercial (NC)"
    assert license_restriction("CC BY-NC-ND") == "no derivatives (ND)"
    assert license_restriction("") == "not stated (unknown)"
    assert license_restriction("listed as authorized for everyone") == "not recognised"
    assert license_restriction("CC BY 3.0") is None and license_restriction("Apache 2.0") is None
    assert license_restriction(NIH_CHESTXRAY14_LICENSE) is None  # NIH: no restriction on use


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        path.relative_to(root).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def test_prepared_layouts_read_unchanged_by_the_task_builders(collections, cache_dir, tmp_path):
    before = _snapshot(collections)
    prepared = prepare_public_data(collections, tmp_path / "out", cache_dir=cache_dir)
    assert _snapshot(collections) == before

    radiography = build_radiography_dataset(
        prepared.radiography, classes=["COVID", "Normal", "Viral Pneumonia"], cache_dir=cache_dir
    )
    assert sum(len(split) for split in radiography.values()) == 30
    assert sum(mask is not None for mask in _column(radiography, "mask")) == 1
    assert "https://github.com/ieee8023/covid-chestxray-dataset" in _column(radiography, "source")
    xray_ct = build_xray_ct_dataset(prepared.xray_ct, keep_unpaired=True, cache_dir=cache_dir)
    summary = read_build_summary(xray_ct)
    assert summary.images_per_class == {
        "X-ray Non-COVID": 24,
        "X-ray COVID": 13,
        "CT Non-COVID": 5,
        "CT COVID": 7,
    }
    with prepared.provenance.open() as handle:
        provenance = list(csv.DictReader(handle))
    assert len(provenance) == 30 + 49
    row = next(
        r for r in provenance if r["original_path"] == "images/flu.jpg" and r["layout"] == "xray_ct"
    )
    assert row["output_file"].endswith(".png")  # extension follows the content
    assert row["collection"] == "ieee8023" and row["license"] == "CC BY 4.0"
    assert len(row["sha256"]) == 64


def test_prepare_refuses_to_write_into_a_collection(collections, cache_dir):
    with pytest.raises(ValueError, match="overlaps"):
        prepare_public_data(collections, collections / "ieee8023" / "out", cache_dir=cache_dir)


def test_prepared_png_is_grayscale_of_the_source(collections, cache_dir, tmp_path):
    prepared = prepare_public_data(
        collections, tmp_path / "out", layouts=["radiography"], cache_dir=cache_dir
    )
    written = Image.open(prepared.radiography / "COVID" / "images" / "ieee8023-c1-0.png")
    source = Image.open(io.BytesIO((collections / "ieee8023" / "images" / "c1-0.png").read_bytes()))
    assert written.mode == "L"
    assert np.array_equal(np.asarray(written), np.asarray(source))
