"""Model and dataset cards render offline from the checkpoint / DatasetDict they describe."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from huggingface_hub import ModelCard
from PIL import Image as PILImage
from safetensors.numpy import save_file

from hf_covid import model_card
from hf_covid.checkpoints import DatasetRecord, EvaluationResults, save_model_and_processor
from hf_covid.data.xray_ct import PAIRING_DESCRIPTIONS
from hf_covid.hub import render_dataset_card, render_model_card, write_model_card
from hf_covid.models import ChestImageProcessor
from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS, label_maps
from hf_covid.registry import get_model_family

REPO = Path(__file__).resolve().parents[1]

EVAL_METRICS = {
    "accuracy": 0.8125,
    "f1_macro": 0.75,
    "covid_sensitivity": 0.9,
    "roc_auc": 0.93,
    "f1_COVID": 0.88,
    "recall_COVID": 0.9,
    "n_samples": 32,
    "loss": 0.51,
    "confusion_matrix": [[9, 1, 0, 0], [1, 6, 1, 0], [0, 2, 6, 0], [0, 0, 1, 5]],
}


def _front_matter(card: ModelCard) -> dict:
    return yaml.safe_load(str(card).split("---")[1])


def _checkpoint(
    folder: Path,
    model_type: str = "covid_cnn_lstm",
    labels: tuple[str, ...] = RADIOGRAPHY_LABELS,
    eval_results: dict | None = None,
) -> Path:
    """A checkpoint folder as save_pretrained + training write it (tiny weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    id2label, label2id = label_maps(labels)
    config = {
        "architectures": ["CNNLSTMForImageClassification"],
        "auto_map": {
            "AutoConfig": "configuration_cnn_lstm.CNNLSTMConfig",
            "AutoModelForImageClassification": "modeling_cnn_lstm.CNNLSTMForImageClassification",
        },
        "model_type": model_type,
        "id2label": {str(key): value for key, value in id2label.items()},
        "label2id": label2id,
        "num_channels": 1,
        "widths": [4, 8],
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"weight": np.zeros((3, 5), dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 64, "width": 64}, "num_channels": 1})
    )
    if eval_results is not None:
        (folder / "eval_results.json").write_text(json.dumps(eval_results))
    return folder


def _results(**fields) -> dict:
    """``eval_results.json`` of a CNN+LSTM on the test split, as training writes it."""
    defaults = {
        "model_type": "covid_cnn_lstm",
        "task": "image-classification",
        "split": "test",
        "class_names": list(RADIOGRAPHY_LABELS),
    }
    return EvaluationResults(**(defaults | fields)).to_dict()


@pytest.fixture()
def evaluated_checkpoint(tmp_path) -> Path:
    results = _results(
        metrics=EVAL_METRICS,
        confidence_intervals={"accuracy": [0.7, 0.9], "f1_macro": [0.6, 0.85]},
        dataset=DatasetRecord(
            kind="radiography",
            name="COVID-19 Radiography Database",
            source="real_data",
            split_sizes={"train": 150, "validation": 32, "test": 32},
            hub_id="me/covid-radiography-splits",
        ),
        training={"learning_rate": 0.001, "optimizer": "adamw_torch"},
    )
    folder = _checkpoint(tmp_path / "checkpoint", eval_results=results)
    (folder / "figures").mkdir()
    PILImage.new("L", (4, 4)).save(folder / "figures" / "confusion_matrix.png")
    return folder


def test_model_card_metadata_has_model_index_from_eval_results(evaluated_checkpoint):
    card = render_model_card(evaluated_checkpoint, repo_id="me/covid-cnn-lstm")

    metadata = _front_matter(card)
    index = metadata["model-index"][0]
    metrics = {metric["type"]: metric["value"] for metric in index["results"][0]["metrics"]}
    assert index["name"] == "covid-cnn-lstm"
    assert metrics == {"accuracy": 0.8125, "f1": 0.75, "sensitivity": 0.9, "roc_auc": 0.93}
    assert index["results"][0]["dataset"]["split"] == "test"
    assert index["results"][0]["dataset"]["type"] == "me/covid-radiography-splits"
    assert metadata["datasets"] == ["me/covid-radiography-splits"]
    assert metadata["license"] == "apache-2.0"
    assert metadata["pipeline_tag"] == "image-classification"
    assert card.data.eval_results[0].metric_value == 0.8125  # parses back as ModelCardData


def test_model_card_shows_confidence_intervals_and_figures(evaluated_checkpoint):
    text = str(render_model_card(evaluated_checkpoint))

    assert "| Accuracy | 0.812 | 0.700 – 0.900 |" in text
    assert "| COVID sensitivity | 0.900 | – |" in text  # no interval recorded
    assert "(32 images)" in text
    assert "![confusion matrix](figures/confusion_matrix.png)" in text
    assert "| train | 150 |" in text
    assert "- Learning rate: 0.001" in text


def test_model_card_explains_use_with_and_without_hf_covid(evaluated_checkpoint):
    text = str(render_model_card(evaluated_checkpoint, repo_id="me/covid-cnn-lstm"))

    assert 'load_predictor("me/covid-cnn-lstm")' in text
    assert (
        "AutoModelForImageClassification.from_pretrained(repo_id, trust_remote_code=True)" in text
    )
    assert "AutoImageProcessor.from_pretrained(repo_id, trust_remote_code=True)" in text


def test_model_card_states_intended_and_out_of_scope_use(evaluated_checkpoint):
    text = str(render_model_card(evaluated_checkpoint))

    assert "not a medical device" in text
    assert "## Out-of-scope use" in text and "diagnosis" in text
    assert "## Limitations" in text


def test_radiography_card_names_data_problems_and_cites_both_papers(evaluated_checkpoint):
    text = str(render_model_card(evaluated_checkpoint))

    assert "Pediatric controls" in text and "*Viral Pneumonia*" in text
    assert "Duplicates across collections" in text
    assert "10.1109/ACCESS.2020.3010287" in text  # Chowdhury et al. 2020, IEEE Access
    assert "10.1016/j.compbiomed.2021.104319" in text  # Rahman et al. 2021
    assert "synthetic phantoms" not in text.lower()


@pytest.mark.parametrize("pairing", ["label", "patient"])
def test_xray_ct_card_says_the_recorded_pairing_and_cites_mendeley(tmp_path, pairing):
    note = PAIRING_DESCRIPTIONS[pairing]
    results = _results(
        model_type="covid_dual_input",
        class_names=list(BINARY_LABELS),
        metrics={"accuracy": 0.7},
        dataset=DatasetRecord(
            kind="xray_ct",
            name="Extensive COVID-19 X-Ray and CT",
            pairing=pairing,
            pairing_note=note,
        ),
    )
    folder = _checkpoint(tmp_path, "covid_dual_input", BINARY_LABELS, results)

    text = str(render_model_card(folder, repo_id="me/dual"))

    assert f"X-ray/CT pairing: **{pairing}** ({note})." in text
    other = PAIRING_DESCRIPTIONS["patient" if pairing == "label" else "label"]
    assert other not in text  # a patient-paired card never claims label pairing, nor vice versa
    assert ("Not patient-paired" in text) is (pairing == "label")
    assert "10.17632/8h65ywd2jr.3" in text
    assert "ct_pixel_values=ct" in text
    assert "Pediatric controls" not in text


def test_card_says_the_classes_the_checkpoint_has(tmp_path):
    three = ("COVID", "Normal", "Viral Pneumonia")
    folder = _checkpoint(tmp_path, labels=three)

    text = str(render_model_card(folder))

    assert "tells apart 3 classes: `COVID`, `Normal`, `Viral Pneumonia`." in text
    assert "four" not in text.lower() and "Lung_Opacity" not in text


def test_card_links_the_library_from_the_package_metadata(evaluated_checkpoint):
    homepage = next(
        entry.split(", ", 1)[1]
        for entry in importlib.metadata.metadata("hf_covid").get_all("Project-URL")
        if entry.startswith("Homepage, ")
    )
    assert f"| Library | [hf_covid]({homepage}) |" in str(render_model_card(evaluated_checkpoint))


def test_card_says_plainly_when_trained_on_synthetic_phantoms(tmp_path):
    record = DatasetRecord(
        kind="radiography", name="phantoms", source="demo", synthetic=True, hub_id="me/phantoms"
    )
    results = _results(metrics={"accuracy": 0.99}, dataset=record)
    folder = _checkpoint(tmp_path / "checkpoint", eval_results=results)

    card = render_model_card(folder)

    assert "trained and evaluated on synthetic phantoms, not on patient images" in str(card)
    assert "synthetic-data" in card.data.tags
    assert card.data.eval_results[0].dataset_name.startswith("Synthetic phantoms")


def test_card_degrades_gracefully_without_evaluation_or_training_files(tmp_path):
    folder = _checkpoint(tmp_path)
    (folder / "preprocessor_config.json").unlink()

    card = render_model_card(folder)

    assert "model-index" not in _front_matter(card)
    assert "the model has not been evaluated" in str(card)
    assert "AutoImageProcessor" not in str(card)


def test_card_rendering_makes_no_network_call(evaluated_checkpoint, monkeypatch):
    import huggingface_hub.utils._http as http

    def no_network(*args, **kwargs):
        raise AssertionError("a card must render without the network")

    monkeypatch.setattr(http, "get_session", no_network)
    render_model_card(evaluated_checkpoint)
    write_model_card(evaluated_checkpoint)


def test_write_model_card_saves_a_readme_that_model_card_loads(evaluated_checkpoint):
    path = write_model_card(evaluated_checkpoint, repo_id="me/covid-cnn-lstm")

    card = ModelCard.load(path)
    assert path == evaluated_checkpoint / "README.md"
    assert {result.metric_type for result in card.data.eval_results} >= {"accuracy", "f1"}


def test_model_card_requires_a_config(tmp_path):
    with pytest.raises(ValueError, match="config.json is missing"):
        render_model_card(tmp_path)


def _xray_ct_dataset() -> DatasetDict:
    features = Features(
        {
            "xray": Image(),
            "ct": Image(),
            "label": ClassLabel(names=list(BINARY_LABELS)),
            "xray_id": Value("string"),
            "ct_id": Value("string"),
            "patient_id": Value("string"),
            "pairing": Value("string"),
        }
    )
    image = PILImage.new("L", (8, 8))

    def split(count: int) -> Dataset:
        return Dataset.from_dict(
            {
                "xray": [image] * count,
                "ct": [image] * count,
                "label": [index % 2 for index in range(count)],
                "xray_id": [f"x{index}" for index in range(count)],
                "ct_id": [f"c{index}" for index in range(count)],
                "patient_id": [None] * count,
                "pairing": ["label"] * count,
            },
            features=features,
        )

    return DatasetDict(train=split(6), validation=split(2), test=split(3))


def test_dataset_card_describes_features_splits_pairing_and_license():
    card = render_dataset_card(_xray_ct_dataset(), repo_id="me/xray-ct")

    text = str(card)
    assert "| `ct` | Image |" in text
    assert "| `label` | ClassLabel(Non-COVID, COVID) |" in text
    assert "| train | 6 | 3 | 3 |" in text
    assert "| test | 3 | 2 | 1 |" in text
    assert "**label** (11 rows)" in text
    assert "from different people" in text
    assert "## Deduplication" in text
    assert "10.17632/8h65ywd2jr.3" in text
    assert card.data.license == "other"
    assert 'load_dataset("me/xray-ct")' in text


def test_dataset_card_for_radiography_lists_sources_and_redacts_local_paths():
    features = Features(
        {
            "image": Image(),
            "label": ClassLabel(names=list(RADIOGRAPHY_LABELS)),
            "image_id": Value("string"),
            "source": Value("string"),
        }
    )
    split = Dataset.from_dict(
        {
            "image": [PILImage.new("L", (8, 8))] * 3,
            "label": [0, 2, 3],
            "image_id": ["a", "b", "c"],
            "source": ["https://example.org/a", "https://example.org/a", ""],
        },
        features=features,
    )
    split.info.description = "Built from /home/someone/private/data: 3 images."

    text = str(render_dataset_card(DatasetDict(train=split)))

    assert "| https://example.org/a | 2 |" in text
    assert "Pediatric" in text or "pediatric" in text
    assert "/home/someone" not in text
    assert "Built from <local folder>: 3 images." in text


def test_card_names_a_hub_base_model_but_not_a_local_folder(tmp_path):
    hub_folder = _checkpoint(tmp_path / "from_hub")
    (hub_folder / "training_config.json").write_text(
        json.dumps({"model": {"pretrained": "microsoft/resnet-50"}})
    )
    local_folder = _checkpoint(tmp_path / "from_folder")
    (tmp_path / "weights").mkdir()
    (local_folder / "training_config.json").write_text(
        json.dumps({"model": {"pretrained": str(tmp_path / "weights")}})
    )

    assert render_model_card(hub_folder).data.base_model == "microsoft/resnet-50"
    assert render_model_card(local_folder).data.base_model is None


def test_card_templates_install_as_package_data():
    """model_cards/ installs as hf_covid.model_cards (pyproject's package-dir), so the templates
    come with the wheel, not only with a checkout."""
    installed = Path(str(importlib.resources.files("hf_covid.model_cards")))
    assert installed == REPO / "model_cards" == model_card.TEMPLATE_DIR
    for name in ("model_card_template.md", "dataset_card_template.md"):
        assert (installed / name).is_file()


def test_metrics_without_a_hub_dataset_stay_out_of_model_index(tmp_path):
    record = DatasetRecord(kind="radiography", name="COVID-19 Radiography Database", source="x")
    folder = _checkpoint(tmp_path, eval_results=_results(metrics=EVAL_METRICS, dataset=record))

    card = render_model_card(folder)

    metadata = _front_matter(card)
    assert "model-index" not in metadata and "datasets" not in metadata
    assert "type: covid19-radiography-database" not in str(card)  # no made-up dataset type
    assert "| Accuracy | 0.812 |" in str(card)  # the metrics stay in the card's table


@pytest.mark.parametrize("key", ["cnn_lstm", "dual_input", "lung_unet", "resnet"])
def test_card_counts_parameters_as_num_parameters(key, tmp_path):
    family = get_model_family(key)
    model = family.tiny_model()
    processor = ChestImageProcessor(size=16, **family.processor_options)
    save_model_and_processor(model, processor, tmp_path)

    assert model_card.num_parameters(tmp_path) == model.num_parameters()
    assert f"| Parameters | {model.num_parameters():,} |" in str(render_model_card(tmp_path))


def test_card_names_the_pretrained_backbone_of_the_dual_input_model_as_base_model(tmp_path):
    folder = _checkpoint(tmp_path, "covid_dual_input", BINARY_LABELS)
    config = json.loads((folder / "config.json").read_text())
    config["backbone_pretrained"] = "microsoft/resnet-18"
    (folder / "config.json").write_text(json.dumps(config))

    assert render_model_card(folder).data.base_model == "microsoft/resnet-18"


def test_card_has_a_widget_example_for_a_hub_repo(evaluated_checkpoint):
    widget = render_model_card(evaluated_checkpoint, repo_id="me/covid-cnn-lstm").data.widget

    assert len(widget) == 1
    assert widget[0]["src"].endswith(
        f"/me/covid-cnn-lstm/resolve/main/{model_card.WIDGET_EXAMPLE_FILE}"
    )
    assert "not a patient" in widget[0]["example_title"]
    assert render_model_card(evaluated_checkpoint).data.get("widget") is None  # no repo URL
    example = PILImage.open(io.BytesIO(model_card.widget_example_png()))
    assert example.mode == "L" and example.size == (256, 256)
    assert np.asarray(example).std() > 10  # a picture, not a blank


def test_dataset_card_lists_the_licences_with_their_counts():
    features = Features(
        {
            "image": Image(),
            "label": ClassLabel(names=list(RADIOGRAPHY_LABELS)),
            "image_id": Value("string"),
            "source": Value("string"),
            "license": Value("string"),
        }
    )
    licences = ["CC BY-NC-SA 4.0", "CC BY-NC-SA 4.0", "Apache 2.0", ""]
    split = Dataset.from_dict(
        {
            "image": [PILImage.new("L", (8, 8))] * 4,
            "label": [0, 0, 2, 3],
            "image_id": ["a", "b", "c", "d"],
            "source": ["ieee8023"] * 4,
            "license": licences,
        },
        features=features,
    )

    text = str(render_dataset_card(DatasetDict(train=split)))

    section = text[text.index("## Licences of the images") : text.index("## License\n")]
    assert "| CC BY-NC-SA 4.0 | 2 | non-commercial (NC) |" in section
    assert "| Apache 2.0 | 1 | open licence |" in section
    assert "| not stated | 1 | not stated (unknown) |" in section
    assert "(4 images)" in section
