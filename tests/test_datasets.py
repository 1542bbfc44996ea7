"""Dataset builders: columns, masks, bad input, caching, splits, deduplication and pairing."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from chest_trees import (
    random_image,
    snapshot,
    write_dicom,
    write_radiography_tree,
    write_xray_ct_tree,
)
from datasets import ClassLabel
from PIL import Image

from hf_covid.data import (
    SPLIT_NAMES,
    BadImagesError,
    build_radiography_dataset,
    build_xray_ct_dataset,
    plan_splits,
)
from hf_covid.data import io as data_io
from hf_covid.data.builders import is_saved_dataset
from hf_covid.data.summary import read_build_summary


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def radiography(tmp_path):
    return write_radiography_tree(tmp_path / "radiography", without_mask=2, mask_size=32)


def _all_rows(dataset_dict, column):
    return {name: list(dataset_dict[name][column]) for name in SPLIT_NAMES}


# -- Radiography layout ---------------------------------------------------------------------


def test_radiography_builder_columns_labels_ids_and_sources(radiography, cache):
    dataset = build_radiography_dataset(radiography, classes=["COVID", "Normal"], cache_dir=cache)
    assert set(dataset) == set(SPLIT_NAMES)
    features = dataset["train"].features
    assert list(features) == ["image", "mask", "label", "image_id", "source"]
    assert isinstance(features["label"], ClassLabel)
    assert features["label"].names == ["COVID", "Normal"]
    assert sum(dataset[name].num_rows for name in SPLIT_NAMES) == 20
    example = dataset["train"][0]
    class_name = features["label"].int2str(example["label"])
    assert example["image_id"].startswith(f"{class_name}-")
    assert example["image"].size == (40, 40)
    assert example["source"] == f"https://example.org/{class_name}"
    # Paths, not pixels, are stored at build time.
    stored = dataset["train"].data.column("image")[0].as_py()
    assert stored["bytes"] is None and stored["path"].endswith(f"{example['image_id']}.png")


def test_radiography_image_without_mask_gets_none_and_is_counted(radiography, cache):
    dataset = build_radiography_dataset(radiography, classes=["COVID", "Normal"], cache_dir=cache)
    masks = [mask for split in _all_rows(dataset, "mask").values() for mask in split]
    assert sum(mask is None for mask in masks) == 4  # 2 per class
    assert read_build_summary(dataset).masks["missing"] == 4


def test_radiography_mask_of_other_size_is_resized_with_counted_warning(radiography, cache, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_covid.data"):
        dataset = build_radiography_dataset(
            radiography, classes=["COVID", "Normal"], cache_dir=cache
        )
    assert "16 lung mask(s) differ in size from their image" in caplog.text
    example = next(row for row in dataset["train"] if row["mask"] is not None)
    assert example["mask"].size == example["image"].size
    assert set(np.unique(np.asarray(example["mask"]))) <= {0, 255}


def test_radiography_class_subset_needs_only_the_selected_folders(tmp_path, cache):
    root = write_radiography_tree(tmp_path / "two", classes=("COVID", "Normal"))
    dataset = build_radiography_dataset(root, classes=["Normal", "COVID"], cache_dir=cache)
    assert dataset["train"].features["label"].names == ["COVID", "Normal"]  # canonical order
    with pytest.raises(FileNotFoundError, match=r"Lung_Opacity.*classes="):
        build_radiography_dataset(root, cache_dir=cache)
    with pytest.raises(ValueError, match="subset of"):
        build_radiography_dataset(root, classes=["Pneumothorax"], cache_dir=cache)


def test_radiography_group_by_source_keeps_each_source_in_one_split(tmp_path, cache):
    sources = {
        name: [f"https://example.org/{name}/{k}" for k in range(5)] for name in ("COVID", "Normal")
    }
    root = write_radiography_tree(
        tmp_path / "sources", images_per_class=20, sources=sources, seed=1
    )
    dataset = build_radiography_dataset(
        root, classes=["COVID", "Normal"], group_by="source", cache_dir=cache
    )
    split_of_source = {}
    for name, values in _all_rows(dataset, "source").items():
        for source in values:
            assert split_of_source.setdefault(source, name) == name
    assert len(split_of_source) == 10
    assert read_build_summary(dataset).grouping == "source collection (metadata URL)"


def test_dicom_image_in_a_class_folder_is_converted_into_the_cache(tmp_path, cache):
    root = write_radiography_tree(tmp_path / "dcm", images_per_class=6)
    before = snapshot(root)
    pixels = (random_image(np.random.default_rng(5), 40).astype(np.uint16)) * 16
    write_dicom(root / "COVID" / "images" / "COVID-99.dcm", pixels, bits_stored=12)
    before = snapshot(root)
    dataset = build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)
    rows = [row for name in SPLIT_NAMES for row in dataset[name] if row["image_id"] == "COVID-99"]
    assert len(rows) == 1 and rows[0]["image"].size == (40, 40)
    assert snapshot(root) == before


# -- Bad input -------------------------------------------------------------------------------


@pytest.fixture
def bad_radiography(tmp_path):
    root = write_radiography_tree(tmp_path / "bad", images_per_class=8)
    images = root / "COVID" / "images"
    data = (images / "COVID-1.png").read_bytes()
    (images / "COVID-2.png").write_bytes(data[: len(data) // 2])  # truncated
    (images / "COVID-3.png").write_bytes(b"")  # zero bytes
    (images / "COVID-4.png").write_text("hello, not a PNG")  # text named .png
    return root


def test_bad_files_stop_the_build_with_one_error_listing_every_file(bad_radiography, cache):
    with pytest.raises(BadImagesError) as raised:
        build_radiography_dataset(bad_radiography, classes=["COVID", "Normal"], cache_dir=cache)
    problems = dict(raised.value.problems)
    assert set(problems) == {
        "COVID/images/COVID-2.png",
        "COVID/images/COVID-3.png",
        "COVID/images/COVID-4.png",
    }
    assert "truncated" in problems["COVID/images/COVID-2.png"]
    assert "0 bytes" in problems["COVID/images/COVID-3.png"]
    assert "not a recognised image" in problems["COVID/images/COVID-4.png"]
    assert "3 bad file(s)" in str(raised.value) and "skip_bad_images=True" in str(raised.value)


def test_skip_bad_images_skips_and_reports_the_count(bad_radiography, cache, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_covid.data"):
        dataset = build_radiography_dataset(
            bad_radiography, classes=["COVID", "Normal"], skip_bad_images=True, cache_dir=cache
        )
    assert sum(dataset[name].num_rows for name in SPLIT_NAMES) == 13
    assert "skipping 3 bad file(s)" in caplog.text
    assert read_build_summary(dataset).bad_files_skipped == 3


def test_unknown_and_empty_class_folders_are_bad_input(tmp_path, cache):
    root = write_radiography_tree(tmp_path / "folders", images_per_class=6)
    (root / "Pneumothorax" / "images").mkdir(parents=True)
    Image.new("L", (8, 8)).save(root / "Pneumothorax" / "images" / "P-1.png")
    for path in (root / "Normal" / "images").iterdir():
        path.unlink()
    (root / "lesion_masks" / "COVID").mkdir(parents=True)  # no images/ inside: ignored
    with pytest.raises(BadImagesError) as raised:
        build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)
    problems = dict(raised.value.problems)
    assert set(problems) == {"Pneumothorax", "Normal/images"}
    assert "unknown class folder" in problems["Pneumothorax"]
    assert "empty class folder" in problems["Normal/images"]


def test_unreadable_folder_is_bad_input(tmp_path, cache, monkeypatch):
    root = write_radiography_tree(tmp_path / "locked", images_per_class=6)
    locked = str(root / "Normal" / "images")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(data_io.os, "scandir", scandir)
    with pytest.raises(
        BadImagesError, match=r"Normal/images: unreadable folder.*Permission denied"
    ):
        build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)


def test_build_never_writes_into_the_data_folder(bad_radiography, cache):
    before = snapshot(bad_radiography)
    build_radiography_dataset(
        bad_radiography, classes=["COVID", "Normal"], skip_bad_images=True, cache_dir=cache
    )
    with pytest.raises(BadImagesError):
        build_radiography_dataset(bad_radiography, classes=["COVID", "Normal"], cache_dir=cache)
    assert snapshot(bad_radiography) == before
    with pytest.raises(ValueError, match="inside the data folder"):
        build_radiography_dataset(bad_radiography, cache_dir=bad_radiography / "cache")


# -- Cache -----------------------------------------------------------------------------------


def test_second_build_reuses_the_scan_cache_and_gives_the_same_splits(
    radiography, cache, monkeypatch
):
    first = build_radiography_dataset(radiography, classes=["COVID", "Normal"], cache_dir=cache)
    assert list((cache / "hf_covid" / "scans").glob("*.json"))

    def must_not_decode(path):
        raise AssertionError(f"{path} decoded again despite the scan cache")

    monkeypatch.setattr(data_io, "_inspect_one", must_not_decode)
    second = build_radiography_dataset(radiography, classes=["COVID", "Normal"], cache_dir=cache)
    assert _all_rows(first, "image_id") == _all_rows(second, "image_id")


def test_scan_cache_notices_a_changed_file(radiography, cache):
    build_radiography_dataset(radiography, classes=["COVID", "Normal"], cache_dir=cache)
    (radiography / "COVID" / "images" / "COVID-5.png").write_bytes(b"")
    with pytest.raises(BadImagesError, match=r"COVID-5\.png: empty file"):
        build_radiography_dataset(radiography, classes=["COVID", "Normal"], cache_dir=cache)


# -- Splits and deduplication ----------------------------------------------------------------


def test_splits_are_stratified_seeded_and_grouped():
    labels = [0] * 40 + [1] * 20
    patients = [f"p{index // 2}" for index in range(60)]  # two images per patient
    plan = plan_splits(labels, group_keys=patients, seed=3)
    assert plan == plan_splits(labels, group_keys=patients, seed=3)
    assert plan != plan_splits(labels, group_keys=patients, seed=4)
    split_of_patient = {}
    for patient, split in zip(patients, plan.split_of_item, strict=True):
        assert split_of_patient.setdefault(patient, split) == split
    for label, total in ((0, 40), (1, 20)):
        counts = np.bincount(
            [s for s, lab in zip(plan.split_of_item, labels, strict=True) if lab == label],
            minlength=3,
        )
        np.testing.assert_allclose(counts / total, (0.7, 0.15, 0.15), atol=0.06)
    with pytest.raises(ValueError, match="split_ratios"):
        plan_splits(labels, split_ratios=(0.5, 0.2, 0.2))


def test_near_duplicate_groups_stay_in_one_split(tmp_path, cache):
    root = write_radiography_tree(tmp_path / "dups", images_per_class=12, seed=2)
    images = root / "COVID" / "images"
    for index in range(1, 5):  # four re-encoded, brightened copies
        original = np.asarray(Image.open(images / f"COVID-{index}.png"), dtype=np.float64)
        copy = np.clip(original * 1.05 + 8, 0, 255).astype(np.uint8)
        Image.fromarray(copy).save(images / f"COVID-{index}-copy.jpg", quality=90)
    dataset = build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)
    split_of_id = {
        image_id: name for name, ids in _all_rows(dataset, "image_id").items() for image_id in ids
    }
    for index in range(1, 5):
        assert split_of_id[f"COVID-{index}"] == split_of_id[f"COVID-{index}-copy"]
    near = read_build_summary(dataset).near_duplicates
    assert (near.groups, near.images, near.redundant_copies) == (4, 8, 4)
    unchecked = build_radiography_dataset(
        root, classes=["COVID", "Normal"], deduplicate=False, cache_dir=cache
    )
    assert read_build_summary(unchecked).near_duplicates is None
    assert "not checked" in read_build_summary(unchecked).describe()


# -- X-ray + CT layout -----------------------------------------------------------------------


def _files_by_split(dataset_dict, column):
    return {
        name: {value for value in dataset_dict[name][column] if value is not None}
        for name in SPLIT_NAMES
    }


def test_label_pairing_joins_only_same_class_images_within_a_split(tmp_path, cache):
    root = write_xray_ct_tree(
        tmp_path / "mendeley",
        folder_names={"xray": "xray", "ct": "ct", "COVID": "covid", "Non-COVID": "non-covid"},
    )
    dataset = build_xray_ct_dataset(root, pairing="label", cache_dir=cache)
    features = dataset["train"].features
    assert list(features) == ["xray", "ct", "label", "xray_id", "ct_id", "patient_id", "pairing"]
    assert features["label"].names == ["Non-COVID", "COVID"]
    for name in SPLIT_NAMES:
        for row in dataset[name].select_columns(["label", "xray_id", "ct_id", "pairing"]):
            folder_label = {"covid": 1, "non-covid": 0}
            assert folder_label[row["xray_id"].split("/")[1]] == row["label"]
            assert folder_label[row["ct_id"].split("/")[1]] == row["label"]
            assert row["pairing"] == "label"
    for column in ("xray_id", "ct_id"):
        splits = _files_by_split(dataset, column)
        assert not (splits["train"] & splits["test"]) and not (
            splits["train"] & splits["validation"]
        )
    summary = read_build_summary(dataset)
    assert summary.pairing == "label"
    assert "X-ray and CT of the same class from different people" in summary.pairing_note


def test_label_pairing_is_drawn_from_a_seeded_generator(tmp_path, cache):
    root = write_xray_ct_tree(tmp_path / "seeded")
    pairs = [
        list(build_xray_ct_dataset(root, seed=seed, cache_dir=cache)["train"]["ct_id"])
        for seed in (7, 7, 8)
    ]
    assert pairs[0] == pairs[1] and pairs[0] != pairs[2]


def test_patient_pairing_uses_the_metadata_and_keeps_patients_in_one_split(tmp_path, cache):
    root = write_xray_ct_tree(tmp_path / "paired", patients=True)
    dataset = build_xray_ct_dataset(root, pairing="patient", cache_dir=cache)
    split_of_patient = {}
    for name in SPLIT_NAMES:
        for row in dataset[name].select_columns(["xray_id", "ct_id", "patient_id", "pairing"]):
            assert row["pairing"] == "patient"
            assert row["xray_id"].split("/")[-1].startswith(row["patient_id"])
            assert row["ct_id"].split("/")[-1].startswith(row["patient_id"])
            assert split_of_patient.setdefault(row["patient_id"], name) == name
    assert len(split_of_patient) == 16
    assert read_build_summary(dataset["test"]).pairing == "patient"
    with pytest.raises(FileNotFoundError, match="use pairing='label'"):
        build_xray_ct_dataset(
            tmp_path / "paired", pairing="patient", metadata_file=tmp_path / "no.csv"
        )


def test_keep_unpaired_keeps_every_image_as_one_modality_rows(tmp_path, cache):
    counts = {("xray", "COVID"): 10, ("xray", "Non-COVID"): 6, ("ct", "COVID"): 4}
    counts[("ct", "Non-COVID")] = 9
    root = write_xray_ct_tree(tmp_path / "uneven", per_class=counts)
    kept = build_xray_ct_dataset(root, keep_unpaired=True, cache_dir=cache)
    dropped = build_xray_ct_dataset(root, keep_unpaired=False, cache_dir=cache)
    assert len(set().union(*_files_by_split(kept, "xray_id").values())) == 16
    assert len(set().union(*_files_by_split(kept, "ct_id").values())) == 13
    for name in SPLIT_NAMES:
        assert all(row["xray"] is not None and row["ct"] is not None for row in dropped[name])
    unpaired = [row for name in SPLIT_NAMES for row in kept[name] if row["pairing"] == "unpaired"]
    assert unpaired and all((row["xray"] is None) != (row["ct"] is None) for row in unpaired)
    assert any("kept as one-modality rows" in note for note in read_build_summary(kept).notes)
    assert any(
        "dropped (keep_unpaired=False)" in note for note in read_build_summary(dropped).notes
    )


def test_xray_ct_builder_reports_bad_files_through_the_shared_path(tmp_path, cache):
    root = write_xray_ct_tree(tmp_path / "badct")
    (root / "CT" / "COVID" / "broken.png").write_bytes(b"")
    (root / "CT" / "Unknown").mkdir()
    with pytest.raises(BadImagesError) as raised:
        build_xray_ct_dataset(root, cache_dir=cache)
    assert dict(raised.value.problems).keys() == {"CT/COVID/broken.png", "CT/Unknown"}
    shutil.rmtree(root / "CT" / "Unknown")
    dataset = build_xray_ct_dataset(root, skip_bad_images=True, cache_dir=cache)
    assert read_build_summary(dataset).bad_files_skipped == 1


# -- One broken entry is one bad file; ignored files are counted -------------------------------


def _row_count(dataset_dict) -> int:
    return sum(dataset_dict[name].num_rows for name in SPLIT_NAMES)


def test_symlink_loop_is_one_bad_file_never_the_whole_class(tmp_path, cache):
    root = write_radiography_tree(tmp_path / "loop", images_per_class=6)
    os.symlink("COVID-loop.png", root / "COVID" / "images" / "COVID-loop.png")  # points to itself
    with pytest.raises(BadImagesError) as raised:
        build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)
    problems = dict(raised.value.problems)
    assert list(problems) == ["COVID/images/COVID-loop.png"]
    assert "symbolic links" in problems["COVID/images/COVID-loop.png"]

    dataset = build_radiography_dataset(
        root, classes=["COVID", "Normal"], skip_bad_images=True, cache_dir=cache
    )
    labels = [label for split in _all_rows(dataset, "label").values() for label in split]
    assert labels.count(0) == 6 and labels.count(1) == 6  # every good COVID image kept


def test_unreadable_file_is_one_bad_file(tmp_path, cache, monkeypatch):
    root = write_radiography_tree(tmp_path / "perm", images_per_class=6)
    locked = root / "COVID" / "images" / "COVID-3.png"
    real_read_bytes = data_io.Path.read_bytes

    def read_bytes(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(data_io.Path, "read_bytes", read_bytes)
    dataset = build_radiography_dataset(
        root, classes=["COVID", "Normal"], skip_bad_images=True, cache_dir=cache
    )
    assert _row_count(dataset) == 11
    assert read_build_summary(dataset).bad_files_skipped == 1


def test_requested_class_left_empty_is_an_error_even_when_skipping(tmp_path, cache, monkeypatch):
    root = write_radiography_tree(tmp_path / "locked", images_per_class=6)
    locked = str(root / "Normal" / "images")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(data_io.os, "scandir", scandir)
    with pytest.raises(ValueError, match=r"no usable image for class\(es\) \['Normal'\]") as raised:
        build_radiography_dataset(
            root, classes=["COVID", "Normal"], skip_bad_images=True, cache_dir=cache
        )
    assert "Normal/images: unreadable folder" in str(raised.value)


def test_one_pixel_image_never_enters_a_training_set(tmp_path, cache):
    root = write_radiography_tree(tmp_path / "tiny", images_per_class=6)
    Image.new("L", (1, 1), 100).save(root / "COVID" / "images" / "COVID-dot.png")
    with pytest.raises(BadImagesError, match=r"COVID-dot\.png: the image is 1x1 pixels"):
        build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)
    dataset = build_radiography_dataset(
        root, classes=["COVID", "Normal"], skip_bad_images=True, cache_dir=cache
    )
    ids = {image_id for split in _all_rows(dataset, "image_id").values() for image_id in split}
    assert "COVID-dot" not in ids and len(ids) == 12


def test_mask_of_another_aspect_ratio_is_rejected_as_in_the_app(tmp_path, cache):
    root = write_radiography_tree(tmp_path / "aspect", images_per_class=6)
    Image.new("L", (40, 20)).save(root / "COVID" / "masks" / "COVID-1.png")  # image is 40x40
    with pytest.raises(BadImagesError, match=r"masks/COVID-1\.png: mask is 40x20 but the image"):
        build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)
    dataset = build_radiography_dataset(
        root, classes=["COVID", "Normal"], skip_bad_images=True, cache_dir=cache
    )
    rows = [row for name in SPLIT_NAMES for row in dataset[name] if row["image_id"] == "COVID-1"]
    assert len(rows) == 1 and rows[0]["mask"] is None  # the image stays, without its mask
    assert read_build_summary(dataset).masks["rejected"] == 1


def test_ignored_files_are_counted_in_the_summary_and_description(tmp_path, cache, caplog):
    root = write_radiography_tree(tmp_path / "ignored", images_per_class=6)
    nested = root / "COVID" / "images" / "old" / "older"
    nested.mkdir(parents=True)
    for index in range(3):
        Image.new("L", (40, 40)).save(nested / f"COVID-old-{index}.png")
    (root / "Normal" / "extra").mkdir()
    Image.new("L", (40, 40)).save(root / "Normal" / "extra" / "Normal-extra.png")
    Image.new("L", (40, 40)).save(root / "COVID" / "masks" / "COVID-no-image.png")
    (root / "COVID" / "images" / "notes.txt").write_text("read me")
    # A DICOM named by its UID has a numeric "ending" and is read, not ignored.
    pixels = random_image(np.random.default_rng(9), 40).astype(np.uint16) * 16
    write_dicom(root / "Normal" / "images" / "1.2.826.0.1.3680043.8", pixels, bits_stored=12)
    # A JPEG saved as .jfif (as COVID-CXNet's films are) is an image like any other.
    Image.new("L", (40, 40)).save(root / "COVID" / "images" / "COVID-film.jfif", format="JPEG")

    with caplog.at_level(logging.WARNING, logger="hf_covid.data"):
        dataset = build_radiography_dataset(root, classes=["COVID", "Normal"], cache_dir=cache)

    summary = read_build_summary(dataset)
    assert summary.ignored_files == {
        "in a nested folder": 4,
        "unknown file type": 1,
        "mask without image": 1,
    }
    assert summary.images_per_class == {"COVID": 7, "Normal": 7}
    assert "Ignored files: in a nested folder 4, mask without image 1, unknown file type 1." in (
        summary.describe()
    )
    assert '"mask without image": 1' in dataset["train"].info.description
    assert "ignored 6 file(s)" in caplog.text


def test_xray_ct_counts_ignored_files_and_refuses_an_empty_modality_class(tmp_path, cache):
    root = write_xray_ct_tree(tmp_path / "ignoredct")
    (root / "CT" / "COVID" / "series").mkdir()
    Image.new("L", (40, 40)).save(root / "CT" / "COVID" / "series" / "slice.png")
    (root / "X-ray" / "COVID" / "labels.csv").write_text("file,label\n")
    summary = read_build_summary(build_xray_ct_dataset(root, cache_dir=cache))
    assert summary.ignored_files == {"in a nested folder": 1, "unknown file type": 1}

    for path in (root / "CT" / "COVID").glob("*.png"):
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"no usable image for class\(es\) \['CT COVID'\]"):
        build_xray_ct_dataset(root, skip_bad_images=True, cache_dir=cache)


def test_is_saved_dataset_tells_a_saved_dataset_from_a_data_folder(radiography, cache, tmp_path):
    built = build_radiography_dataset(radiography, classes=["COVID", "Normal"], cache_dir=cache)
    built.save_to_disk(tmp_path / "saved_dict")
    built["train"].save_to_disk(tmp_path / "saved_split")
    assert is_saved_dataset(tmp_path / "saved_dict")
    assert is_saved_dataset(str(tmp_path / "saved_split"))
    assert not is_saved_dataset(radiography)
    assert not is_saved_dataset(tmp_path / "missing")
