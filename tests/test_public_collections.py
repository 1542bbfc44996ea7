"""The RSNA and COVIDx builders, their records and ``hf-covid prepare --list``.

Every test builds a tiny tree in the official layout in ``tmp_path``: RSNA around the real CR
DICOM of ``tests/fixtures/dicom`` plus DICOMs written here with pydicom, COVIDx with label files
in the formats COVID-Net has published.
"""

from __future__ import annotations

import csv
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from chest_trees import random_image, write_dicom
from PIL import Image

import hf_covid_cli as cli
from hf_covid.data.public import build_covidx_dataset, build_rsna_dataset
from hf_covid.data.public.collections import PUBLIC_COLLECTIONS, find_collections
from hf_covid.data.public.common import CATEGORY_DESCRIPTIONS
from hf_covid.data.public.covidx import read_covidx_label_file
from hf_covid.data.public.prepare import describe_collections
from hf_covid.data.public.records import ScanOptions
from hf_covid.data.public.rsna import RSNA_EXTRA_FEATURES, rsna_age_years
from hf_covid.data.summary import read_build_summary
from hf_covid.evaluation.anchors import PUBLISHED_ANCHORS, published_anchor

REAL_CR = Path(__file__).parent / "fixtures" / "dicom" / "siim_cr_chest_pa.dcm"
REAL_ID = "16d7f894-55d7-4d95-8957-d18987f0e981"  # the fixture's PatientID, as in RSNA's files
REAL_BOXES = [[264.0, 152.0, 213.0, 379.0], [562.0, 152.0, 256.0, 453.0]]
LABEL_HEADER = ["patientId", "x", "y", "width", "height", "Target"]

# patientId, class, PatientID in the header (None: element absent), age, sex, view
GENERATED = [
    ("n1", "Normal", "n1", "045Y", "F", "AP"),
    ("n2", "Normal", "n2", "93", "M", "PA"),
    ("n3", "No Lung Opacity / Not Normal", None, "150", "F", "AP"),
    ("n4", "No Lung Opacity / Not Normal", "n4", "18M", "M", "AP"),
    ("n5", "Lung Opacity", "n5", "51", "M", "AP"),
]
SECRET_NAME, SECRET_DATE = "Doe^Jane", "20200314"


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_rsna_tree(root: Path) -> Path:
    """Kaggle's layout: the real CR (two boxes), five generated DICOMs, one listed but absent."""
    images = root / "stage_2_train_images"
    images.mkdir(parents=True)
    shutil.copyfile(REAL_CR, images / f"{REAL_ID}.dcm")
    rng = np.random.default_rng(0)
    for patient, _, header_id, age, sex, view in GENERATED:
        path = write_dicom(images / f"{patient}.dcm", random_image(rng).astype(np.uint16) * 200)
        dataset = pydicom.dcmread(path)
        if header_id is None:
            del dataset.PatientID
        else:
            dataset.PatientID = header_id
        with warnings.catch_warnings():  # RSNA writes ages as bare numbers, as "93", not "093Y"
            warnings.simplefilter("ignore", UserWarning)
            dataset.PatientAge = age
        dataset.PatientSex, dataset.ViewPosition = sex, view
        dataset.PatientName, dataset.StudyDate = SECRET_NAME, SECRET_DATE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dataset.save_as(path)
    labels = [[REAL_ID, *map(str, box), "1"] for box in REAL_BOXES]
    classes = [[REAL_ID, "Lung Opacity"]] * 2
    for patient, name, *_ in GENERATED + [("absent1", "Normal", None, "", "", "")]:
        box = ["700", "300", "100", "200", "1"] if name == "Lung Opacity" else ["", "", "", "", "0"]
        labels.append([patient, *box])
        classes.append([patient, name])
    _write_csv(root / "stage_2_train_labels.csv", LABEL_HEADER, labels)
    _write_csv(root / "stage_2_detailed_class_info.csv", ["patientId", "class"], classes)
    return root


@pytest.fixture
def collections_root(tmp_path: Path) -> Path:
    root = tmp_path / "collections"
    write_rsna_tree(root / "rsna")
    write_covidx_tree(root / "covidx")
    return root


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _rows(dataset) -> dict[str, dict]:
    return {row["image_id"]: row for split in dataset.values() for row in split}


def test_rsna_reads_classes_boxes_and_the_header_of_the_real_dicom(collections_root, cache_dir):
    dataset = build_rsna_dataset(collections_root, cache_dir=cache_dir, seed=1)
    names = dataset["train"].features["label"].names
    assert names == ["normal", "not_normal", "lung_opacity"]
    real = _rows(dataset)[f"stage_2_train_images/{REAL_ID}.dcm"]
    assert names[real["label"]] == "lung_opacity" and real["finding"] == "Lung Opacity"
    assert real["boxes"] == REAL_BOXES
    assert (real["patient_id"], real["view"], real["age"], real["sex"]) == (REAL_ID, "PA", 62, "M")
    assert real["age_group"] == "adult" and real["modality"] == "X-ray"
    assert real["image"].size == (1024, 1024)  # decoded from the JPEG Baseline DICOM
    counts = Counter(names[row["label"]] for row in _rows(dataset).values())
    assert counts == {"normal": 2, "not_normal": 2, "lung_opacity": 2}
    assert _rows(dataset)["stage_2_train_images/n1.dcm"]["boxes"] == []
    assert set(RSNA_EXTRA_FEATURES) | {"age", "sex", "site"} <= set(dataset["test"].column_names)


def test_rsna_keeps_no_name_and_no_date_anywhere(collections_root, cache_dir):
    dataset = build_rsna_dataset(collections_root, cache_dir=cache_dir)
    for row in _rows(dataset).values():
        values = [str(value) for name, value in row.items() if name != "image"]
        assert not any(SECRET_NAME in v or SECRET_DATE in v for v in values)
        assert Path(row["image"].filename).suffix == ".png"  # a PNG copy, no header
    cached = [p.read_bytes() for p in cache_dir.rglob("*") if p.is_file()]
    assert cached and not any(
        SECRET_NAME.encode() in b or SECRET_DATE.encode() in b for b in cached
    )


def test_rsna_dicom_without_patient_id_is_its_own_patient_and_counted(collections_root, cache_dir):
    dataset = build_rsna_dataset(collections_root, cache_dir=cache_dir)
    assert _rows(dataset)["stage_2_train_images/n3.dcm"]["patient_id"] is None
    notes = read_build_summary(dataset).notes
    assert "RSNA: 1 DICOM file(s) have no PatientID; each is its own patient." in notes


def test_rsna_listed_file_that_is_absent_is_counted_and_named(collections_root, cache_dir):
    summary = read_build_summary(build_rsna_dataset(collections_root, cache_dir=cache_dir))
    key = "listed in stage_2_train_labels.csv but absent from stage_2_train_images/"
    assert summary.ignored_files[key] == 1
    assert any(note.endswith("were left out: absent1.dcm.") for note in summary.notes)
    assert sum(summary.images_per_class.values()) == 6


def test_rsna_ages_over_89_are_kept_as_90_and_impossible_ones_as_unknown(
    collections_root, cache_dir
):
    rows = _rows(build_rsna_dataset(collections_root, cache_dir=cache_dir))
    assert rows["stage_2_train_images/n2.dcm"]["age"] == 90
    assert rows["stage_2_train_images/n3.dcm"]["age"] is None
    assert rows["stage_2_train_images/n4.dcm"]["age_group"] == "pediatric"
    assert rsna_age_years("062Y") == 62 and rsna_age_years("18M") == 1.5
    assert rsna_age_years("") is None and rsna_age_years("155") is None


@pytest.mark.parametrize(
    ("file_name", "renamed"),
    [("stage_2_train_labels.csv", "Target"), ("stage_2_detailed_class_info.csv", "class")],
)
def test_rsna_csv_with_a_renamed_column_names_the_file_and_the_column(
    collections_root, cache_dir, file_name, renamed
):
    path = collections_root / "rsna" / file_name
    path.write_text(path.read_text().replace(renamed, "label", 1))
    with pytest.raises(ValueError, match=rf"'.*{file_name}' lacks the column\(s\) \['{renamed}'\]"):
        build_rsna_dataset(collections_root, cache_dir=cache_dir)


def test_rsna_unknown_class_names_the_file_and_line(collections_root, cache_dir):
    path = collections_root / "rsna" / "stage_2_detailed_class_info.csv"
    path.write_text(path.read_text().replace("n1,Normal", "n1,Pneumonia"))
    with pytest.raises(ValueError, match=r"class_info\.csv' line 4: unknown class 'Pneumonia'"):
        build_rsna_dataset(collections_root, cache_dir=cache_dir)


def test_rsna_record_scans_with_scan_options_for_a_composition(collections_root, cache_dir):
    record = PUBLIC_COLLECTIONS["rsna"]
    scan = record.scan(collections_root, ScanOptions(cache_dir=cache_dir))
    assert Counter(image.category for image in scan.images)["lung_opacity"] == 2
    assert set(record.categories) <= CATEGORY_DESCRIPTIONS.keys()
    assert {image.source for image in scan.images} == {"rsna"}


# ---- COVIDx ----------------------------------------------------------------------------------

# split file, patient, file name, class, source
COVIDX_LINES = [
    ("train", "p1", "covid-a.png", "COVID-19", "cohen"),
    ("train", "p1", "covid-b.png", "COVID-19", "cohen"),
    ("train", "p2", "covid c.png", "COVID-19", "sirm"),  # a space in the file name
    *[("train", f"r{i}", f"r{i}.png", "normal", "rsna") for i in range(6)],
    *[("train", f"q{i}", f"q{i}.png", "pneumonia", "rsna") for i in range(6)],
    ("train", "p3", "covid-d.png", "COVID-19", "actmed"),
    ("train", "p4", "covid-e.png", "COVID-19", "fig1"),
    ("test", "t1", "t1.png", "COVID-19", "ricord"),
    ("test", "t2", "t2.png", "normal", "rsna"),
    ("test", "t3", "t3.png", "pneumonia", "rsna"),
    ("test", "p4", "covid-f.png", "COVID-19", "fig1"),  # a patient in both lists
    ("test", "t4", "gone.png", "normal", "rsna"),  # listed, never downloaded
]


def write_covidx_tree(root: Path, lines=COVIDX_LINES, *, label_names=None, image_base="") -> Path:
    """Kaggle's COVIDx layout: ``train.txt``, ``test.txt``, ``train/``, ``test/``."""
    rng = np.random.default_rng(1)
    texts: dict[str, list[str]] = {}
    for split, patient, name, label, source in lines:
        texts.setdefault(split, []).append(" ".join(filter(None, (patient, name, label, source))))
        if name != "gone.png":
            folder = root / image_base / split
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(random_image(rng)).save(folder / name, format="PNG")
    for split, content in texts.items():
        path = root / (label_names or {}).get(split, f"{split}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(content) + "\n")
    Image.fromarray(random_image(rng)).save(root / image_base / "train" / "unlisted.png")
    return root


def _split_of(dataset) -> dict[str, str]:
    return {row["image_id"]: name for name, split in dataset.items() for row in split}


def test_covidx_test_split_is_exactly_the_test_label_file(collections_root, cache_dir):
    dataset = build_covidx_dataset(collections_root, cache_dir=cache_dir)
    split_of = _split_of(dataset)
    listed_test = {f"test/{n}" for s, _, n, *_ in COVIDX_LINES if s == "test" and n != "gone.png"}
    assert {i for i, s in split_of.items() if s == "test"} == listed_test
    listed_train = {f"train/{n}" for s, _, n, *_ in COVIDX_LINES if s == "train"}
    assert {i for i, s in split_of.items() if s != "test"} == listed_train
    assert dataset["train"].features["label"].names == ["normal", "pneumonia", "covid"]
    assert read_build_summary(dataset).grouping == "the collection's official split lists"


def test_covidx_validation_is_carved_from_train_by_patient(collections_root, cache_dir):
    dataset = build_covidx_dataset(collections_root, validation_fraction=0.3, cache_dir=cache_dir)
    patients = {name: set(split["patient_id"]) for name, split in dataset.items()}
    assert patients["validation"] and not patients["validation"] & patients["train"]
    assert len(dataset["train"]) + len(dataset["validation"]) == 17
    whole = build_covidx_dataset(collections_root, validation_fraction=0.0, cache_dir=cache_dir)
    assert (len(whole["train"]), len(whole["validation"]), len(whole["test"])) == (17, 0, 4)


def test_covidx_listed_file_that_is_absent_is_counted_and_named(collections_root, cache_dir):
    summary = read_build_summary(build_covidx_dataset(collections_root, cache_dir=cache_dir))
    assert summary.ignored_files["listed in test.txt but absent from test/"] == 1
    assert summary.ignored_files["in train/ but not in train.txt"] == 1
    assert (
        "COVIDx: 1 file(s) listed in test.txt are absent from test/ (rsna 1) and were left out: "
        "gone.png." in summary.notes
    )
    assert any("1 patient id(s) appear in both the train and the test" in n for n in summary.notes)


def test_covidx_keeps_its_patient_ids_data_sources_and_spaced_names(collections_root, cache_dir):
    rows = _rows(build_covidx_dataset(collections_root, cache_dir=cache_dir))
    assert rows["train/covid c.png"]["patient_id"] == "p2"
    assert rows["train/covid c.png"]["data_source"] == "sirm"
    assert (
        rows["test/t1.png"]["finding"] == "COVID-19" and rows["test/t1.png"]["source"] == "covidx"
    )


def test_covidx_uses_a_validation_list_where_the_version_has_one(tmp_path, cache_dir):
    lines = [*COVIDX_LINES[:5], ("val", "v1", "v1.png", "positive", "bimcv")]
    lines = [
        (s, p, n, "positive" if c == "COVID-19" else "negative", src) for s, p, n, c, src in lines
    ]
    root = write_covidx_tree(
        tmp_path / "covidx", lines + [("test", "t9", "t9.png", "negative", "")]
    )
    dataset = build_covidx_dataset(root, cache_dir=cache_dir)
    assert dataset["validation"]["image_id"] == ["val/v1.png"]
    assert dataset["train"].features["label"].names == ["non_covid", "covid"]


def test_covidx_first_version_three_fields_in_labels_and_data_folders(tmp_path, cache_dir):
    lines = [
        ("train", "3", "sars.jpeg", "viral", ""),
        ("train", "29", "strep.jpg", "bacteria", ""),
        ("train", "2", "covid.jpeg", "COVID-19", ""),
        ("test", "10000927", "NORMAL2-IM-0927-0001.jpeg", "normal", ""),
    ]
    names = {"train": "labels/train_split_v1.txt", "test": "labels/test_split_v1.txt"}
    root = write_covidx_tree(tmp_path / "covidx", lines, label_names=names, image_base="data")
    dataset = build_covidx_dataset(root, validation_fraction=0.0, cache_dir=cache_dir)
    assert dataset["train"].features["label"].names == ["normal", "viral", "bacterial", "covid"]
    assert dataset["test"]["image_id"] == ["data/test/NORMAL2-IM-0927-0001.jpeg"]
    assert set(dataset["train"]["data_source"]) == {""}


def test_covidx_two_versions_in_one_folder_need_label_files(tmp_path, cache_dir):
    root = write_covidx_tree(
        tmp_path / "covidx",
        label_names={"train": "train_COVIDx9A.txt", "test": "test_COVIDx9A.txt"},
    )
    (root / "train_COVIDx9B.txt").write_text("p1 covid-a.png positive cohen\n")
    with pytest.raises(ValueError, match="train: train_COVIDx9A.txt, train_COVIDx9B.txt"):
        build_covidx_dataset(tmp_path, cache_dir=cache_dir)
    dataset = build_covidx_dataset(
        root,
        label_files={"train": root / "train_COVIDx9B.txt", "test": root / "test_COVIDx9A.txt"},
        cache_dir=cache_dir,
    )
    assert sum(len(split) for split in dataset.values()) == 5


def test_covidx_malformed_line_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("p1 a.png COVID-19 cohen\n\np2 b.png\n")
    with pytest.raises(ValueError, match=r"train\.txt' line 3: expected '<patient id> <file name>"):
        read_covidx_label_file(path)


def test_covidx_published_numbers_are_the_anchor_of_an_evaluation_on_covidx():
    anchor = PUBLISHED_ANCHORS["covidx_3_class"]
    assert anchor["data"] in PUBLIC_COLLECTIONS
    assert anchor["value"] == {"accuracy": 0.933, "covid_sensitivity": 0.91}
    assert published_anchor("radiography", "classification", "covidx") is anchor
    assert published_anchor("radiography", "classification", "ieee8023")["value"] == 0.979


# ---- the records -----------------------------------------------------------------------------


def test_find_collections_finds_rsna_and_covidx_below_a_root(collections_root):
    assert find_collections(collections_root) == {
        "rsna": collections_root / "rsna",
        "covidx": collections_root / "covidx",
    }


def test_prepare_list_prints_every_record(capsys):
    assert cli.main(["prepare", "--list"]) == 0
    text = capsys.readouterr().out
    for name, record in PUBLIC_COLLECTIONS.items():
        assert f"{name}: {record.title}\n  licence: {record.license}\n" in text
        assert ", ".join(f"{folder}/" for folder in record.folder_names) in text
        assert record.summary in text
    assert "hf-covid download kermany --to ROOT (into ROOT/kermany/; checksums: SHA-256" in text
    assert "by hand (login or licence click): 'hf-covid download rsna' says how" in text


def test_a_record_without_download_is_listed_as_by_hand():
    record = PUBLIC_COLLECTIONS["kermany"]
    without = type(record)(**{**vars(record), "download": None})
    assert f"get it: by hand from {record.url}\n" in describe_collections([without])


def test_prepare_without_root_or_list_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["prepare", "--output", "out"])
    assert exit_info.value.code == 2
    assert "or give --list" in capsys.readouterr().err
