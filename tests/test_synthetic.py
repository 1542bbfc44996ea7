"""Synthetic chest phantoms: layouts, determinism, ground truth, difficulty and bad input."""

from __future__ import annotations

import csv
import importlib.util
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from PIL import Image
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hf_covid.data.synthetic import (
    LESION_MASK_FOLDER,
    PAIRED_METADATA_FILE,
    SHORTCUT_MARKERS_FILE,
    generate_paired_xray_ct,
    generate_radiography,
    generate_xray_ct,
)
from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS

SMALL = {"image_size": 64, "mask_size": 48, "progress": False}
SMALL_RANGE = (40, 72)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _resized_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as mask:
        return np.asarray(mask.resize((size[1], size[0]), Image.Resampling.NEAREST)) > 127


@pytest.fixture(scope="module")
def radiography(tmp_path_factory) -> Path:
    """Three phantoms per class at the real dataset's sizes (299 images, 256 masks)."""
    return generate_radiography(
        tmp_path_factory.mktemp("radiography"), images_per_class=3, seed=0, progress=False
    )


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    return generate_paired_xray_ct(
        tmp_path_factory.mktemp("paired"),
        patients_per_class=3,
        size_range=SMALL_RANGE,
        progress=False,
    )


def test_radiography_layout_matches_kaggle_names_and_sizes(radiography):
    for name in RADIOGRAPHY_LABELS:
        images = sorted(p.name for p in (radiography / name / "images").iterdir())
        assert images == sorted(f"{name}-{n}.png" for n in (1, 2, 3))
        for file_name in images:
            with Image.open(radiography / name / "images" / file_name) as image:
                assert (image.size, image.mode, image.format) == ((299, 299), "L", "PNG")
            mask = _pixels(radiography / name / "masks" / file_name)
            assert mask.shape == (256, 256)
            assert set(np.unique(mask)) == {0, 255}
            lesion = _pixels(radiography / LESION_MASK_FOLDER / name / file_name)
            assert lesion.shape == (299, 299)
            assert set(np.unique(lesion)) <= {0, 255}
    assert sorted(p.name for p in radiography.iterdir()) == sorted(
        [*RADIOGRAPHY_LABELS, *(f"{n}.metadata.xlsx" for n in RADIOGRAPHY_LABELS), "lesion_masks"]
    )


def test_radiography_metadata_xlsx_has_kaggle_columns(radiography):
    for name in RADIOGRAPHY_LABELS:
        sheet = load_workbook(radiography / f"{name}.metadata.xlsx", read_only=True).active
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[0] == ("FILE NAME", "FORMAT", "SIZE", "URL")
        assert [row[0] for row in rows[1:]] == [f"{name}-{n}" for n in (1, 2, 3)]
        assert {row[1] for row in rows[1:]} == {"PNG"}
        assert {row[2] for row in rows[1:]} == {"256*256"}
        slug = name.lower().replace(" ", "-").replace("_", "-")
        assert all(
            row[3].startswith(f"https://synthetic.hf-covid/{slug}/source-") for row in rows[1:]
        )


def test_radiography_source_urls_group_images_of_a_class(tmp_path):
    root = generate_radiography(tmp_path, images_per_class=12, **SMALL)
    sheet = load_workbook(root / "COVID.metadata.xlsx", read_only=True).active
    urls = [row[3] for row in list(sheet.iter_rows(values_only=True))[1:]]
    assert 3 <= len(set(urls)) <= 5
    assert max(urls.count(url) for url in set(urls)) >= 2


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first = _files(generate_radiography(tmp_path / "a", images_per_class=2, seed=7, **SMALL))
    second = _files(generate_radiography(tmp_path / "b", images_per_class=2, seed=7, **SMALL))
    other = _files(generate_radiography(tmp_path / "c", images_per_class=2, seed=8, **SMALL))
    assert any(name.endswith(".xlsx") for name in first)
    assert first == second
    assert first.keys() == other.keys()
    assert first["COVID/images/COVID-1.png"] != other["COVID/images/COVID-1.png"]

    paired_first = generate_paired_xray_ct(tmp_path / "d", patients_per_class=1, seed=7,
                                           size_range=SMALL_RANGE, progress=False)  # fmt: skip
    paired_second = generate_paired_xray_ct(tmp_path / "e", patients_per_class=1, seed=7,
                                            size_range=SMALL_RANGE, progress=False)  # fmt: skip
    assert _files(paired_first) == _files(paired_second)


def test_earlier_images_do_not_depend_on_images_per_class(tmp_path):
    fewer = _files(generate_radiography(tmp_path / "two", images_per_class=2, **SMALL))
    more = _files(generate_radiography(tmp_path / "three", images_per_class=3, **SMALL))
    shared = [name for name in fewer if name.endswith(".png")]
    assert shared and all(fewer[name] == more[name] for name in shared)


def test_lung_masks_cover_the_dark_lungs(radiography):
    for name in RADIOGRAPHY_LABELS:
        for path in (radiography / name / "images").iterdir():
            image = _pixels(path).astype(np.float32)
            lungs = _resized_mask(radiography / name / "masks" / path.name, image.shape)
            assert 0.12 < lungs.mean() < 0.5, path.name
            # The lungs are darker than the ribs, heart and chest wall around them.
            surroundings = ndimage.binary_dilation(lungs, iterations=12) & ~lungs
            assert image[lungs].mean() < image[surroundings].mean(), path.name
            left, right = lungs[:, :150].sum(), lungs[:, 150:].sum()
            assert min(left, right) > 0.3 * max(left, right), f"{path.name}: one lung only"


def test_lesions_lie_inside_the_lungs_and_match_the_class(radiography):
    for name in RADIOGRAPHY_LABELS:
        for path in (radiography / name / "images").iterdir():
            lesion = _pixels(radiography / LESION_MASK_FOLDER / name / path.name) > 127
            lungs = _resized_mask(radiography / name / "masks" / path.name, lesion.shape)
            if name == "Normal":
                assert not lesion.any(), path.name
                continue
            assert 0.01 < lesion.sum() / lungs.sum() < 0.7, path.name
            # Masks are resized 299 -> 256 -> 299, so allow a two-pixel rim.
            assert not (lesion & ~ndimage.binary_dilation(lungs, iterations=2)).any(), path.name


def test_lesions_raise_the_intensity_inside_the_lungs(radiography):
    """Lesions are drawn where their masks say: lesion pixels are brighter than other lung."""
    for name in ("COVID", "Lung_Opacity", "Viral Pneumonia"):
        for path in (radiography / name / "images").iterdir():
            image = _pixels(path).astype(np.float32)
            lesion = _pixels(radiography / LESION_MASK_FOLDER / name / path.name) > 127
            lungs = _resized_mask(radiography / name / "masks" / path.name, image.shape)
            assert image[lesion].mean() > image[lungs & ~lesion].mean(), path.name


def test_intensity_histogram_alone_does_not_give_the_class_away(tmp_path):
    root = generate_radiography(
        tmp_path, images_per_class=40, image_size=128, mask_size=32, progress=False
    )
    features, labels = [], []
    for label, name in enumerate(RADIOGRAPHY_LABELS):
        for path in (root / name / "images").iterdir():
            histogram = np.histogram(_pixels(path), bins=32, range=(0, 256))[0]
            features.append(histogram / histogram.sum())
            labels.append(label)
    baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    accuracy = cross_val_score(baseline, np.array(features), np.array(labels), cv=folds).mean()
    assert accuracy < 0.6


def test_xray_ct_layout_has_mixed_formats_and_sizes(tmp_path):
    root = generate_xray_ct(tmp_path, images_per_class=6, size_range=SMALL_RANGE, progress=False)
    suffixes, shapes = set(), set()
    for modality in ("X-ray", "CT"):
        for label in BINARY_LABELS:
            files = sorted((root / modality / label).iterdir())
            assert len(files) == 6
            for path in files:
                assert path.stem.startswith(f"{label} (")
                with Image.open(path) as image:
                    assert image.mode == "L"
                    assert image.format == {".jpg": "JPEG", ".png": "PNG"}[path.suffix]
                    shape = (image.height, image.width)
                assert all(SMALL_RANGE[0] <= side <= SMALL_RANGE[1] for side in shape)
                suffixes.add(path.suffix)
                shapes.add(shape)
                lesion = _pixels(root / LESION_MASK_FOLDER / modality / label / f"{path.stem}.png")
                assert lesion.shape == shape
                assert lesion.any() == (label == "COVID"), path
    assert suffixes == {".jpg", ".png"}
    assert len(shapes) > 3 and any(h != w for h, w in shapes)


XRAY_CT_GENERATORS = pytest.mark.parametrize(
    ("generate", "count_name"),
    [(generate_xray_ct, "images_per_class"), (generate_paired_xray_ct, "patients_per_class")],
)


@XRAY_CT_GENERATORS
def test_xray_ct_images_do_not_depend_on_the_count(tmp_path, generate, count_name):
    common = {"size_range": SMALL_RANGE, "progress": False}
    fewer = _files(generate(tmp_path / "one", **{count_name: 1}, **common))
    more = _files(generate(tmp_path / "two", **{count_name: 2}, **common))
    shared = [name for name in fewer if name != PAIRED_METADATA_FILE]
    assert len(shared) == 8  # one image and its lesion mask per modality and label
    assert all(fewer[name] == more[name] for name in shared)
    assert len(more) - len(fewer) == 8


@XRAY_CT_GENERATORS
def test_xray_ct_layouts_overwrite_only_their_own_files(tmp_path, generate, count_name):
    common = {"size_range": SMALL_RANGE, "progress": False}
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(tmp_path, **{count_name: 1}, **common)
    generate(tmp_path, **{count_name: 2}, shortcut=True, overwrite=True, **common)
    assert (tmp_path / SHORTCUT_MARKERS_FILE).is_file()

    generate(tmp_path, **{count_name: 1}, overwrite=True, **common)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / SHORTCUT_MARKERS_FILE).exists()
    for modality in ("X-ray", "CT"):
        for label in BINARY_LABELS:
            images = sorted(path.stem for path in (tmp_path / modality / label).iterdir())
            masks = sorted(
                path.stem for path in (tmp_path / LESION_MASK_FOLDER / modality / label).iterdir()
            )
            assert len(images) == 1 and masks == images, (modality, label)


def test_paired_metadata_gives_each_patient_one_xray_and_one_ct(paired):
    with (paired / PAIRED_METADATA_FILE).open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["file", "modality", "label", "patient_id"]
        rows = list(reader)
    by_patient = defaultdict(list)
    for row in rows:
        by_patient[row["patient_id"]].append(row)
        folder, label, file_name = row["file"].split("/")
        assert folder == {"xray": "X-ray", "ct": "CT"}[row["modality"]]
        assert label == row["label"]
        assert file_name.startswith(f"{row['patient_id']}_{row['modality']}.")
        assert (paired / row["file"]).is_file()
    assert len(by_patient) == 3 * len(BINARY_LABELS)
    for patient_rows in by_patient.values():
        assert sorted(row["modality"] for row in patient_rows) == ["ct", "xray"]
        assert len({row["label"] for row in patient_rows}) == 1
    files_on_disk = {
        p.relative_to(paired).as_posix() for p in paired.glob("[XC]*/*/*") if p.is_file()
    }
    assert files_on_disk == {row["file"] for row in rows}


def test_paired_covid_patient_has_lesions_in_both_modalities(paired):
    with (paired / PAIRED_METADATA_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        lesion = _pixels(paired / LESION_MASK_FOLDER / Path(row["file"]).with_suffix(".png"))
        assert lesion.any() == (row["label"] == "COVID"), row["file"]


def test_shortcut_marker_is_class_correlated_and_changes_nothing_else(tmp_path):
    plain = generate_radiography(tmp_path / "plain", images_per_class=10, **SMALL)
    marked = generate_radiography(tmp_path / "marked", images_per_class=10, shortcut=True, **SMALL)
    with (marked / SHORTCUT_MARKERS_FILE).open(newline="") as handle:
        markers = {row["file"]: row for row in csv.DictReader(handle)}
    for corner, name in enumerate(RADIOGRAPHY_LABELS):
        class_markers = [row for file, row in markers.items() if file.startswith(f"{name}/")]
        assert len(class_markers) >= 7, name  # about 90% of 10
        for row in class_markers:
            x0, y0, x1, y1 = (int(row[key]) for key in ("x0", "y0", "x1", "y1"))
            assert (x0 < 32) == (corner % 2 == 0) and (y0 < 32) == (corner < 2), row
    for path in (marked / "COVID" / "images").iterdir():
        relative = path.relative_to(marked).as_posix()
        image, original = _pixels(path), _pixels(plain / relative)
        outside = np.ones(image.shape, dtype=bool)
        if relative in markers:
            row = markers[relative]
            box = (slice(int(row["y0"]), int(row["y1"])), slice(int(row["x0"]), int(row["x1"])))
            assert image[box].max() == 255 and image[box].min() == 0
            outside[box] = False
        assert np.array_equal(image[outside], original[outside])
    assert not (plain / SHORTCUT_MARKERS_FILE).exists()


def test_non_empty_output_folder_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_radiography(tmp_path, images_per_class=1, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    generate_radiography(tmp_path, images_per_class=3, overwrite=True, **SMALL)
    generate_radiography(tmp_path, images_per_class=2, overwrite=True, **SMALL)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "COVID" / "images").iterdir()) == [
        "COVID-1.png",
        "COVID-2.png",
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        {"images_per_class": 0},
        {"images_per_class": -2},
        {"images_per_class": 2.5},
        {"images_per_class": True},
        {"image_size": 16},
        {"image_size": 64.0},
        {"mask_size": 0},
        {"seed": -1},
        {"difficulty": "extreme"},
    ],
)
def test_invalid_radiography_arguments_are_rejected_before_writing(tmp_path, arguments):
    output = tmp_path / "out"
    with pytest.raises(ValueError, match=next(iter(arguments))):
        generate_radiography(output, **{"images_per_class": 1, **SMALL, **arguments})
    assert not output.exists()


@pytest.mark.parametrize("size_range", [(16, 64), (96, 48), (64,), "64"])
def test_invalid_size_ranges_are_rejected(tmp_path, size_range):
    with pytest.raises(ValueError, match="size_range"):
        generate_xray_ct(tmp_path / "out", images_per_class=1, size_range=size_range)
    with pytest.raises(ValueError, match="size_range"):
        generate_paired_xray_ct(tmp_path / "out", patients_per_class=1, size_range=size_range)
    assert not (tmp_path / "out").exists()


def test_invalid_xray_ct_counts_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="images_per_class"):
        generate_xray_ct(tmp_path / "out", images_per_class=0)
    with pytest.raises(ValueError, match="patients_per_class"):
        generate_paired_xray_ct(tmp_path / "out", patients_per_class="3")
    assert not (tmp_path / "out").exists()


def _load_cli():
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic.py"
    spec = importlib.util.spec_from_file_location("make_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_every_layout_and_refuses_a_non_empty_folder(tmp_path, capsys):
    cli = _load_cli()
    arguments = ["--output", str(tmp_path), "--layout", "all", "--images-per-class", "1",
                 "--image-size", "48", "--mask-size", "32", "--size-range", "40", "48",
                 "--shortcut", "--no-progress"]  # fmt: skip
    assert cli.main(arguments) == 0
    assert str(tmp_path.resolve()) in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "radiography",
        "xray_ct",
        "xray_ct_paired",
    ]
    assert (tmp_path / "radiography" / "COVID" / "images" / "COVID-1.png").is_file()
    assert (tmp_path / "xray_ct_paired" / PAIRED_METADATA_FILE).is_file()
    assert (tmp_path / "xray_ct" / SHORTCUT_MARKERS_FILE).is_file()

    assert cli.main(arguments) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main([*arguments, "--overwrite"]) == 0
