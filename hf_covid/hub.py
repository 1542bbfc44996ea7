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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

from hf_covid.checkpoints import (
    CONFIG_FILE,
    FIGURES_DIR,
    MODEL_CARD_FILE,
    PROCESSOR_FILE,
    TRAINER_STATE_FILE,
    WEIGHT_FILES,
    DatasetRecord,
    EvaluationResults,
    RunRecord,
    is_hub_id,
    read_json_object,
)
from hf_covid.data.summary import read_build_summary
from hf_covid.registry import DATASET_KINDS, ModelFamily, get_model_family

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


# --------------------------------------------------------------------------- reading a checkpoint
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


def _size_text(size: Any) -> str | None:
    """``"224x224"`` from a processor ``size`` dict or a config ``image_size``."""
    if isinstance(size, Mapping) and "height" in size and "width" in size:
        return f"{size['height']}x{size['width']}"
    if isinstance(size, Mapping) and "shortest_edge" in size:
        return f"shortest edge {size['shortest_edge']}"
    if isinstance(size, int):
        return f"{size}x{size}"
    return None


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
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(f"{folder} is not a complete checkpoint: {CONFIG_FILE} is missing")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(
            f"{folder} is not a complete checkpoint: model.safetensors is missing "
            "(weights are published as safetensors only, never as pickles)"
        )
    missing = [
        name
        for name in _remote_code_modules(folder, read_json_object(folder / CONFIG_FILE))
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


def _card_model(model_type: str) -> dict[str, Any]:
    """What the card says about the model: its registered family, or a generic description."""
    try:
        family: ModelFamily | None = get_model_family(model_type)
    except KeyError:
        family = None
    if family is None:
        return {
            "name": model_type,
            "summary": "A transformers image model.",
            "task": "image-classification",
            "auto_class": "AutoModelForImageClassification",
            "inputs": (),
            "dataset_kind": None,
        }
    return {
        "name": family.display_name,
        "summary": family.card_summary,
        "task": family.pipeline_tag,
        "auto_class": family.auto_class,
        # Images besides `pixel_values`; availability flags are not inputs a user passes.
        "inputs": tuple(
            name
            for name in family.input_names
            if name != "pixel_values" and not name.endswith("_available")
        ),
        "dataset_kind": family.dataset_kind,
    }


def _card_dataset(
    evaluation: EvaluationResults | None, run: RunRecord | None
) -> DatasetRecord | None:
    """The data record a card describes: the evaluated one, else the one the run trained on."""
    if evaluation is not None and evaluation.dataset is not None:
        return evaluation.dataset
    return run.dataset if run is not None else None


def _model_card_context(folder: Path, repo_id: str | None) -> tuple[ModelCardData, dict[str, Any]]:
    config = read_json_object(folder / CONFIG_FILE)
    processor = read_json_object(folder / PROCESSOR_FILE)
    evaluation = EvaluationResults.read(folder)
    run = RunRecord.read(folder)
    model_type = config.get("model_type", "unknown")
    kind = _card_model(model_type)
    record = _card_dataset(evaluation, run)
    id2label = config.get("id2label") or {}
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    recorded_kind = record.kind if record and record.kind in DATASET_KINDS else "radiography"
    dataset_kind = kind["dataset_kind"] or recorded_kind
    dataset = DATASET_KINDS[dataset_kind]
    synthetic = bool(record and record.synthetic)
    dataset_name = (
        f"Synthetic phantoms in the layout of the {dataset.name}" if synthetic else dataset.name
    )
    model_name = repo_id.split("/")[-1] if repo_id else folder.name
    metrics = {
        key: float(value)
        for key, value in (evaluation.metrics if evaluation else {}).items()
        if _is_number(value)
    }
    intervals = {
        key: _interval(value)
        for key, value in (evaluation.confidence_intervals if evaluation else {}).items()
        if _interval(value)
    }
    split = evaluation.split if evaluation else "test"

    metric_rows, eval_results = [], []
    for key, (metric_type, display) in _CARD_METRICS.items():
        if key not in metrics:
            continue
        value = metrics[key]
        metric_rows.append({"name": display, "value": value, "interval": intervals.get(key)})
        eval_results.append(
            EvalResult(
                task_type=kind["task"],
                dataset_type=f"synthetic-{dataset.card_id}" if synthetic else dataset.card_id,
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type=metric_type,
                metric_name=display,
                metric_value=round(value, 4),
            )
        )
    per_class = [
        {
            "label": label,
            "values": [metrics.get(f"{name}_{label}") for name in _PER_CLASS_METRICS],
        }
        for label in labels
        if any(f"{name}_{label}" in metrics for name in _PER_CLASS_METRICS)
    ]
    base_model = run.model.get("pretrained") if run is not None else None
    card_data = ModelCardData(
        model_name=model_name,
        license=MODEL_LICENSE,
        library_name="transformers",
        pipeline_tag=kind["task"],
        tags=["medical-imaging", "chest-x-ray", "covid-19", "hf_covid", "research-only"]
        + (["ct"] if "ct_pixel_values" in kind["inputs"] else [])
        + (["synthetic-data"] if synthetic else []),
        base_model=base_model if is_hub_id(base_model) else None,
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
    context = {
        "title": f"{kind['name']} for COVID-19 chest imaging",
        "repo_id": repo_id or f"<user>/{folder.name}",
        "model_type": model_type,
        "model_kind": kind,
        "architecture": (config.get("architectures") or [model_type])[0],
        "auto_class": kind["auto_class"],
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
        "pairing": record.pairing if record and dataset_kind == "xray_ct" else None,
        "split_sizes": record.split_sizes if record else {},
        "duplicates_removed": None,  # near-duplicates are kept in one split, never removed
        "training_rows": _training_rows(
            read_json_object(folder / TRAINER_STATE_FILE),
            (evaluation.training if evaluation else None) or {},
        ),
        "split": split,
        "n_samples": int(metrics["n_samples"]) if "n_samples" in metrics else None,
        "metric_rows": metric_rows,
        "confidence_percent": round(100 * (evaluation.confidence if evaluation else 0.95)),
        "per_class_names": _PER_CLASS_METRICS,
        "per_class": per_class,
        "confusion_matrix": (evaluation.metrics if evaluation else {}).get("confusion_matrix"),
        "figures": sorted(
            path.relative_to(folder).as_posix() for path in folder.glob(f"{FIGURES_DIR}/*.png")
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
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(f"cannot write a model card for {folder}: {CONFIG_FILE} is missing")
    card_data, context = _model_card_context(folder, repo_id)
    return ModelCard.from_template(
        card_data, template_path=_template("model_card_template.md"), **context
    )


def write_model_card(checkpoint_dir: str | Path, *, repo_id: str | None = None) -> Path:
    """Render the model card of a checkpoint and save it as its ``README.md``; returns the path."""
    path = Path(checkpoint_dir) / MODEL_CARD_FILE
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
        synthetic: whether the images are synthetic phantoms; by default, what the builders'
            summary stored with the dataset says, else whether its ``source`` column says so.
    """
    if not dataset_dict:
        raise ValueError("cannot write a dataset card for an empty DatasetDict")
    first = next(iter(dataset_dict.values()))
    features = first.features
    columns = list(features)
    kind = "xray_ct" if {"xray", "ct"} <= set(columns) else "radiography"
    source = DATASET_KINDS[kind]
    summary = read_build_summary(dataset_dict)
    if summary is not None:
        description = summary.describe()
    else:  # built elsewhere: its free-text description may name a local folder
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
        synthetic = bool(summary and summary.synthetic) or any(
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
    name = pretty_name or (f"{source.name} (synthetic phantoms)" if synthetic else source.name)
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
        card_data["license_link"] = source.url
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
    candidates = [*folder.iterdir(), *folder.glob(f"{FIGURES_DIR}/*")]
    names = sorted(path.relative_to(folder).as_posix() for path in candidates if path.is_file())
    kept = filter_repo_objects(
        names, allow_patterns=UPLOAD_ALLOW_PATTERNS, ignore_patterns=UPLOAD_IGNORE_PATTERNS
    )
    return [name for name in kept if name != MODEL_CARD_FILE]


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
        if path.name not in published and path.name not in (MODEL_CARD_FILE, FIGURES_DIR)
    )
    if skipped:
        logger.info("not uploading from %s: %s", folder, ", ".join(skipped[:20]))
    card = render_model_card(folder, repo_id=repo_id)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
        for name in published
    ]
    operations.append(
        CommitOperationAdd(path_in_repo=MODEL_CARD_FILE, path_or_fileobj=str(card).encode("utf-8"))
    )
    model_type = read_json_object(folder / CONFIG_FILE).get("model_type", "model")

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
