"""Model and dataset cards, and publishing checkpoints and datasets to the Hugging Face Hub.

Cards are rendered offline from the Jinja templates in ``model_cards/`` through
:class:`huggingface_hub.ModelCard` / :class:`huggingface_hub.DatasetCard`; nothing here calls
``ModelCard.validate`` (a network call). Uploads go through :class:`huggingface_hub.HfApi` at
``HF_ENDPOINT`` (default https://huggingface.co) with the token of the usual sources (the
``token`` argument, ``HF_TOKEN``, or ``hf auth login``); the token is never logged or put in a
card or an error message. Example::

    from hf_covid.hub import push_checkpoint, write_model_card

    write_model_card("outputs/demo/checkpoints/cnn_lstm")  # README.md in the checkpoint
    push_checkpoint("outputs/demo/checkpoints/cnn_lstm", "me/covid-cnn-lstm", private=True)
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import re
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import (
    CommitOperationAdd,
    DatasetCard,
    DatasetCardData,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    get_token,
)
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import filter_repo_objects

from hf_covid.data.synthetic import LESION_MASK_FOLDER
from hf_covid.models.labels import BINARY_LABELS

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(str(importlib.resources.files("hf_covid.model_cards")))
"""Folder of ``model_card_template.md`` and ``dataset_card_template.md``: the repository's
``model_cards/``, installed as the package data ``hf_covid/model_cards/``."""

UPLOAD_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.md", "*.txt", "figures/*"]
"""What of a checkpoint's top-level files and ``figures/`` is uploaded (sub-folders never are)."""

UPLOAD_IGNORE_PATTERNS = [
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.pickle",
    "*.ckpt",
    "optimizer*",
    "scheduler*",
    "rng_state*",
    "training_args*",
    ".*",
]
"""Never uploaded: pickles (code execution on load), optimizer/RNG state, Trainer leftovers."""

TRAINING_CONFIG_FILE = "training_config.json"
"""The recipe a checkpoint was trained with (its ``data`` section names the data)."""

MODEL_LICENSE = "apache-2.0"

_SYNTHETIC_WORDS = ("synthetic", "phantom")

# (model-index metric type, display name) for the metrics of eval_results.json, in card order.
_CARD_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "Accuracy"),
    "balanced_accuracy": ("balanced_accuracy", "Balanced accuracy"),
    "f1_macro": ("f1", "F1 (macro)"),
    "precision_macro": ("precision", "Precision (macro)"),
    "recall_macro": ("recall", "Recall (macro)"),
    "specificity_macro": ("specificity", "Specificity (macro)"),
    "covid_sensitivity": ("sensitivity", "COVID sensitivity"),
    "covid_ppv": ("ppv", "COVID positive predictive value"),
    "roc_auc": ("roc_auc", "ROC-AUC"),
    "pr_auc": ("pr_auc", "PR-AUC (average precision)"),
    "ece": ("ece", "Expected calibration error (lower is better)"),
    "dice": ("dice", "Dice"),
    "iou": ("iou", "IoU"),
}

# An absolute POSIX or Windows path (not the path part of a URL).
_LOCAL_PATH = re.compile(r"(?<![\w:/.])/[^\s,;:]+|\b[A-Za-z]:\\[^\s,;]+")

_PER_CLASS_METRICS = ("precision", "recall", "specificity", "f1", "roc_auc")

# config.json keys that are not architecture hyperparameters.
_CONFIG_BOOKKEEPING = frozenset(
    (
        "architectures",
        "auto_map",
        "id2label",
        "label2id",
        "model_type",
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
    )
)


@dataclass(frozen=True)
class _ModelKind:
    """What the card says about one ``model_type``."""

    name: str
    summary: str
    task: str  # pipeline tag / model-index task
    inputs: tuple[str, ...]  # model input names beyond pixel_values


_MODEL_KINDS: dict[str, _ModelKind] = {
    "covid_dual_input": _ModelKind(
        "Dual-input CNN (X-ray + CT)",
        "Two convolutional branches, one for a chest X-ray and one for a chest CT slice, whose "
        "pooled features are fused and classified as COVID or Non-COVID. Trained with modality "
        "dropout it accepts either image alone, and its output (`modalities_used`) says which "
        "images it used.",
        "image-classification",
        ("ct_pixel_values",),
    ),
    "covid_cnn_lstm": _ModelKind(
        "CNN + LSTM",
        "A convolutional feature extractor whose last feature map is read row by row, top to "
        "bottom, as a sequence by a (bidirectional) LSTM; its output is classified into the four "
        "classes of the COVID-19 Radiography Database.",
        "image-classification",
        (),
    ),
    "covid_dual_channel": _ModelKind(
        "Dual-channel CNN (X-ray + lung mask)",
        "A convolutional network that takes the chest X-ray and its lung mask as two input "
        "channels, so that it can weigh evidence inside the lungs; four classes.",
        "image-classification",
        ("lung_mask",),
    ),
    "covid_lung_unet": _ModelKind(
        "Lung U-Net",
        "A U-Net that segments the lungs on a chest X-ray (one logit per pixel: lung or "
        "background). Its masks feed the dual-channel classifier and the lung overlays.",
        "image-segmentation",
        (),
    ),
    "resnet": _ModelKind(
        "ResNet (transfer learning)",
        "A transformers `ResNetForImageClassification` (ImageNet-pretrained backbone when "
        "trained from `microsoft/resnet-50`) fine-tuned on chest X-rays.",
        "image-classification",
        (),
    ),
}

_DATASETS: dict[str, dict[str, str]] = {
    "radiography": {
        "name": "COVID-19 Radiography Database",
        "id": "covid19-radiography-database",
        "url": "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
    },
    "xray_ct": {
        "name": "Extensive COVID-19 X-Ray and CT Chest Images Dataset",
        "id": "extensive-covid19-xray-ct",
        "url": "https://doi.org/10.17632/8h65ywd2jr.3",
    },
}


# --------------------------------------------------------------------------- reading a checkpoint
def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when the file is absent."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _safetensors_parameter_count(folder: Path) -> int | None:
    """Number of weights in the checkpoint's safetensors files, read from their headers only."""
    total = 0
    files = sorted(folder.glob("*.safetensors"))
    for path in files:
        with path.open("rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_size))
        total += sum(
            math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__"
        )
    return total if files else None


def _interval(value: Any) -> tuple[float, float] | None:
    """``(low, high)`` from a ``[low, high]`` list; None for anything else (e.g. null)."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(map(_is_number, value)):
        return float(value[0]), float(value[1])
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class _Evaluation:
    """What a card shows of ``eval_results.json``; every field may be empty."""

    metrics: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    split: str = "test"
    n_samples: int | None = None
    confidence: float = 0.95
    confusion_matrix: list[list[int]] | None = None
    dataset: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


_NOT_CARD_METRICS = frozenset(
    ("n_samples", "loss", "epoch", "runtime", "samples_per_second", "steps_per_second")
)


def _metric_name(key: str) -> str:
    """``test_accuracy`` / ``eval_accuracy`` (Trainer's ``save_metrics``) -> ``accuracy``."""
    return re.sub(r"^(test|eval)_", "", key)


def _read_evaluation(path: Path) -> _Evaluation:
    """Normalise ``eval_results.json`` as ``hf_covid.training`` and ``hf_covid.evaluation``
    write it: ``"metrics"`` (or flat metrics, as Trainer's ``save_metrics`` writes them),
    ``"confidence_intervals"`` (``{metric: [low, high] or null}``), ``"confidence"``, ``"split"``,
    the ``"dataset"`` (or ``"data"`` and ``"pairing"``) and ``"training"`` summaries. Anything
    missing is left empty.
    """
    raw = _read_json(path)
    source = raw["metrics"] if isinstance(raw.get("metrics"), Mapping) else raw
    evaluation = _Evaluation()
    for key, value in source.items():
        if _is_number(value) and _metric_name(key) not in _NOT_CARD_METRICS:
            evaluation.metrics[_metric_name(key)] = float(value)
    intervals = raw.get("confidence_intervals") or source.get("confidence_intervals") or {}
    for key, value in intervals.items():
        if _interval(value):
            evaluation.intervals[_metric_name(key)] = _interval(value)  # type: ignore[assignment]
    evaluation.split = str(raw.get("split") or "test")
    n_samples = source.get("n_samples", raw.get("n_samples"))
    evaluation.n_samples = int(n_samples) if _is_number(n_samples) else None
    confidence = raw.get("confidence_level", raw.get("confidence"))
    evaluation.confidence = float(confidence) if _is_number(confidence) else 0.95
    matrix = source.get("confusion_matrix", raw.get("confusion_matrix"))
    evaluation.confusion_matrix = matrix if isinstance(matrix, list) else None
    # training writes a "dataset" summary; hf_covid.evaluation the "data" folder and "pairing".
    dataset = raw.get("dataset")
    evaluation.dataset = dict(dataset) if isinstance(dataset, Mapping) else {}
    if isinstance(raw.get("data"), str):
        evaluation.dataset.setdefault("data_dir", raw["data"])
    if isinstance(raw.get("pairing"), str):
        evaluation.dataset.setdefault("pairing", raw["pairing"])
    evaluation.training = dict(raw["training"]) if isinstance(raw.get("training"), Mapping) else {}
    return evaluation


def _is_synthetic(data: Mapping[str, Any]) -> bool:
    """Whether the training data were synthetic phantoms: said by the data summary (a
    ``synthetic`` flag, or a name or path mentioning phantoms), or visible in the data folder,
    which then holds the lesion ground truth that only the phantom generator writes."""
    if data.get("synthetic") is True:
        return True
    if any(
        isinstance(value, str) and any(word in value.lower() for word in _SYNTHETIC_WORDS)
        for value in data.values()
    ):
        return True
    data_dir = data.get("data_dir")
    return bool(data_dir) and (Path(data_dir) / LESION_MASK_FOLDER).is_dir()


def _dataset_kind(labels: Iterable[str], data: Mapping[str, Any]) -> str:
    """``"xray_ct"`` or ``"radiography"``: from the data summary, else from the labels."""
    text = " ".join(str(value).lower() for value in data.values() if isinstance(value, str))
    if re.search(r"xray[_-]?ct|x-ray and ct|mendeley", text):
        return "xray_ct"
    if "radiography" in text:
        return "radiography"
    return "xray_ct" if tuple(labels) == BINARY_LABELS else "radiography"


def _size_text(size: Any) -> str | None:
    """``"224x224"`` from a processor ``size`` dict or a config ``image_size``."""
    if isinstance(size, Mapping) and "height" in size and "width" in size:
        return f"{size['height']}x{size['width']}"
    if isinstance(size, Mapping) and "shortest_edge" in size:
        return f"shortest edge {size['shortest_edge']}"
    if isinstance(size, int):
        return f"{size}x{size}"
    return None


def _auto_class(config: Mapping[str, Any], task: str) -> str:
    """The Auto class that loads this checkpoint (from ``auto_map`` when it has one)."""
    for name in config.get("auto_map") or {}:
        if name.startswith("AutoModelFor"):
            return name
    return (
        "AutoModelForSemanticSegmentation"
        if task == "image-segmentation"
        else "AutoModelForImageClassification"
    )


def _remote_code_modules(folder: Path, config: Mapping[str, Any]) -> list[str]:
    """The ``.py`` files that ``trust_remote_code`` needs: ``auto_map`` modules and what they
    import with ``from .module import ...``."""
    pending = []
    for reference in (config.get("auto_map") or {}).values():
        for item in reference if isinstance(reference, list) else [reference]:
            if isinstance(item, str):
                pending.append(item.split("--")[-1].rsplit(".", 1)[0] + ".py")
    needed: list[str] = []
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.append(name)
        path = folder / name
        if path.is_file():
            imports = re.findall(
                r"^\s*from\s+\.(\w+)\s+import", path.read_text(encoding="utf-8"), re.M
            )
            pending.extend(f"{module}.py" for module in imports)
    return sorted(needed)


def check_checkpoint(folder: str | Path) -> Path:
    """Raise ``ValueError`` unless ``folder`` is a complete checkpoint: ``config.json``,
    safetensors weights and every remote-code file its ``auto_map`` needs.

    Returns:
        The folder as a resolved path.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ValueError(f"checkpoint folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a complete checkpoint: config.json is missing")
    if not any(
        (folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")
    ):
        raise ValueError(
            f"{folder} is not a complete checkpoint: model.safetensors is missing "
            "(weights are published as safetensors only, never as pickles)"
        )
    missing = [
        name
        for name in _remote_code_modules(folder, _read_json(folder / "config.json"))
        if not (folder / name).is_file()
    ]
    if missing:
        raise ValueError(
            f"{folder} is not a complete checkpoint: config.json auto_map needs {', '.join(missing)}, "
            "which is missing (save the model with register_for_auto_class)"
        )
    return folder


# --------------------------------------------------------------------------- model card
def _template(name: str) -> str:
    path = TEMPLATE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"card template {path} is missing (expected in {TEMPLATE_DIR})")
    return str(path)


def _is_hub_model_id(value: Any) -> bool:
    """Whether ``value`` looks like ``namespace/name`` on the Hub rather than a local folder."""
    return (
        isinstance(value, str)
        and re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None
        and not Path(value).exists()
    )


def _training_rows(
    trainer_state: Mapping[str, Any], training: Mapping[str, Any]
) -> list[tuple[str, Any]]:
    """(label, value) lines of the card's training section, from what the run recorded."""
    best = training.get("best_metric")
    rows: list[tuple[str, Any]] = [
        ("Optimizer steps", trainer_state.get("global_step", training.get("global_steps"))),
        ("Epochs", trainer_state.get("epoch", training.get("epochs_trained"))),
        ("Optimizer", training.get("optimizer")),
        ("Learning rate", training.get("learning_rate")),
        ("Class imbalance handling", training.get("imbalance")),
        ("Mixed precision", training.get("mixed_precision")),
        ("Seed", training.get("seed")),
        ("Best epoch", training.get("best_epoch")),
    ]
    if isinstance(best, Mapping) and _is_number(best.get("value")):
        rows.append((f"Best validation {best.get('name') or 'metric'}", round(best["value"], 4)))
    log_history = trainer_state.get("log_history") or []
    final_loss = next((entry["loss"] for entry in reversed(log_history) if "loss" in entry), None)
    if _is_number(final_loss):
        rows.append(("Final training loss", round(final_loss, 4)))
    if _is_number(training.get("train_runtime_s")):
        rows.append(("Training time", f"{training['train_runtime_s']:.0f} s"))
    return [
        (label, f"{value:g}" if isinstance(value, float) else value)
        for label, value in rows
        if value not in (None, "")
    ]


def _model_card_context(folder: Path, repo_id: str | None) -> tuple[ModelCardData, dict[str, Any]]:
    config = _read_json(folder / "config.json")
    processor = _read_json(folder / "preprocessor_config.json")
    evaluation = _read_evaluation(folder / "eval_results.json")
    recipe = _read_json(folder / TRAINING_CONFIG_FILE)
    data = {**(recipe.get("data") or {}), **evaluation.dataset}  # the evaluated summary wins

    model_type = config.get("model_type", "unknown")
    kind = _MODEL_KINDS.get(
        model_type,
        _ModelKind(model_type, "A transformers image model.", "image-classification", ()),
    )
    id2label = config.get("id2label") or {}
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    dataset_kind = _dataset_kind(labels, data)
    dataset = _DATASETS[dataset_kind]
    synthetic = _is_synthetic(data)
    dataset_name = (
        f"Synthetic phantoms in the layout of the {dataset['name']}"
        if synthetic
        else dataset["name"]
    )
    model_name = repo_id.split("/")[-1] if repo_id else folder.name

    metric_rows, eval_results = [], []
    for key, (metric_type, display) in _CARD_METRICS.items():
        if key not in evaluation.metrics:
            continue
        value = evaluation.metrics[key]
        metric_rows.append(
            {"name": display, "value": value, "interval": evaluation.intervals.get(key)}
        )
        eval_results.append(
            EvalResult(
                task_type=kind.task,
                dataset_type=f"synthetic-{dataset['id']}" if synthetic else dataset["id"],
                dataset_name=dataset_name,
                dataset_split=evaluation.split,
                metric_type=metric_type,
                metric_name=display,
                metric_value=round(value, 4),
            )
        )
    per_class = [
        {
            "label": label,
            "values": [evaluation.metrics.get(f"{name}_{label}") for name in _PER_CLASS_METRICS],
        }
        for label in labels
        if any(f"{name}_{label}" in evaluation.metrics for name in _PER_CLASS_METRICS)
    ]
    base_model = (recipe.get("model") or {}).get("pretrained")
    card_data = ModelCardData(
        model_name=model_name,
        license=MODEL_LICENSE,
        library_name="transformers",
        pipeline_tag=kind.task,
        tags=["medical-imaging", "chest-x-ray", "covid-19", "hf_covid", "research-only"]
        + (["ct"] if "ct_pixel_values" in kind.inputs else [])
        + (["synthetic-data"] if synthetic else []),
        base_model=base_model if _is_hub_model_id(base_model) else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
    )
    hyperparameters = {
        key: value
        for key, value in config.items()
        if key not in _CONFIG_BOOKKEEPING
        and not key.startswith("_")
        and isinstance(value, str | int | float | bool | list)
        and len(json.dumps(value)) <= 80
    }
    split_sizes = data.get("split_sizes") if isinstance(data.get("split_sizes"), Mapping) else {}
    context = {
        "title": f"{kind.name} for COVID-19 chest imaging",
        "repo_id": repo_id or f"<user>/{folder.name}",
        "model_type": model_type,
        "model_kind": kind,
        "architecture": (config.get("architectures") or [model_type])[0],
        "auto_class": _auto_class(config, kind.task),
        "remote_code": bool(config.get("auto_map")),
        "labels": labels,
        "num_parameters": _safetensors_parameter_count(folder),
        "hyperparameters": hyperparameters,
        "has_processor": bool(processor),
        "input_size": _size_text(processor.get("size") or config.get("image_size")),
        "num_channels": processor.get("num_channels", config.get("num_channels")),
        "dataset": dataset,
        "dataset_kind": dataset_kind,
        "dataset_name": dataset_name,
        "synthetic": synthetic,
        "pairing": data.get("pairing") if dataset_kind == "xray_ct" else None,
        "split_sizes": split_sizes,
        "duplicates_removed": data.get("duplicates_removed"),
        "training_rows": _training_rows(
            _read_json(folder / "trainer_state.json"), evaluation.training
        ),
        "split": evaluation.split,
        "n_samples": evaluation.n_samples,
        "metric_rows": metric_rows,
        "confidence_percent": round(100 * evaluation.confidence),
        "per_class_names": _PER_CLASS_METRICS,
        "per_class": per_class,
        "confusion_matrix": evaluation.confusion_matrix,
        "figures": sorted(
            path.relative_to(folder).as_posix() for path in folder.glob("figures/*.png")
        ),
        "license": "Apache-2.0",
    }
    return card_data, context


def render_model_card(checkpoint_dir: str | Path, *, repo_id: str | None = None) -> ModelCard:
    """Render the model card of a checkpoint folder, offline.

    Reads ``config.json``, ``preprocessor_config.json``, ``eval_results.json`` (metrics, confidence
    intervals, split, data and run summaries), ``training_config.json``, ``trainer_state.json``
    and ``figures/*.png``; every file but ``config.json`` may be missing,
    and the card then leaves out what it would have said. ``model-index`` metadata is built from
    the evaluation metrics.

    Args:
        checkpoint_dir: the checkpoint folder.
        repo_id: the Hub repo the card is for (used in the code examples).
    """
    folder = Path(checkpoint_dir)
    if not (folder / "config.json").is_file():
        raise ValueError(f"cannot write a model card for {folder}: config.json is missing")
    card_data, context = _model_card_context(folder, repo_id)
    return ModelCard.from_template(
        card_data, template_path=_template("model_card_template.md"), **context
    )


def write_model_card(checkpoint_dir: str | Path, *, repo_id: str | None = None) -> Path:
    """Render the model card of a checkpoint and save it as its ``README.md``; returns the path."""
    path = Path(checkpoint_dir) / "README.md"
    render_model_card(checkpoint_dir, repo_id=repo_id).save(path)
    return path


# --------------------------------------------------------------------------- dataset card
def _feature_description(feature: Any) -> str:
    name = type(feature).__name__
    if name == "ClassLabel":
        return "ClassLabel(" + ", ".join(feature.names) + ")"
    if name == "Value":
        return feature.dtype
    return name


def render_dataset_card(
    dataset_dict: Mapping[str, Any],
    *,
    repo_id: str | None = None,
    pretty_name: str | None = None,
    synthetic: bool | None = None,
) -> DatasetCard:
    """Render the dataset card of a built ``DatasetDict``, offline.

    Describes the features, the splits (rows and class counts), the X-ray/CT pairing, the
    deduplication, the sources and their licence caveats. The dataset (COVID-19 Radiography
    Database or Extensive COVID-19 X-Ray and CT) is recognised from the columns.

    Args:
        dataset_dict: a ``datasets.DatasetDict`` from ``hf_covid.data``.
        repo_id: the Hub repo the card is for (used in the code example).
        pretty_name: display name; defaults to the source dataset's name.
        synthetic: whether the images are synthetic phantoms; by default, whether the dataset
            description or the ``source`` column says so.
    """
    if not dataset_dict:
        raise ValueError("cannot write a dataset card for an empty DatasetDict")
    first = next(iter(dataset_dict.values()))
    features = first.features
    columns = list(features)
    kind = "xray_ct" if {"xray", "ct"} <= set(columns) else "radiography"
    source = _DATASETS[kind]
    # The builders' description names the local data folder: keep that off a public card.
    description = _LOCAL_PATH.sub("<local folder>", (first.info.description or "").strip())
    label_feature = features.get("label")
    label_names = list(getattr(label_feature, "names", []) or [])
    splits = []
    for name, split in dataset_dict.items():
        counts = Counter(split["label"]) if "label" in columns else Counter()
        splits.append(
            {
                "name": name,
                "rows": split.num_rows,
                "counts": [counts.get(index, 0) for index in range(len(label_names))],
            }
        )
    pairings: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for split in dataset_dict.values():
        if "pairing" in columns:
            pairings.update(value for value in split["pairing"] if value)
        if "source" in columns:
            sources.update(value or "(unknown)" for value in split["source"])
    if synthetic is None:
        synthetic = any(
            word in text.lower() for text in (description, *sources) for word in _SYNTHETIC_WORDS
        )
    total_rows = sum(split["rows"] for split in splits)
    size_category = next(
        label
        for limit, label in (
            (1_000, "n<1K"),
            (10_000, "1K<n<10K"),
            (100_000, "10K<n<100K"),
            (math.inf, "100K<n<1M"),
        )
        if total_rows < limit
    )
    name = pretty_name or (
        f"{source['name']} (synthetic phantoms)" if synthetic else source["name"]
    )
    card_data = DatasetCardData(
        pretty_name=name,
        license="apache-2.0" if synthetic else "other",
        task_categories=["image-classification"],
        size_categories=size_category,
        tags=["medical-imaging", "chest-x-ray", "covid-19", "hf_covid"]
        + (["ct"] if kind == "xray_ct" else [])
        + (["synthetic"] if synthetic else []),
    )
    if not synthetic:
        card_data["license_name"] = "see-sources"
        card_data["license_link"] = source["url"]
    return DatasetCard.from_template(
        card_data,
        template_path=_template("dataset_card_template.md"),
        title=name,
        repo_id=repo_id or "<user>/<dataset>",
        kind=kind,
        source=source,
        synthetic=synthetic,
        description=description,
        features=[(column, _feature_description(feature)) for column, feature in features.items()],
        label_names=label_names,
        splits=splits,
        total_rows=total_rows,
        total_counts=[
            sum(column) for column in zip(*(split["counts"] for split in splits), strict=True)
        ],
        pairings=dict(pairings),
        sources=sources.most_common(10),
        num_sources=len(sources),
    )


# --------------------------------------------------------------------------- upload
def _require_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise PermissionError(
            "no Hugging Face token: pass token=..., set the HF_TOKEN environment variable, "
            "or run `hf auth login` (a token with write access is needed to publish)"
        )
    return token


@contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """Turn the Hub's authentication failures into a PermissionError that names the repo."""
    try:
        yield
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise PermissionError(
                f"the Hub refused to publish '{repo_id}' (HTTP {status}): the token is invalid "
                "or lacks write access to this namespace"
            ) from error
        raise


def publishable_files(folder: str | Path) -> list[str]:
    """The files of a checkpoint folder that :func:`push_checkpoint` uploads besides the card:
    top-level weights, configs, remote code and JSON results, and ``figures/``; never
    sub-folders (the Trainer's intermediate checkpoints) nor pickles."""
    folder = Path(folder)
    candidates = [*folder.iterdir(), *folder.glob("figures/*")]
    names = sorted(path.relative_to(folder).as_posix() for path in candidates if path.is_file())
    kept = filter_repo_objects(
        names, allow_patterns=UPLOAD_ALLOW_PATTERNS, ignore_patterns=UPLOAD_IGNORE_PATTERNS
    )
    return [name for name in kept if name != "README.md"]


def push_checkpoint(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a complete checkpoint folder to a Hub model repo in one commit.

    Uploads the weights (safetensors), ``config.json``, the remote-code ``.py`` files, the image
    processor config, ``eval_results.json`` and the other JSON files, ``figures/``, and a model
    card rendered for ``repo_id`` (the folder's own README.md is replaced by it). Pickles
    (``*.bin``, ``*.pt``, ``*.pth``, optimizer and RNG states, ``training_args.bin``) and
    sub-folders other than ``figures/`` (the Trainer's ``checkpoints/checkpoint-*``) are never
    uploaded (:func:`publishable_files`). The repo is created if needed.

    Args:
        folder: the checkpoint folder (see :func:`check_checkpoint`).
        repo_id: ``namespace/name`` of the model repo.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token; defaults to ``HF_TOKEN`` or the token saved by ``hf auth login``.
        commit_message: defaults to "Upload <model_type> checkpoint".

    Returns:
        The URL of the commit.

    Raises:
        ValueError: the folder is not a complete checkpoint.
        PermissionError: no token, or the Hub refused it.
    """
    folder = check_checkpoint(folder)
    token = _require_token(token)
    published = publishable_files(folder)
    skipped = sorted(
        path.name
        for path in folder.iterdir()
        if path.name not in published and path.name not in ("README.md", "figures")
    )
    if skipped:
        logger.info("not uploading from %s: %s", folder, ", ".join(skipped[:20]))
    card = render_model_card(folder, repo_id=repo_id)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
        for name in published
    ]
    operations.append(
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8"))
    )
    model_type = _read_json(folder / "config.json").get("model_type", "model")

    api = HfApi(token=token)
    with _hub_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {model_type} checkpoint",
        )
    logger.info("pushed %s to %s (%d files)", folder, repo_id, len(operations))
    return commit.commit_url


def push_dataset(
    dataset_dict: Any,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    pretty_name: str | None = None,
    synthetic: bool | None = None,
    max_shard_size: str | int | None = None,
) -> str:
    """Upload a built ``DatasetDict`` to a Hub dataset repo as Parquet, with its dataset card.

    The card (:func:`render_dataset_card`) is committed first; ``DatasetDict.push_to_hub`` then
    uploads the Parquet shards (images embedded) and adds the ``dataset_info``/``configs``
    metadata to that card, so ``datasets.load_dataset(repo_id)`` works.

    Args:
        dataset_dict: a ``datasets.DatasetDict``.
        repo_id: ``namespace/name`` of the dataset repo.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token; defaults to ``HF_TOKEN`` or the token saved by ``hf auth login``.
        pretty_name, synthetic: see :func:`render_dataset_card`.
        max_shard_size: passed to ``push_to_hub`` (e.g. "500MB").

    Returns:
        The URL of the last commit.

    Raises:
        PermissionError: no token, or the Hub refused it.
    """
    token = _require_token(token)
    card = render_dataset_card(
        dataset_dict, repo_id=repo_id, pretty_name=pretty_name, synthetic=synthetic
    )
    api = HfApi(token=token)
    with _hub_errors(repo_id):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_file(
            path_or_fileobj=str(card).encode("utf-8"),
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="dataset",
            commit_message="Add dataset card",
        )
        commit = dataset_dict.push_to_hub(
            repo_id,
            private=private,
            token=token,
            max_shard_size=max_shard_size,
            commit_message="Upload dataset",
        )
    return commit.commit_url
