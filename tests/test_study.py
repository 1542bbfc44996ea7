"""The real-data study runner, ``--quick`` on small synthetic trees in the upstream layouts.

The trees are written in ``tmp_path`` (never the real collections). The tests check that the
study writes well-formed files and keeps its promises (layout, no writes into the collections,
the U-Net masks for every image), not what the metrics are.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from chest_trees import random_image, snapshot
from test_public_data import METADATA_COLUMNS, _save

from hf_covid.recipes import RECIPE_DIR
from hf_covid.registry import list_models, model_families
from hf_covid.study.report import study_markdown
from hf_covid.study.run import main, study_models, study_recipes
from hf_covid.training.arguments import ConfigurationError
from hf_covid.training.run import train_from_recipe

PATIENTS = 14
"""COVID patients (each one X-ray with a lung mask) of the study tree; also Normal and viral."""


def write_training_collections(root: Path, patients: int = PATIENTS, seed: int = 0) -> Path:
    """ieee8023 (COVID with lung masks, a few normal/viral), Kermany and COVID-CT, big enough
    for every split of every model to hold each class."""
    rng = np.random.default_rng(seed)
    ieee = root / "ieee8023"
    rows = []
    for patient in range(1, patients + 1):
        name = f"covid-{patient}.png"
        image = random_image(rng, 48)
        _save(ieee / "images" / name, image)
        _save(ieee / "masks" / name, ((image > 110) * 255).astype(np.uint8))
        rows.append((str(patient), "60", "COVID-19", "PA", "X-ray", name))
    for offset, finding in ((100, "No Finding"), (200, "SARS")):
        for patient in range(offset, offset + 3):
            name = f"{finding.split()[0].lower()}-{patient}.png"
            _save(ieee / "images" / name, random_image(rng, 48))
            rows.append((str(patient), "50", finding, "PA", "X-ray", name))
    with (ieee / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        for patient, age, finding, view, modality, name in rows:
            writer.writerow(
                {
                    "patientid": patient,
                    "age": age,
                    "finding": finding,
                    "view": view,
                    "modality": modality,
                    "folder": "images",
                    "filename": name,
                    "license": "CC BY 4.0",
                }
            )
    kermany = root / "kermany" / "chest_xray" / "train"
    for patient in range(1, patients + 1):
        _save(kermany / "NORMAL" / f"IM-{patient:04d}-0001.jpeg", random_image(rng), "JPEG")
        _save(
            kermany / "PNEUMONIA" / f"person{patient}_virus_{patient}.jpeg",
            random_image(rng),
            "JPEG",
        )
    for folder in ("CT_COVID", "CT_NonCOVID"):
        for index in range(patients):
            _save(root / "covid_ct" / folder / f"{index}.png", random_image(rng, 48))
    return root


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    """One ``--quick`` run shared by the tests of this module (about a minute)."""
    base = tmp_path_factory.mktemp("study")
    collections = write_training_collections(base / "collections")
    before = snapshot(collections)
    status = main(
        [
            "--collections-root",
            str(collections),
            "--output-dir",
            str(base / "out"),
            "--docs-dir",
            str(base / "docs"),
            "--quick",
        ]
    )
    return {"status": status, "base": base, "collections": collections, "before": before}


def test_quick_study_trains_every_model_into_the_shared_layout(quick_study):
    assert quick_study["status"] == 0
    keys = [family.key for family in study_models()]
    assert set(keys) == set(list_models()) and keys[0] == "lung_unet"
    for key in keys:
        checkpoint = quick_study["base"] / "out" / "models" / key
        assert (checkpoint / "model.safetensors").is_file(), key
        assert (checkpoint / "config.json").is_file(), key


def test_quick_study_writes_well_formed_results_and_document(quick_study):
    docs = quick_study["base"] / "docs"
    results = json.loads((docs / "public_study" / "results.json").read_text())
    assert results["study"]["quick"] is True
    assert set(results["models"]) == {family.key for family in study_models()}
    for key, model in results["models"].items():
        metrics = model["test"]["metrics"]
        headline = "dice" if key == "lung_unet" else "accuracy"
        assert 0.0 <= metrics[headline] <= 1.0, key
        assert model["dataset"]["synthetic"] is False
        assert set(model["dataset"]["sources"]) <= {"ieee8023", "kermany", "covid_ct"}
    names = {key: model["dataset"]["name"] for key, model in results["models"].items()}
    assert (
        names["cnn_lstm"]
        == names["dual_channel"]
        == "Public collections in the Radiography label set"
    )
    assert names["dual_input"] == "Public collections in the X-ray + CT layout"
    unet_rows = results["models"]["lung_unet"]["dataset"]["split_sizes"]
    assert sum(unet_rows.values()) == PATIENTS  # only the images with a human mask
    assert set(results["models"]["dual_input"]["test"]["modalities"]) == {"xray+ct", "xray", "ct"}
    assert results["models"]["cnn_lstm"]["test"]["per_source"].keys() >= {"kermany", "ieee8023"}
    assert results["models"]["dual_channel"]["mask_comparison"]["n_images"] > 0
    assert {"confounds", "explanations"} <= set(results)
    document = (docs / "public_study.md").read_text()
    assert document == study_markdown(results)
    assert "not a diagnostic device" in document
    assert "not evidence of COVID-19 detection" in document
    for name in results["analysis_figures"]:
        assert (docs / "public_study" / name).is_file()
    # The explanation overlays show the collections' images: never copied into the docs.
    assert not list((docs / "public_study").glob("explanations_*"))
    for model in results["models"].values():
        figure = model["confusion_matrix_figure"]
        if figure is not None:
            assert (docs / "public_study" / figure).is_file()


def test_quick_study_gives_the_dual_channel_model_unet_masks_for_every_image(quick_study):
    results = json.loads(
        (quick_study["base"] / "docs" / "public_study" / "results.json").read_text()
    )
    masked = results["data"]["radiography_unet_masks"]
    total = sum(masked["split_sizes"].values())
    assert masked["masks"]["lung_unet"] == total
    assert 0 < masked["masks"]["human_kept_in_human_mask"] < total


def test_quick_study_never_writes_into_the_collections(quick_study):
    assert snapshot(quick_study["collections"]) == quick_study["before"]


def test_only_analysis_reuses_the_earlier_run(quick_study, capsys):
    base = quick_study["base"]
    docs = base / "docs"
    first = json.loads((docs / "public_study" / "results.json").read_text())
    status = main(
        [
            "--collections-root",
            str(quick_study["collections"]),
            "--output-dir",
            str(base / "out"),
            "--docs-dir",
            str(docs),
            "--only-analysis",
        ]
    )
    assert status == 0
    again = json.loads((docs / "public_study" / "results.json").read_text())
    assert again["models"] == first["models"]
    output = capsys.readouterr().out
    assert "training lung_unet" not in output
    assert "analysis done" in output


def test_study_refuses_to_write_into_the_collections(tmp_path, capsys):
    collections = write_training_collections(tmp_path / "collections", patients=2)
    status = main(
        ["--collections-root", str(collections), "--output-dir", str(collections / "out")]
    )
    assert status == 2
    assert "inside the collections root" in capsys.readouterr().err


def test_dual_channel_on_a_collections_root_refuses_partial_masks(tmp_path):
    collections = write_training_collections(tmp_path / "collections", patients=8)
    with pytest.raises(ConfigurationError, match="without a lung mask"):
        train_from_recipe(
            RECIPE_DIR / "dual_channel_public.yaml",
            {
                "data_dir": str(collections),
                "output_dir": str(tmp_path / "dual_channel"),
                "cache_dir": str(tmp_path / "cache"),
                "report_to": "none",
            },
        )


@pytest.mark.parametrize(
    ("recipe", "override", "message"),
    [
        ("dual_input_public", {"pairing": "patient"}, "pairing: the public collections"),
        ("cnn_lstm_public", {"group_by": "source"}, "group_by: 'source' does not apply"),
    ],
)
def test_collections_root_refuses_options_it_cannot_honour(tmp_path, recipe, override, message):
    collections = write_training_collections(tmp_path / "collections", patients=2)
    with pytest.raises(ConfigurationError, match=message):
        train_from_recipe(
            RECIPE_DIR / recipe,
            {
                "data_dir": str(collections),
                "output_dir": str(tmp_path / "model"),
                "cache_dir": str(tmp_path / "cache"),
                "report_to": "none",
                **override,
            },
        )


def test_a_family_takes_part_in_the_study_by_the_study_recipe_of_its_record():
    recipes = study_recipes()
    assert recipes == {
        family.key: family.recipes["study"]
        for family in model_families()
        if "study" in family.recipes
    }
    assert [family.key for family in study_models()][0] == "lung_unet"


def test_chosen_recipes_decide_which_families_take_part_and_with_what(tmp_path):
    variant = tmp_path / "resnet_public_variant.yaml"
    variant.write_text((RECIPE_DIR / "resnet_public.yaml").read_text())
    chosen = {"covid_lung_unet": "lung_unet_public", "resnet": str(variant)}
    assert study_recipes(chosen) == {"lung_unet": "lung_unet_public", "resnet": str(variant)}
    assert [family.key for family in study_models(chosen)] == ["lung_unet", "resnet"]
    with pytest.raises(KeyError, match="unknown model 'no_such_family'"):
        study_recipes({"no_such_family": "lung_unet_public"})


def test_study_command_line_takes_key_equals_recipe(tmp_path, capsys):
    collections = write_training_collections(tmp_path / "collections", patients=2)
    status = main(["--collections-root", str(collections), "--recipe", "resnet"])
    assert status == 2
    assert "--recipe takes KEY=RECIPE" in capsys.readouterr().err
