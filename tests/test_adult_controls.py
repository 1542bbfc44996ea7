"""NIH ChestX-ray14 and COVID-CXNet as collections, and the adult-controls composition."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from chest_trees import random_image
from test_public_data import _save, write_collections

from hf_covid.data.public import (
    build_covid_cxnet_dataset,
    build_nih_chestxray14_dataset,
    find_collections,
)
from hf_covid.data.public.class_maps import resolve_radiography_class_map
from hf_covid.data.public.common import parse_age
from hf_covid.data.public.compose import compose_radiography
from hf_covid.data.summary import read_build_summary

NIH_COLUMNS = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]
# (patient, follow-up, findings, age, sex, view)
NIH_ROWS = [
    *[(p, 0, "No Finding", "45", "M" if p % 2 else "F", "PA") for p in range(1, 9)],
    *[(p, 1, "No Finding", "46", "M", "AP") for p in range(1, 5)],
    *[(p, 0, "Pneumonia|Infiltration", "60", "F", "AP") for p in range(20, 28)],
    *[(p, 0, "Pneumonia", "61", "M", "PA") for p in range(28, 32)],
    (40, 0, "No Finding", "8", "F", "PA"),  # a child
    (41, 0, "Effusion", "70", "M", "PA"),  # another finding: "other"
    (42, 0, "No Finding", "abc", "M", "PA"),  # an age that is not a number
    (43, 0, "No Finding", "414", "F", "AP"),  # an impossible age
]


def nih_name(patient: int, follow_up: int) -> str:
    return f"{patient:08d}_{follow_up:03d}.png"


def write_nih_tree(
    root: Path,
    *,
    archives: bool = False,
    split_lists: bool = False,
    expert_labels: bool = False,
    absent: int = 0,
    unlisted: int = 0,
    seed: int = 1,
) -> Path:
    """NIH's layout: the Data_Entry table beside ``images/`` (or ``images_00N/images/``)."""
    rng = np.random.default_rng(seed)
    rows = [*NIH_ROWS, *[(90 + k, 0, "No Finding", "50", "M", "PA") for k in range(absent)]]
    with (root / "Data_Entry_2017_v2020.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(NIH_COLUMNS)
        for patient, follow_up, findings, age, sex, view in rows:
            writer.writerow(
                [nih_name(patient, follow_up), findings, follow_up, patient, age, sex, view]
                + [2500, 2048, 0.168, 0.168]
            )
    present = [(row[0], row[1]) for row in NIH_ROWS]
    present += [(200 + k, 0) for k in range(unlisted)]
    for index, (patient, follow_up) in enumerate(present):
        folder = root / (f"images_{index % 2 + 1:03d}/images" if archives else "images")
        _save(folder / nih_name(patient, follow_up), random_image(rng))
    if split_lists:
        names = [nih_name(p, f) for p, f, *_ in NIH_ROWS]
        test = [name for name in names if int(name[:8]) in (3, 4, 24, 25, 30)]
        (root / "test_list.txt").write_text("\n".join(test) + "\n")
        (root / "train_val_list.txt").write_text(
            "\n".join(name for name in names if name not in test) + "\n"
        )
    if expert_labels:
        with (root / "google2019_nih-chest-xray-labels.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["Image Index", "Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass"]
            )
            writer.writerow([nih_name(20, 0), "NO", "NO", "YES", "NO"])
            writer.writerow([nih_name(1, 0), "NO", "NO", "NO", "NO"])
    return root


CXNET_COLUMNS = ["filename", "patient_id", "sex", "age", "view", "label", "pcr_test", "url"]


def write_cxnet_tree(root: Path, *, patients: int = 6, seed: int = 2) -> Path:
    """COVID-CXNet's layout: ``metadata.csv`` and ``chest_xray_images/covid19/``."""
    rng = np.random.default_rng(seed)
    folder = root / "chest_xray_images" / "covid19"
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CXNET_COLUMNS)
        writer.writeheader()
        for patient in range(patients):
            for film in range(2):
                name = f"{patient * 2 + film + 260}.jpg"
                _save(folder / name, random_image(rng), "JPEG")
                writer.writerow(
                    {
                        "filename": name,
                        "patient_id": patient,
                        "sex": "male" if patient % 2 else "female",
                        "age": str(40 + patient),
                        "view": "",
                        "label": "COVID-19",
                        "pcr_test": "positive",
                        "url": "https://twitter.com/ChestImaging/status/1243928581983670272",
                    }
                )
        writer.writerow({"filename": "normal.jpg", "patient_id": 99, "label": "normal"})
    return root


def write_adult_collections(root: Path) -> Path:
    """ieee8023, Kermany, COVID-CT, NIH ChestX-ray14 and COVID-CXNet side by side."""
    write_collections(root)
    write_nih_tree(_folder(root / "nih_chestxray14"))
    write_cxnet_tree(_folder(root / "covid_cxnet"))
    return root


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _rows(dataset_dict) -> list[dict]:
    return [row for split in dataset_dict.values() for row in split.remove_columns("image")]


def test_parse_age_counts_what_is_not_a_plausible_number():
    assert parse_age("45") == (45.0, None)
    assert parse_age(" ") == (None, None)
    assert parse_age("abc") == (None, "age not a number")
    assert parse_age("414") == (None, "age outside 0-120 years")


@pytest.mark.parametrize("archives", [False, True])
def test_nih_reads_its_table_in_either_image_layout(tmp_path, cache_dir, archives):
    root = write_nih_tree(_folder(tmp_path / "nih"), archives=archives)
    built = build_nih_chestxray14_dataset(root, cache_dir=cache_dir)
    rows = _rows(built)
    assert len(rows) == len(NIH_ROWS)
    names = built["train"].features["label"].names
    by_id = {row["image_id"].rsplit("/", 1)[-1]: row for row in rows}
    child = by_id[nih_name(40, 0)]
    assert (child["age"], child["age_group"], names[child["label"]]) == (8.0, "pediatric", "normal")
    pneumonia = by_id[nih_name(20, 0)]
    assert names[pneumonia["label"]] == "pneumonia"
    assert pneumonia["findings"] == ["Pneumonia", "Infiltration"]
    assert (pneumonia["view"], pneumonia["sex"], pneumonia["site"]) == (
        "AP",
        "F",
        "NIH Clinical Center",
    )
    assert names[by_id[nih_name(41, 0)]["label"]] == "other"
    assert by_id[nih_name(1, 1)]["follow_up"] == 1


def test_nih_groups_follow_ups_of_a_patient_in_one_split(tmp_path, cache_dir):
    built = build_nih_chestxray14_dataset(
        write_nih_tree(_folder(tmp_path / "nih")), cache_dir=cache_dir
    )
    split_of: dict[str, set[str]] = {}
    for name, split in built.items():
        for patient in split["patient_id"]:
            split_of.setdefault(patient, set()).add(name)
    assert all(len(splits) == 1 for splits in split_of.values())


def test_nih_counts_bad_ages_absent_and_unlisted_images(tmp_path, cache_dir):
    root = write_nih_tree(_folder(tmp_path / "nih"), absent=3, unlisted=2)
    built = build_nih_chestxray14_dataset(root, cache_dir=cache_dir)
    summary = read_build_summary(built)
    assert summary.ignored_files == {
        "listed in Data_Entry_2017_v2020.csv but absent from the image folders": 3,
        "in the image folders but not in Data_Entry_2017_v2020.csv": 2,
    }
    notes = " ".join(summary.notes)
    assert nih_name(200, 0) in notes and nih_name(90, 0) in notes  # the files are named
    assert "1 image(s) with age not a number" in notes
    assert "1 image(s) with age outside 0-120 years" in notes
    by_id = {row["image_id"].rsplit("/", 1)[-1]: row for row in _rows(built)}
    assert by_id[nih_name(42, 0)]["age"] is None and by_id[nih_name(42, 0)]["age_group"] == ""
    assert by_id[nih_name(43, 0)]["age"] is None


def test_nih_official_lists_fix_the_test_split(tmp_path, cache_dir):
    root = write_nih_tree(_folder(tmp_path / "nih"), split_lists=True)
    built = build_nih_chestxray14_dataset(root, cache_dir=cache_dir)
    test_patients = set(built["test"]["patient_id"])
    assert test_patients == {"3", "4", "24", "25", "30"}
    others = [*built["train"]["patient_id"], *built["validation"]["patient_id"]]
    assert not test_patients & set(others)
    assert len(built["validation"]) > 0


def test_nih_keeps_google_expert_labels_where_the_file_is_there(tmp_path, cache_dir):
    root = write_nih_tree(_folder(tmp_path / "nih"), expert_labels=True)
    by_id = {
        row["image_id"].rsplit("/", 1)[-1]: row
        for row in _rows(build_nih_chestxray14_dataset(root, cache_dir=cache_dir))
    }
    assert by_id[nih_name(20, 0)]["expert_airspace_opacity"] == "YES"
    assert by_id[nih_name(1, 0)]["expert_airspace_opacity"] == "NO"
    assert by_id[nih_name(21, 0)]["expert_airspace_opacity"] is None


def test_nih_without_its_table_or_with_a_renamed_column_says_what_is_wrong(tmp_path, cache_dir):
    empty = _folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="Data_Entry_2017_v2020.csv"):
        build_nih_chestxray14_dataset(empty, cache_dir=cache_dir)
    root = write_nih_tree(_folder(tmp_path / "nih"))
    table = root / "Data_Entry_2017_v2020.csv"
    table.write_text(table.read_text().replace("Patient Age", "Age", 1))
    with pytest.raises(ValueError, match=r"Data_Entry_2017_v2020.csv.*\['Patient Age'\]"):
        build_nih_chestxray14_dataset(root, cache_dir=cache_dir)


def test_covid_cxnet_reads_covid_films_with_their_site_and_counts_other_labels(tmp_path, cache_dir):
    root = write_cxnet_tree(_folder(tmp_path / "cxnet"))
    built = build_covid_cxnet_dataset(root, cache_dir=cache_dir)
    rows = _rows(built)
    assert len(rows) == 12
    assert {row["site"] for row in rows} == {"twitter.com/ChestImaging"}
    assert {row["age_group"] for row in rows} == {"adult"}
    assert read_build_summary(built).ignored_files == {"label 'normal' (only COVID-19 is read)": 1}
    metadata = root / "metadata.csv"
    metadata.write_text(metadata.read_text().replace("patient_id", "patient", 1))
    with pytest.raises(ValueError, match=r"metadata.csv.*\['patient_id'\]"):
        build_covid_cxnet_dataset(root, cache_dir=cache_dir)


def test_find_collections_finds_the_new_collections(tmp_path):
    root = write_adult_collections(tmp_path / "collections")
    assert set(find_collections(root)) == {
        "ieee8023",
        "kermany",
        "covid_ct",
        "nih_chestxray14",
        "covid_cxnet",
    }


def test_adult_controls_keeps_adults_and_tells_where_each_class_comes_from(tmp_path, cache_dir):
    root = write_adult_collections(tmp_path / "collections")
    composed = compose_radiography(root, composition="adult_controls", cache_dir=cache_dir)
    names = composed["train"].features["label"].names
    assert names == ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    rows = _rows(composed)
    assert {row["age_group"] for row in rows} == {"adult"}
    sources = {(names[row["label"]], row["source"]) for row in rows}
    assert ("COVID", "covid_cxnet") in sources and ("COVID", "ieee8023") in sources
    assert {source for name, source in sources if name == "Lung_Opacity"} == {"nih_chestxray14"}
    assert not any(source == "kermany" for _, source in sources)
    summary = read_build_summary(composed)
    # The child, the unknown and impossible ages of NIH and ieee8023's child are counted.
    assert summary.ignored_files["nih_chestxray14: normal, age group pediatric (age filter)"] == 1
    assert summary.ignored_files["nih_chestxray14: normal, age group unknown (age filter)"] == 2
    assert summary.ignored_files["ieee8023: normal, age group pediatric (age filter)"] == 1
    assert any("nearest public source" in note for note in summary.notes)
    strata = {(r["class"], r["source"], r["view"]): r["images"] for r in summary.strata}
    assert strata[("Normal", "nih_chestxray14", "AP")] == 4
    assert strata[("COVID", "covid_cxnet", "unknown")] == 12
    assert sum(strata.values()) == len(rows)


def test_kermany_viral_pneumonia_only_when_asked_and_with_children_allowed(tmp_path, cache_dir):
    root = write_adult_collections(tmp_path / "collections")
    viral = ["ieee8023:viral", "kermany:viral"]
    adults_only = compose_radiography(
        root,
        composition="adult_controls",
        class_map={"Viral Pneumonia": viral},
        cache_dir=cache_dir,
    )
    assert "kermany" not in {row["source"] for row in _rows(adults_only)}
    with_children = compose_radiography(
        root,
        composition="adult_controls",
        class_map={"Viral Pneumonia": viral},
        age_groups=["adult", "pediatric"],
        cache_dir=cache_dir,
    )
    assert "kermany" in {row["source"] for row in _rows(with_children)}
    with pytest.raises(ValueError, match="age_groups"):
        compose_radiography(root, composition="adult_controls", age_groups=["elderly"])


def test_unknown_composition_lists_the_known_ones():
    with pytest.raises(ValueError, match="adult_controls"):
        resolve_radiography_class_map(composition="adults")
