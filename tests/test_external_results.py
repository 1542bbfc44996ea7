"""External results where users look for them: ``hf-covid evaluate --dataset_name`` stores them
with the checkpoint, its model card lists them beside the internal ones (``model-index`` too),
and the app's provenance shows them; the app says what the lung crop did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from chest_trees import write_radiography_tree
from huggingface_hub import ModelCard
from test_external_validation import TINY, save_tiny

import hf_covid.models as models
from hf_covid.app.text import lung_crop_line, model_summary, prediction_summary
from hf_covid.checkpoint_results import (
    dataset_slug,
    external_evaluation_folder,
    read_external_evaluations,
    weights_sha256,
)
from hf_covid.checkpoints import DatasetRecord, EvaluationResults
from hf_covid.evaluation import evaluate_checkpoint, summarize_predictions
from hf_covid.evaluation.external import card_checkpoint, external_output_dir
from hf_covid.evaluation.run import main
from hf_covid.hub import publishable_files
from hf_covid.model_card import write_model_card
from hf_covid.models.labels import RADIOGRAPHY_LABELS
from hf_covid.serving.predictor import Prediction
from hf_covid.serving.served import read_provenance

INTERNAL_METRICS = {
    "accuracy": 0.9,
    "balanced_accuracy": 0.85,
    "covid_sensitivity": 0.95,
    "specificity_COVID": 0.9,
    "roc_auc_COVID": 0.98,
    "roc_auc": 0.97,
    "n_samples": 40,
}


@pytest.fixture
def cnn_lstm_checkpoint(tmp_path) -> Path:
    config = models.CNNLSTMConfig(lstm_hidden_size=8, **TINY)
    return save_tiny(models.CNNLSTMForImageClassification(config), tmp_path / "cnn_lstm")


def _with_internal_results(checkpoint: Path) -> Path:
    """The checkpoint's own test results, as training writes them (intervals over patients)."""
    EvaluationResults(
        model_type="covid_cnn_lstm",
        task="image-classification",
        split="test",
        class_names=list(RADIOGRAPHY_LABELS),
        metrics=INTERNAL_METRICS,
        confidence_intervals={"covid_sensitivity": [0.9, 0.99], "roc_auc_COVID": [0.95, 1.0]},
        interval_unit="patient",
        dataset=DatasetRecord(kind="radiography", name="COVID-19 Radiography Database"),
    ).save(checkpoint / "eval_results.json")
    return checkpoint


def _evaluate(checkpoint: Path, data: Path, name: str, *options: str) -> int:
    return main(
        [str(checkpoint), "--data_dir", str(data), "--dataset_name", name, "--n_resamples", "50"]
        + list(options)
    )


def _card(checkpoint: Path) -> ModelCard:
    return ModelCard.load(checkpoint / "README.md")


def _external_index(card: ModelCard) -> dict[str, dict[str, float]]:
    """model-index results of split 'external': dataset type -> {metric type: value}."""
    found: dict[str, dict[str, float]] = {}
    for result in card.data.eval_results or []:
        if result.dataset_split == "external":
            assert result.dataset_name == result.dataset_type  # the name given, as both
            found.setdefault(result.dataset_type, {})[result.metric_type] = result.metric_value
    return found


def test_named_external_evaluation_goes_on_the_card_beside_the_internal_results(
    cnn_lstm_checkpoint, tmp_path, capsys
):
    checkpoint = _with_internal_results(cnn_lstm_checkpoint)
    data = write_radiography_tree(tmp_path / "site_a", ("COVID", "Normal"), images_per_class=6)

    assert _evaluate(checkpoint, data, "Site A (Spain)", "--no_figures") == 0

    stored = checkpoint / "evaluation_external_site_a_spain" / "eval_results.json"
    results = json.loads(stored.read_text())
    assert results["dataset"]["name"] == "Site A (Spain)" and results["split"] == "external"
    assert "lists the results on 'Site A (Spain)'" in capsys.readouterr().out
    card = _card(checkpoint)
    external = results["metrics"]
    assert _external_index(card) == {
        "Site A (Spain)": {
            metric: round(external[key], 4)
            for key, metric in (
                ("covid_sensitivity", "sensitivity"),
                ("specificity_COVID", "specificity"),
                ("roc_auc_COVID", "roc_auc"),
                ("balanced_accuracy", "balanced_accuracy"),
                ("accuracy", "accuracy"),
            )
        }
    }
    text = card.text
    section = text[text.index("### External results") : text.index("## Intended use")]
    assert "| Metric | internal: test split | Site A (Spain) |" in section
    assert "| Images | 40 | 12 |" in section
    assert "| Intervals resample | patients | images |" in section
    low, high = results["confidence_intervals"]["covid_sensitivity"]
    assert (
        f"| COVID sensitivity | 0.950 (0.900 – 0.990) | "
        f"{external['covid_sensitivity']:.3f} ({low:.3f} – {high:.3f}) |"
    ) in section
    assert "as both its dataset type and its" in section  # the card says what NAME is
    assert "external set (Site A (Spain))" in text  # the limitations name it
    assert "Research use only" in text


def test_evaluating_again_under_a_name_replaces_it_and_other_names_add_entries(
    cnn_lstm_checkpoint, tmp_path
):
    checkpoint = _with_internal_results(cnn_lstm_checkpoint)
    first = write_radiography_tree(tmp_path / "first", ("COVID", "Normal"), images_per_class=5)
    second = write_radiography_tree(tmp_path / "second", ("COVID",), images_per_class=3)
    assert _evaluate(checkpoint, first, "Site A") == 0
    folder = checkpoint / external_evaluation_folder("Site A")
    assert (folder / "figures").is_dir()

    assert _evaluate(checkpoint, second, "site a", "--no_figures") == 0  # the same slug
    assert _evaluate(checkpoint, first, "Site B", "--no_figures") == 0

    assert sorted(path.name for path in checkpoint.glob("evaluation_external_*")) == [
        "evaluation_external_site_a",
        "evaluation_external_site_b",
    ]
    assert not (folder / "figures").exists()  # nothing of the first evaluation is left
    found = read_external_evaluations(checkpoint)
    assert list(found) == ["Site B", "site a"]
    assert found["site a"].metrics["n_samples"] == 3
    index = _external_index(_card(checkpoint))
    assert set(index) == {"site a", "Site B"}
    assert "specificity" not in index["site a"]  # a COVID-only folder defines no specificity
    text = _card(checkpoint).text
    assert "| Metric | internal: test split | Site B | site a |" in text
    assert "| Images | 40 | 10 | 3 |" in text


def test_external_results_elsewhere_leave_the_card_alone(cnn_lstm_checkpoint, tmp_path, capsys):
    data = write_radiography_tree(tmp_path / "site", ("COVID", "Normal"), images_per_class=3)
    elsewhere = tmp_path / "results"

    assert _evaluate(cnn_lstm_checkpoint, data, "Site", "--output_dir", str(elsewhere)) == 0

    assert (elsewhere / "eval_results.json").is_file()
    assert not (cnn_lstm_checkpoint / "README.md").exists()
    assert read_external_evaluations(cnn_lstm_checkpoint) == {}
    assert "model card not changed" in capsys.readouterr().out
    stored = cnn_lstm_checkpoint / "evaluation_external_site"
    assert card_checkpoint(cnn_lstm_checkpoint, "Site", stored) == cnn_lstm_checkpoint
    assert card_checkpoint(cnn_lstm_checkpoint, None) is None  # unnamed: not on the card


def test_a_hub_id_gets_its_results_in_the_working_folder_and_no_card(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert card_checkpoint("someone/covid-model", "Site A") is None
    assert external_output_dir("someone/covid-model", "Site A") == (
        tmp_path / "evaluation_external_site_a_covid-model"
    )


def test_a_dataset_name_is_refused_for_a_split_of_the_run_data(cnn_lstm_checkpoint, tmp_path):
    data = write_radiography_tree(tmp_path / "all", RADIOGRAPHY_LABELS, images_per_class=2)
    with pytest.raises(ValueError, match="--split external"):
        evaluate_checkpoint(cnn_lstm_checkpoint, data_dir=data, dataset_name="Site", progress=False)


def test_dataset_names_make_folder_names_or_a_clear_error():
    assert dataset_slug("Site A (Spain)") == "site_a_spain"
    assert external_evaluation_folder("BIMCV-COVID19+") == "evaluation_external_bimcv_covid19"
    with pytest.raises(ValueError, match="at least one letter or digit"):
        dataset_slug(" -- ")


def _store_external(checkpoint: Path, name: str, **fields) -> Path:
    """An external evaluation stored with ``checkpoint``, as ``hf-covid evaluate --dataset_name``
    stores it (on the weights the checkpoint holds)."""
    folder = checkpoint / external_evaluation_folder(name)
    results = _external(name, weights_sha256=weights_sha256(checkpoint)) | fields
    EvaluationResults(**results).save(folder / "eval_results.json")
    return folder


def _external(name: str, **fields) -> dict:
    defaults = {
        "model_type": "covid_cnn_lstm",
        "task": "image-classification",
        "split": "external",
        "class_names": list(RADIOGRAPHY_LABELS),
        "metrics": {"covid_sensitivity": 0.94, "specificity_COVID": 0.05, "n_samples": 72},
        "confidence_intervals": {"covid_sensitivity": [0.85, 0.99], "specificity_COVID": None},
        "dataset": DatasetRecord(kind="radiography", name=name),
    }
    return defaults | fields


def test_the_finder_names_a_misplaced_or_foreign_results_file(tmp_path):
    EvaluationResults(**_external("Site B")).save(
        tmp_path / "evaluation_external_site_a" / "eval_results.json"
    )
    with pytest.raises(ValueError, match="belong in evaluation_external_site_b/"):
        read_external_evaluations(tmp_path)
    EvaluationResults(**_external("Site A", split="test")).save(
        tmp_path / "evaluation_external_site_a" / "eval_results.json"
    )
    with pytest.raises(ValueError, match="not the results of an external evaluation"):
        read_external_evaluations(tmp_path)


def test_results_on_weights_the_checkpoint_no_longer_holds_are_left_out(
    cnn_lstm_checkpoint, caplog
):
    _with_internal_results(cnn_lstm_checkpoint)
    _store_external(cnn_lstm_checkpoint, "Site A")
    assert list(read_external_evaluations(cnn_lstm_checkpoint)) == ["Site A"]
    assert "Site A" in write_model_card(cnn_lstm_checkpoint).read_text()

    # Trained again into the same folder: other weights, same external folder.
    config = models.CNNLSTMConfig(lstm_hidden_size=8, **TINY)
    save_tiny(models.CNNLSTMForImageClassification(config), cnn_lstm_checkpoint)

    assert read_external_evaluations(cnn_lstm_checkpoint) == {}
    assert "measured on other weights" in caplog.text
    assert read_provenance(cnn_lstm_checkpoint).external == ()
    card = write_model_card(cnn_lstm_checkpoint).read_text()
    assert "Site A" not in card and "### External results" not in card


def test_the_app_shows_the_external_results_beside_the_test_metrics(cnn_lstm_checkpoint):
    _with_internal_results(cnn_lstm_checkpoint)
    _store_external(cnn_lstm_checkpoint, "Site A")

    provenance = read_provenance(cnn_lstm_checkpoint)

    (result,) = provenance.external
    assert (result.name, result.n_images) == ("Site A", 72)
    assert result.metrics["COVID sensitivity"] == (0.94, (0.85, 0.99))
    assert result.metrics["COVID specificity (vs the classes present)"] == (0.05, None)
    lines = model_summary(provenance)
    assert lines[1].startswith("**Test metrics** (test split, 40 images): ")
    assert lines[2] == (
        "**External: Site A** (not trained on, 72 images): COVID sensitivity 0.940 "
        "(95% CI 0.850-0.990); COVID specificity (vs the classes present) 0.050"
    )


def test_a_broken_external_record_leaves_the_rest_of_the_provenance(tmp_path):
    _with_internal_results(tmp_path)
    broken = tmp_path / "evaluation_external_site" / "eval_results.json"
    broken.parent.mkdir()
    broken.write_text("{not json")

    provenance = read_provenance(tmp_path)

    assert provenance.external == () and provenance.metrics  # never fails the app


def _prediction(**crop) -> Prediction:
    return Prediction(
        probabilities={"COVID": 0.7, "Lung_Opacity": 0.1, "Normal": 0.1, "Viral Pneumonia": 0.1},
        inputs_used=("xray",),
        images={"xray": np.zeros((4, 4))},
        **crop,
    )


def test_the_prediction_says_the_xray_was_cropped_to_the_lungs():
    prediction = _prediction(lung_crop_box=(0.1, 0.05, 0.9, 0.95), lung_crop_status="cropped")

    summary = prediction_summary(prediction, "cnn_lstm", None)

    assert (
        "**Lung crop:** the X-ray was cropped to the lungs, as in training (rows 10%-90%, "
        "columns 5%-95% of the image)"
    ) in summary


@pytest.mark.parametrize("status", ["empty mask", "mask covers the image"])
def test_the_prediction_warns_when_the_xray_was_left_uncropped(status):
    summary = prediction_summary(_prediction(lung_crop_status=status), "cnn_lstm", None)

    assert (
        f"**Lung crop: the X-ray was left uncropped** (its lung mask was unusable: {status})"
        in (summary)
    )
    assert "unlike its training images" in summary


def test_a_model_without_a_lung_crop_gets_no_crop_line():
    prediction = _prediction()
    assert lung_crop_line(prediction) is None
    assert "Lung crop" not in prediction_summary(prediction, "cnn_lstm", None)


def test_external_results_are_pushed_with_the_checkpoint(cnn_lstm_checkpoint):
    _store_external(cnn_lstm_checkpoint, "Site A")
    (cnn_lstm_checkpoint / "evaluation_test").mkdir()
    (cnn_lstm_checkpoint / "evaluation_test" / "eval_results.json").write_text("{}")

    pushed = publishable_files(cnn_lstm_checkpoint)

    assert "evaluation_external_site_a/eval_results.json" in pushed
    assert not any(name.startswith("evaluation_test") for name in pushed)


def test_internal_results_carry_intervals_for_the_numbers_external_ones_report():
    labels = np.array([0, 0, 0, 2, 2, 2, 1, 3])
    probabilities = np.eye(4)[[0, 0, 2, 2, 2, 0, 1, 3]] * 0.7 + 0.075

    intervals = summarize_predictions(
        {"labels": labels, "probabilities": probabilities}, RADIOGRAPHY_LABELS, n_resamples=50
    )["confidence_intervals"]

    for name in ("balanced_accuracy", "specificity_COVID", "roc_auc_COVID", "accuracy"):
        assert intervals[name] is not None and intervals[name][0] <= intervals[name][1], name
