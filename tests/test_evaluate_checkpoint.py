"""evaluate_checkpoint, evaluate_explanations and the scripts, on tiny checkpoints and datasets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage
from study_trees import COMPOSED_CLASSES, save_tiny_study_model, write_study_collections
from test_plots import assert_non_blank_png

import hf_covid.models as models
from hf_covid.data.public.compose import compose_radiography
from hf_covid.evaluation import (
    classification_metrics,
    evaluate_checkpoint,
    evaluate_model,
    load_checkpoint,
    predict,
    prepare_inputs,
    resolve_checkpoint,
)
from hf_covid.explain import evaluate_explanations, visualize_checkpoint
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS

SIZE = 32
TINY = {"widths": [4, 8], "classifier_hidden_sizes": [8]}


def save_checkpoint(model, folder: Path, trainer_state: bool = True) -> Path:
    model.save_pretrained(folder)
    ChestImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(folder)
    if trainer_state:
        history = [
            {"loss": 1.2, "epoch": 1.0, "step": 4},
            {"eval_loss": 1.1, "eval_accuracy": 0.4, "epoch": 1.0, "step": 4},
            {"loss": 0.9, "epoch": 2.0, "step": 8},
            {"eval_loss": 1.0, "eval_accuracy": 0.5, "epoch": 2.0, "step": 8},
        ]
        (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return folder


def picture(rng: np.random.Generator, lesion: np.ndarray | None = None) -> PILImage.Image:
    pixels = rng.uniform(40, 120, (48, 40))
    if lesion is not None:
        pixels[lesion] = 230
    return PILImage.fromarray(pixels.astype(np.uint8))


def lesion_mask(index: int) -> np.ndarray:
    mask = np.zeros((48, 40), dtype=bool)
    mask[10 + index : 20 + index, 8:18] = True
    return mask


def radiography_split(per_class: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = {"image": [], "mask": [], "label": [], "image_id": [], "source": []}
    for label, name in enumerate(RADIOGRAPHY_LABELS):
        for index in range(per_class):
            lesion = lesion_mask(index) if name == "COVID" else None
            rows["image"].append(picture(rng, lesion))
            lung = np.zeros((48, 40), dtype=np.uint8)
            lung[5:43, 4:36] = 255
            rows["mask"].append(PILImage.fromarray(lung))
            rows["label"].append(label)
            rows["image_id"].append(f"{name}-{index + 1}")
            rows["source"].append(f"https://example.org/source-{index % 2}")
    features = Features(
        {
            "image": Image(),
            "mask": Image(),
            "label": ClassLabel(names=list(RADIOGRAPHY_LABELS)),
            "image_id": Value("string"),
            "source": Value("string"),
        }
    )
    return Dataset.from_dict(rows, features=features)


def xray_ct_split(per_class: int = 3) -> Dataset:
    rng = np.random.default_rng(1)
    rows = {key: [] for key in ("xray", "ct", "label", "xray_id", "ct_id", "patient_id", "pairing")}
    for label, name in enumerate(BINARY_LABELS):
        for index in range(per_class):
            unpaired = index == 0 and label == 0  # one sample has an X-ray only
            rows["xray"].append(picture(rng))
            rows["ct"].append(None if unpaired else picture(rng))
            rows["label"].append(label)
            rows["xray_id"].append(f"X-ray/{name}/{name} ({index}).png")
            rows["ct_id"].append(None if unpaired else f"CT/{name}/{name} ({index}).png")
            rows["patient_id"].append(None)
            rows["pairing"].append("label")
    features = Features(
        {
            "xray": Image(),
            "ct": Image(),
            "label": ClassLabel(names=list(BINARY_LABELS)),
            **{key: Value("string") for key in ("xray_id", "ct_id", "patient_id", "pairing")},
        }
    )
    return Dataset.from_dict(rows, features=features)


@pytest.fixture
def cnn_lstm_checkpoint(tmp_path) -> Path:
    config = models.CNNLSTMConfig(lstm_hidden_size=8, **TINY)
    return save_checkpoint(models.CNNLSTMForImageClassification(config), tmp_path / "cnn_lstm")


def run_script(name: str, argv: list[str]) -> int:
    """Run ``scripts/<name>.py``'s ``main(argv)`` in this process."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_evaluate_script_writes_results_report_and_figures(cnn_lstm_checkpoint, tmp_path, capsys):
    split = radiography_split()
    saved = tmp_path / "saved_dataset"
    DatasetDict({"test": split}).save_to_disk(str(saved))
    output = tmp_path / "evaluation"

    argv = [str(cnn_lstm_checkpoint), "--data_dir", str(saved), "--output_dir", str(output)]
    assert run_script("evaluate_checkpoint", [*argv, "--n_resamples", "100"]) == 0

    assert "accuracy" in capsys.readouterr().out
    results = json.loads((output / "eval_results.json").read_text())
    metrics = results["metrics"]
    assert metrics["n_samples"] == len(split) == 12
    assert np.sum(metrics["confusion_matrix"]) == 12
    low, high = results["confidence_intervals"]["accuracy"]
    assert low <= metrics["accuracy"] <= high
    assert set(results["per_source"]) == {
        "https://example.org/source-0",
        "https://example.org/source-1",
    }
    assert sum(group["n_samples"] for group in results["per_source"].values()) == 12
    report = (output / "report.md").read_text()
    assert "| Accuracy |" in report and "Per source" in report and "Viral Pneumonia" in report
    assert set(results["figures"]) == {
        "confusion_matrix",
        "confusion_matrix_normalized",
        "roc_curves",
        "precision_recall_curves",
        "reliability_diagram",
        "training_curves",
    }
    for relative in results["figures"].values():
        assert_non_blank_png(output / relative)
        assert f"]({relative})" in report


def test_dual_input_reports_each_input_combination_and_pairing(tmp_path):
    config = models.DualInputCNNConfig(fusion_hidden_size=8, **TINY)
    checkpoint = save_checkpoint(models.DualInputCNNForImageClassification(config), tmp_path / "d")
    results = evaluate_checkpoint(
        checkpoint,
        dataset=DatasetDict({"test": xray_ct_split()}),
        output_dir=tmp_path / "out",
        n_resamples=50,
        figures=False,
        progress=False,
    )
    variants = results["modalities"]
    dataset = results["dataset"]
    assert dataset["pairing"] == "label" and "different people" in dataset["pairing_note"]
    assert variants["xray+ct"]["metrics"]["n_samples"] == 6
    assert variants["xray"]["metrics"]["n_samples"] == 6
    assert variants["ct"]["metrics"]["n_samples"] == 5  # one sample has no CT
    assert variants["xray"]["inputs_used"] == {"xray": 1.0, "ct": 0.0}
    assert variants["ct"]["inputs_used"] == {"xray": 0.0, "ct": 1.0}
    assert variants["xray+ct"]["inputs_used"]["ct"] == pytest.approx(5 / 6)
    assert "Inputs used by the dual-input model" in (tmp_path / "out" / "report.md").read_text()


def test_lung_unet_reports_dice_and_iou(tmp_path):
    model = models.LungUNetForSegmentation(models.LungUNetConfig(widths=[4, 8]))
    checkpoint = save_checkpoint(model, tmp_path / "unet", trainer_state=False)
    results = evaluate_checkpoint(
        checkpoint,
        dataset=DatasetDict({"test": radiography_split(per_class=1)}),
        output_dir=tmp_path / "out",
        n_resamples=50,
        progress=False,
    )
    metrics = results["metrics"]
    assert set(metrics) >= {"dice", "iou", "n_samples"} and "accuracy" not in metrics
    assert 0.0 <= metrics["iou"] <= metrics["dice"] <= 1.0
    low, high = results["confidence_intervals"]["dice"]
    assert low <= metrics["dice"] <= high
    assert results["figures"] == {}


def test_evaluate_model_agrees_with_predict_and_classification_metrics(cnn_lstm_checkpoint):
    split = radiography_split(per_class=2)
    model, processor = load_checkpoint(cnn_lstm_checkpoint)
    prepared, collator, settings = prepare_inputs(model, processor, split)
    assert settings["image_size"] == SIZE

    summary = evaluate_model(model, prepared, collator, n_resamples=50, progress=False)

    predictions = predict(model, prepared, collator, batch_size=3, progress=False)
    assert predictions["labels"].tolist() == split["label"]
    assert predictions["probabilities"].sum(axis=1) == pytest.approx(np.ones(8), abs=1e-5)
    expected = classification_metrics(
        predictions["labels"], predictions["probabilities"], RADIOGRAPHY_LABELS
    )
    assert summary["metrics"].pop("confusion_matrix") == expected.pop("confusion_matrix")
    assert summary["metrics"] == pytest.approx(expected)


def test_checkpoint_without_weights_or_config_names_what_is_missing(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"lacks model\.safetensors"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json .* and model\.safetensors"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a Hub id"):
        resolve_checkpoint(tmp_path / "missing" / "deeper" / "path")
    with pytest.raises(FileNotFoundError, match="could not download checkpoint 'someone/model'"):
        resolve_checkpoint("someone/model")  # the tests run with HF_HUB_OFFLINE=1


def test_bad_data_raises_clear_errors(cnn_lstm_checkpoint):
    split = radiography_split(per_class=1)
    with pytest.raises(ValueError, match="has no split 'test'; available: \\['train'\\]"):
        evaluate_checkpoint(cnn_lstm_checkpoint, dataset=DatasetDict({"train": split}))
    with pytest.raises(ValueError, match="no 'label' column"):
        evaluate_checkpoint(cnn_lstm_checkpoint, dataset=split.remove_columns("label"))
    binary = split.cast_column("label", ClassLabel(names=["COVID", "Normal", "x", "y"]))
    with pytest.raises(ValueError, match="label mismatch: the model predicts .*Lung_Opacity"):
        evaluate_checkpoint(cnn_lstm_checkpoint, dataset=binary)


def test_evaluate_explanations_scores_covid_images_with_lesion_masks(cnn_lstm_checkpoint, tmp_path):
    split = radiography_split()
    for index in range(2):  # the third COVID image has no lesion mask file
        path = tmp_path / "lesion_masks" / "COVID" / "images" / f"COVID-{index + 1}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(lesion_mask(index).astype(np.uint8) * 255).save(path)
    model = models.CNNLSTMForImageClassification.from_pretrained(cnn_lstm_checkpoint)
    processor = ChestImageProcessor.from_pretrained(cnn_lstm_checkpoint)

    scores = evaluate_explanations(model, split, tmp_path, processor=processor, tolerance=1)

    image = scores["image"]
    assert image["n_images"] == 2
    assert 0.0 <= image["pointing_game"] <= 1.0 and 0.0 <= image["energy_inside"] <= 1.0
    assert image["lesion_area_fraction"] == pytest.approx(100 / (48 * 40), rel=0.2)
    with pytest.raises(ValueError, match="no 'COVID' image"):
        evaluate_explanations(model, split.select(range(3, 12)), tmp_path, processor=processor)


def test_visualize_script_draws_overlays_and_feature_maps(cnn_lstm_checkpoint, tmp_path):
    saved = tmp_path / "saved_dataset"
    DatasetDict({"test": radiography_split()}).save_to_disk(str(saved))
    output = tmp_path / "explanations"
    argv = [str(cnn_lstm_checkpoint), "--data_dir", str(saved), "--output_dir", str(output)]
    assert run_script("visualize", [*argv, "--num_images", "2"]) == 0

    results = json.loads((output / "explanations.json").read_text())
    assert set(results["figures"]) == {"gradcam_image", "feature_maps"}
    for relative in results["figures"].values():
        assert_non_blank_png(output / relative)


def test_visualize_checkpoint_measures_lesions_and_audits_markers(cnn_lstm_checkpoint, tmp_path):
    root = tmp_path / "phantoms"
    for index in range(3):
        relative = f"COVID/images/COVID-{index + 1}.png"
        (root / "lesion_masks" / relative).parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(lesion_mask(index).astype(np.uint8) * 255).save(
            root / "lesion_masks" / relative
        )
    # Marker boxes in pixels of the 40x48 originals; the model sees 32x32.
    (root / "shortcut_markers.csv").write_text(
        "file,x0,y0,x1,y1\n"
        "COVID/images/COVID-1.png,0,0,10,12\n"
        "Normal/images/Normal-2.png,0,0,10,12\n"
    )
    results = visualize_checkpoint(
        cnn_lstm_checkpoint,
        dataset=DatasetDict({"test": radiography_split()}),
        output_dir=tmp_path / "out",
        num_images=3,
        phantom_root=root,
        method="hirescam",
    )
    assert results["method"] == "hirescam"
    assert results["explanation_quality"]["image"]["n_images"] == 3
    sweep = results["explanation_layer_sweep"]
    stages = ["cnn_lstm.encoder.blocks.0", "cnn_lstm.encoder.blocks.1"]
    assert [(row["layer"], row["method"]) for row in sweep] == [
        (layer, method) for layer in stages for method in ("gradcam", "hirescam")
    ]
    assert all(row["n_images"] == 3 for row in sweep)
    assert_non_blank_png(tmp_path / "out" / results["figures"]["explanation_layers"])
    audit = results["shortcut_audit"]
    assert audit["n_images"] == 2
    assert audit["marker_area_fraction"] == pytest.approx(1 / 16, abs=0.01)


def test_evaluate_on_a_collections_root_composes_the_training_split(tmp_path):
    collections = write_study_collections(tmp_path / "collections")
    checkpoint = save_tiny_study_model(tmp_path / "study", "cnn_lstm", COMPOSED_CLASSES)
    results = evaluate_checkpoint(
        checkpoint,
        data_dir=collections,
        output_dir=tmp_path / "out",
        n_resamples=50,
        figures=False,
        progress=False,
    )
    test = compose_radiography(collections)["test"]
    assert results["class_names"] == list(COMPOSED_CLASSES)
    assert results["metrics"]["n_samples"] == len(test)
    assert set(results["per_source"]) == set(test["source"])
    covid = COMPOSED_CLASSES.index("COVID")
    for source, metrics in results["per_source"].items():
        labels = {
            label for label, s in zip(test["label"], test["source"], strict=True) if s == source
        }
        # Undefined for the classes present: None, not a zero-division 0.0.
        assert (metrics["covid_sensitivity"] is None) == (covid not in labels), source
        assert (metrics["f1_macro"] is None) == (len(labels) < len(COMPOSED_CLASSES)), source
    assert any(m["covid_sensitivity"] is None for m in results["per_source"].values())
