"""Data out: local Parquet and imagefolder exports that load_dataset reads back unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from chest_trees import snapshot, write_radiography_tree, write_xray_ct_tree
from datasets import Image, load_dataset

from hf_covid.data.parquet import (
    BUILD_SUMMARY_FILE,
    METADATA_FILE,
    main,
    write_imagefolder,
    write_parquet,
)
from hf_covid.data.radiography import build_radiography_dataset
from hf_covid.data.xray_ct import build_xray_ct_dataset
from hf_covid.models.labels import RADIOGRAPHY_LABELS


@pytest.fixture(scope="module")
def radiography(tmp_path_factory):
    root = write_radiography_tree(
        tmp_path_factory.mktemp("radiography"),
        classes=RADIOGRAPHY_LABELS,
        images_per_class=5,
        without_mask=2,
    )
    return root, build_radiography_dataset(root, deduplicate=False)


def _assert_same_rows(loaded, original, columns):
    for split_name, split in original.items():
        assert len(loaded[split_name]) == len(split), split_name
        for column in columns:
            assert list(loaded[split_name][column]) == list(split[column]), (split_name, column)


def _pixels(image) -> np.ndarray | None:
    return None if image is None else np.asarray(image)


def test_parquet_export_loads_back_with_the_same_features_and_embedded_images(
    tmp_path, radiography
):
    root, dataset = radiography
    before = snapshot(root)
    written = write_parquet(dataset, tmp_path / "export")
    assert set(written) == set(dataset)
    loaded = load_dataset(str(tmp_path / "export"))
    for split_name, split in dataset.items():
        assert loaded[split_name].features == split.features
    _assert_same_rows(loaded, dataset, ["label", "image_id", "source"])
    first = dataset["train"][0]
    np.testing.assert_array_equal(_pixels(loaded["train"][0]["image"]), _pixels(first["image"]))
    masks = [mask for split in loaded.values() for mask in split["mask"]]
    assert sum(mask is None for mask in masks) == 2 * len(RADIOGRAPHY_LABELS)  # 2 per class
    summary = json.loads((tmp_path / "export" / BUILD_SUMMARY_FILE).read_text())
    assert summary["split_sizes"] == {name: len(split) for name, split in dataset.items()}
    assert snapshot(root) == before  # the data folder is untouched
    # Self-contained: the images are embedded, so the export survives the data folder.
    raw = loaded["train"].cast_column("image", Image(decode=False))
    assert raw[0]["image"]["bytes"]


def test_imagefolder_export_keeps_masks_as_a_column_not_as_samples(tmp_path, radiography):
    root, dataset = radiography
    written = write_imagefolder(dataset, tmp_path / "folder")
    record = json.loads(written["train"].read_text().splitlines()[0])
    assert record["file_name"].startswith("image/")
    assert record["label"] in dataset["train"].features["label"].names
    plain = load_dataset("imagefolder", data_dir=str(tmp_path / "folder"))
    for split_name, split in dataset.items():
        assert len(plain[split_name]) == len(split)  # the mask files are not samples
        assert isinstance(plain[split_name].features["mask"], Image)
    with_features = load_dataset(
        "imagefolder", data_dir=str(tmp_path / "folder"), features=dataset["train"].features
    )
    for split_name, split in dataset.items():
        assert with_features[split_name].features == split.features
    _assert_same_rows(with_features, dataset, ["label", "image_id", "source"])
    for loaded_row, row in zip(with_features["test"], dataset["test"], strict=True):
        np.testing.assert_array_equal(_pixels(loaded_row["image"]), _pixels(row["image"]))
        np.testing.assert_array_equal(_pixels(loaded_row["mask"]), _pixels(row["mask"]))


def test_xray_ct_export_keeps_both_modalities_and_unpaired_rows(tmp_path):
    root = write_xray_ct_tree(
        tmp_path / "xray_ct",
        per_class={
            ("xray", "COVID"): 6,
            ("xray", "Non-COVID"): 6,
            ("ct", "COVID"): 6,
            ("ct", "Non-COVID"): 4,
        },
        patients=True,
    )
    dataset = build_xray_ct_dataset(root, pairing="patient", keep_unpaired=True, deduplicate=False)
    assert any(ct is None for split in dataset.values() for ct in split["ct"])  # unpaired X-rays
    write_imagefolder(dataset, tmp_path / "folder")
    loaded = load_dataset(
        "imagefolder", data_dir=str(tmp_path / "folder"), features=dataset["train"].features
    )
    _assert_same_rows(loaded, dataset, ["label", "xray_id", "ct_id", "patient_id", "pairing"])
    for split_name, split in dataset.items():
        assert [ct is None for ct in loaded[split_name]["ct"]] == [ct is None for ct in split["ct"]]
    write_parquet(dataset, tmp_path / "parquet")
    assert load_dataset(str(tmp_path / "parquet"))["train"].features == dataset["train"].features


def test_export_refuses_the_data_folder_and_a_folder_that_is_not_empty(tmp_path, radiography):
    root, dataset = radiography
    before = snapshot(root)
    with pytest.raises(ValueError, match="lies inside the data folder"):
        write_parquet(dataset, root / "COVID" / "export")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        write_imagefolder(dataset, tmp_path / "used")
    assert snapshot(root) == before


def test_command_line_builds_the_data_folder_and_writes_parquet(tmp_path, radiography, capsys):
    root, dataset = radiography
    assert main([str(root), str(tmp_path / "cli")]) == 0
    assert "wrote parquet splits" in capsys.readouterr().out
    loaded = load_dataset(str(tmp_path / "cli"))
    assert loaded["train"].features == dataset["train"].features
    assert sum(len(split) for split in loaded.values()) == sum(len(s) for s in dataset.values())
    assert not (tmp_path / "cli" / "train" / METADATA_FILE).exists()
