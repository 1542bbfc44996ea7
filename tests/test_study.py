"""The real-data study runner, ``--quick`` on small synthetic trees in the upstream layouts.

The trees are written in ``tmp_path`` (never the real collections). The tests check that the
study writes well-formed files and keeps its promises (layout, no writes into the collections,
the held-out hospital films, patient intervals, the document's claims), not what the metrics are.
"""

from __future__ import annotations

import copy
import json

import pytest
from chest_trees import snapshot
from study_trees import write_study_collections

from hf_covid.checkpoint_results import StudyProbes
from hf_covid.checkpoints import LUNG_SEGMENTER_FOLDER, MODEL_CARD_FILE, PROCESSOR_FILE
from hf_covid.registry import get_model_family
from hf_covid.study.configurations import ABLATION_MODELS, STUDY_CONFIGURATIONS
from hf_covid.study.report import study_markdown
from hf_covid.study.run import main
from hf_covid.study.session import study_recipes
from hf_covid.training.arguments import ConfigurationError
from hf_covid.training.run import train_from_recipe

RUN = ("0_pediatric_controls", "5_outside_lungs")
"""The first study's configuration and the one with every mitigation (crop, CLAHE, balanced
sampling, outside-lungs swap): what the quick run trains."""


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    """One ``--quick`` run shared by the tests of this module."""
    base = tmp_path_factory.mktemp("study")
    collections = write_study_collections(base / "collections")
    before = snapshot(collections)
    arguments = ["--collections-root", str(collections), "--output-dir", str(base / "out")]
    arguments += ["--docs-dir", str(base / "docs"), "--quick", "--configurations", *RUN]
    status = main(arguments)
    results = json.loads((base / "docs" / "public_study" / "results.json").read_text())
    return {
        "status": status,
        "base": base,
        "collections": collections,
        "before": before,
        "results": results,
    }


def test_quick_study_writes_a_full_checkpoint_per_configuration_and_model(quick_study):
    assert quick_study["status"] == 0
    out = quick_study["base"] / "out"
    assert (out / "models" / "lung_unet" / "model.safetensors").is_file()
    for configuration in RUN:
        for key in ABLATION_MODELS:
            assert (out / "models" / configuration / key / "model.safetensors").is_file()
    cropped = out / "models" / "5_outside_lungs" / "resnet"
    assert (cropped / LUNG_SEGMENTER_FOLDER / "model.safetensors").is_file()
    processor = json.loads((cropped / PROCESSOR_FILE).read_text())
    assert processor["lung_crop_margin"] == 0.08
    assert processor["intensity_standardization"] == "clahe"
    # The first composition holds no COVID-CXNet: its models need no held-out twin.
    assert not (out / "holdout" / "0_pediatric_controls").exists()
    for key in ABLATION_MODELS:
        assert (out / "holdout" / "5_outside_lungs" / key / "model.safetensors").is_file()


def test_quick_study_records_its_probes_on_each_checkpoint_and_its_card(quick_study):
    out = quick_study["base"] / "out"
    for configuration in RUN:
        measured = next(
            c for c in quick_study["results"]["configurations"] if c["key"] == configuration
        )
        for key in ABLATION_MODELS:
            checkpoint = out / "models" / configuration / key
            probes = StudyProbes.read(checkpoint)
            assert probes is not None and (probes.configuration, probes.model) == (
                configuration,
                key,
            )
            films = measured["models"][key]["hospital_films"]
            assert probes.hospital_films["n_films"] == films["n_films"]
            assert probes.hospital_films["trained_without_films"] == (
                configuration != "0_pediatric_controls"
            )
            assert [row["region"] for row in probes.collection_probe] == [
                row["region"] for row in measured["collection_probe"]["conditions"]
            ]
            card = (checkpoint / MODEL_CARD_FILE).read_text()
            assert "## Study probes" in card and f"`{configuration}`" in card


def test_quick_study_results_hold_every_measure_with_patient_intervals(quick_study):
    results = quick_study["results"]
    assert results["study"]["quick"] is True
    assert [c["key"] for c in results["configurations"]] == list(RUN)
    for configuration in results["configurations"]:
        probe = configuration["collection_probe"]
        assert [c["region"] for c in probe["conditions"]] == [
            "whole",
            "outside_lungs",
            "lungs_only",
        ]
        held_out = {h["source"] for h in configuration["leave_one_source_out"]["held_out"]}
        assert "covid_cxnet" in held_out
        for key, model in configuration["models"].items():
            assert model["test"]["interval_unit"] == "patient", key
            assert 0.0 <= model["test"]["metrics"]["accuracy"] <= 1.0
            films = model["hospital_films"]
            assert films["n_films"] == 20 and films["n_controls"] > 0
            assert {"covid_sensitivity", "specificity_COVID"} <= set(films["metrics"])
            assert "roc_auc_COVID" in model["test_covid"]["metrics"]
            assert [c["region"] for c in model["lungs_only"]["conditions"]] == [
                "whole",
                "lungs_only",
            ]
            assert "methods" in model["explanations"] or "skipped" in model["explanations"]
    first, last = results["configurations"]
    assert set(first["data"]["classes"]) == {"COVID", "Normal", "Viral Pneumonia"}
    assert "Lung_Opacity" in last["data"]["classes"]
    assert {row["age_group"] for row in last["data"]["strata"]} == {"adult"}
    unseen = [h for h in first["leave_one_source_out"]["held_out"] if h["source"] == "covid_cxnet"]
    assert unseen[0]["not_in_composition"] is True
    dual_channel = last["models"]["dual_channel"]["test"]
    assert dual_channel["masks"].startswith("the checkpoint's lung U-Net")


def test_quick_study_document_says_what_the_numbers_allow(quick_study):
    docs = quick_study["base"] / "docs"
    results = quick_study["results"]
    document = (docs / "public_study.md").read_text()
    assert document == study_markdown(results)
    assert "not a diagnostic device" in document
    assert "**in --quick mode" in document
    assert "still give the collection away" in document
    for configuration in STUDY_CONFIGURATIONS:
        if configuration.key in RUN:
            assert configuration.title in document
    for name in results["figures"].values():
        assert (docs / "public_study" / name).is_file()
    # The explanation overlays show the collections' images: never copied into the docs.
    assert not list((docs / "public_study").glob("explanations_*"))


def test_document_says_what_each_mitigation_bought_and_reproduces_the_best(quick_study):
    results = copy.deepcopy(quick_study["results"])
    first, last = results["configurations"]
    for configuration, score in ((first, 0.60), (last, 0.10)):
        for model in configuration["models"].values():
            model["hospital_films"]["metrics"]["roc_auc_COVID"] = score
            model["hospital_films"]["confidence_intervals"]["roc_auc_COVID"] = [0.0, 0.1]
    last["models"]["resnet"]["hospital_films"]["metrics"]["roc_auc_COVID"] = 0.85
    document = study_markdown(results)
    bought = document.split("## What each mitigation bought")[1].split("## ")[0]
    assert "0.050 either side" in bought  # the intervals' median half-width, computed
    change = next(line for line in bought.splitlines() if "| resnet |" in line)
    assert change.endswith("| +0.250 |")
    assert "| the data (pediatric_controls -> adult_controls) |" in change
    assert f"models/{last['key']}/resnet --data_dir" in document


def test_quick_study_never_writes_into_the_collections(quick_study):
    assert snapshot(quick_study["collections"]) == quick_study["before"]


def test_only_analysis_rewrites_the_document_from_the_earlier_run(quick_study, capsys):
    base = quick_study["base"]
    (base / "docs" / "public_study.md").unlink()
    status = main(
        [
            "--collections-root",
            str(quick_study["collections"]),
            "--output-dir",
            str(base / "out"),
            "--docs-dir",
            str(base / "docs"),
            "--only-analysis",
        ]
    )
    assert status == 0
    again = json.loads((base / "docs" / "public_study" / "results.json").read_text())
    assert again["configurations"] == quick_study["results"]["configurations"]
    assert again["study"] == quick_study["results"]["study"]  # the run's wall time and load
    assert (base / "docs" / "public_study.md").is_file()
    printed = capsys.readouterr().out
    assert "training" not in printed and "study done" not in printed


def test_study_refuses_to_write_into_the_collections(tmp_path, capsys):
    collections = write_study_collections(tmp_path / "collections")
    status = main(
        ["--collections-root", str(collections), "--output-dir", str(collections / "out")]
    )
    assert status == 2
    assert "inside the collections root" in capsys.readouterr().err


def test_study_names_the_collections_it_misses(tmp_path, capsys):
    collections = write_study_collections(tmp_path / "collections")
    (collections / "covid_cxnet" / "metadata.csv").unlink()
    status = main(["--collections-root", str(collections), "--output-dir", str(tmp_path / "out")])
    assert status == 2
    assert "['covid_cxnet']" in capsys.readouterr().err


def test_dual_channel_on_a_collections_root_refuses_partial_masks(tmp_path):
    collections = write_study_collections(tmp_path / "collections")
    with pytest.raises(ConfigurationError, match="without a lung mask"):
        train_from_recipe(
            "dual_channel_public",
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
        ("dual_input_public", {"composition": "adult_controls"}, "no named compositions"),
        ("cnn_lstm_public", {"group_by": "source"}, "group_by: 'source' does not apply"),
    ],
)
def test_collections_root_refuses_options_it_cannot_honour(tmp_path, recipe, override, message):
    collections = write_study_collections(tmp_path / "collections")
    with pytest.raises(ConfigurationError, match=message):
        train_from_recipe(
            recipe,
            {
                "data_dir": str(collections),
                "output_dir": str(tmp_path / "model"),
                "cache_dir": str(tmp_path / "cache"),
                "report_to": "none",
                **override,
            },
        )


def test_the_study_trains_each_family_with_the_study_recipe_of_its_record_or_the_one_chosen():
    recipes = study_recipes(ABLATION_MODELS)
    assert list(recipes) == ["lung_unet", *ABLATION_MODELS]
    assert recipes["resnet"] == get_model_family("resnet").recipes["study"]
    chosen = study_recipes(["resnet"], {"covid_lung_unet": "lung_unet_synthetic"})
    assert chosen == {"lung_unet": "lung_unet_synthetic", "resnet": recipes["resnet"]}
    with pytest.raises(KeyError, match="unknown model 'no_such_family'"):
        study_recipes(["no_such_family"])


def test_study_command_line_takes_key_equals_recipe(tmp_path, capsys):
    status = main(["--collections-root", str(tmp_path), "--recipe", "resnet"])
    assert status == 2
    assert "--recipe takes KEY=RECIPE" in capsys.readouterr().err
