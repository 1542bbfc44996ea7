"""The checkpoint folder as a written format: file names, the run record and the evaluation results.

A checkpoint folder (what training writes and the Hub holds) contains ``config.json`` (with
``auto_map``), ``model.safetensors``, the remote-code ``.py`` files, ``preprocessor_config.json``,
``README.md`` (the model card), ``eval_results.json`` (:class:`EvaluationResults`),
``training_config.json`` (:class:`RunRecord`), ``trainer_state.json`` and ``figures/``; after
``hf-covid evaluate --dataset_name NAME`` on an external folder, one
``evaluation_external_<slug of NAME>/eval_results.json`` per external data set
and in a study checkpoint the study's probes of that model (``study_probes.json``); the records
of those two are in :mod:`hf_covid.checkpoint_results`. The JSON records are dataclasses written and read
back by the same code; the data they describe is a :class:`DatasetRecord` built from the
dataset's build summary, never parsed out of prose. No record holds an absolute local path
(:func:`portable`) nor a Hub token.

:func:`resolve_checkpoint` turns "a folder, or a Hub id at a revision" (:class:`CheckpointSource`,
``"org/name@revision"``) into a local folder and :func:`load_checkpoint` loads its model (by the
Auto class of its registered family) and image processor; evaluation, serving, the app and the
Hub code all use these two.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download
from transformers import AutoConfig, AutoImageProcessor, PreTrainedModel, ViTImageProcessor

from .models.image_processing_chest import LUNG_SEGMENTER_FOLDER, ChestImageProcessor
from .registry import get_model_family

__all__ = [
    "CHECKPOINTS_SUBDIR",
    "CONFIG_FILE",
    "EVAL_RESULTS_FILE",
    "EXTERNAL_EVALUATION_PREFIX",
    "EXTERNAL_SPLIT",
    "FIGURES_DIR",
    "LUNG_SEGMENTER_FOLDER",
    "MODEL_CARD_FILE",
    "PROCESSOR_FILE",
    "RUN_RECORD_FILE",
    "STUDY_PROBES_FILE",
    "TRAINER_STATE_FILE",
    "WEIGHT_FILES",
    "CheckpointSource",
    "DatasetRecord",
    "EvaluationResults",
    "RunRecord",
    "default_output_dir",
    "is_complete_checkpoint_folder",
    "is_hub_id",
    "load_checkpoint",
    "load_image_processor",
    "portable",
    "read_json_object",
    "resolve_checkpoint",
    "save_model_and_processor",
]

CONFIG_FILE = "config.json"
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "model.safetensors.index.json")
"""Weight files a checkpoint folder may hold (safetensors only: nothing is unpickled)."""
PROCESSOR_FILE = "preprocessor_config.json"
MODEL_CARD_FILE = "README.md"
EVAL_RESULTS_FILE = "eval_results.json"
RUN_RECORD_FILE = "training_config.json"
TRAINER_STATE_FILE = "trainer_state.json"
FIGURES_DIR = "figures"
CHECKPOINTS_SUBDIR = "checkpoints"
"""Sub-folder of a training output folder with the Trainer's intermediate ``checkpoint-*``."""
EXTERNAL_SPLIT = "external"
"""Split name of an external validation: every image of a folder, none held out for training."""
EXTERNAL_EVALUATION_PREFIX = f"evaluation_{EXTERNAL_SPLIT}_"
"""A checkpoint's external evaluations lie in ``<prefix><slug of the data set's name>/``
(:func:`external_evaluation_folder`), each with its ``eval_results.json``."""
STUDY_PROBES_FILE = "study_probes.json"
"""The study's probes of a study checkpoint's model (:class:`StudyProbes`), beside its weights."""

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_hub_id(value: Any) -> bool:
    """Whether ``value`` looks like a Hub repository id (``namespace/name``), not a local path."""
    return (
        isinstance(value, str)
        and _HUB_ID.match(value) is not None
        and not value.startswith(".")
        and not Path(value).exists()
    )


def portable(value: Any) -> Any:
    """``value`` with every absolute local path replaced by its last component, recursively.

    Files that get pushed (run record, evaluation results, trainer state) must not reveal the
    folders of the machine that wrote them; the folder name is kept as a hint.
    """
    if isinstance(value, Mapping):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    if isinstance(value, Path) or (isinstance(value, str) and os.path.isabs(value)):
        return Path(value).name
    return value


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when the file is absent.

    Raises:
        ValueError: the file is not valid JSON or not an object (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _from_fields(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """``cls(**data)`` keeping known fields only (files from a newer version stay readable)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {item.name for item in dataclasses.fields(cls)}
    try:
        return cls(**{key: value for key, value in data.items() if key in names})
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from error


class _JsonRecord:
    """to/from JSON for the record dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without absolute local paths."""
        return portable(dataclasses.asdict(self))

    def save(self, path: str | Path) -> Path:
        """Write the record as indented JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path):
        """Read a record that :meth:`save` wrote.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not such a record (the message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return cls.from_dict(read_json_object(path), where=str(path))


@dataclass
class DatasetRecord(_JsonRecord):
    """What a run or an evaluation used as data, as structured fields.

    Attributes:
        kind: Dataset layout (``"radiography"``, ``"xray_ct"`` or a public composition).
        name: Human name of the dataset.
        source: Name of the data folder (never its absolute path), or ``"dataset object"``.
        synthetic: The images are the project's phantoms.
        image_size: Side of the square model input.
        split_sizes: Rows per split.
        class_counts: Rows per split and class.
        split_ratios: Train, validation and test fractions.
        split_seed: Seed of the split (and of label pairing).
        deduplicate: Whether near-duplicates were searched.
        near_duplicates: Their counts (groups, images, redundant copies...), or None.
        pairing: X-ray + CT pairing (``"label"``, ``"patient"``), or None.
        pairing_note: What that pairing means for a fused number, or None.
        sources: Rows per source collection, where the builder knew them.
        licenses: Rows per image licence, where the builder knew them.
        strata: Images per class, source, age group and view (the build summary's ``strata``).
        notes: The builder's caveats (composition, label mapping, merged patients, ...).
        lung_crop: What the lung crop did (U-Net, margin, images per split, images left
            uncropped and why), or None without one.
        hub_id: The Hub dataset repo holding these splits (``namespace/name``), where the data
            was pushed there (:func:`hf_covid.hub.push_dataset`) or loaded from it; the model
            card names it under ``datasets:``.
    """

    kind: str
    name: str
    source: str | None = None
    synthetic: bool = False
    image_size: int | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    split_ratios: list[float] | None = None
    split_seed: int | None = None
    deduplicate: bool | None = None
    near_duplicates: dict[str, Any] | None = None
    pairing: str | None = None
    pairing_note: str | None = None
    sources: dict[str, int] = field(default_factory=dict)
    licenses: dict[str, int] = field(default_factory=dict)
    strata: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lung_crop: dict[str, Any] | None = None
    hub_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "dataset record") -> DatasetRecord:
        """Read what :meth:`to_dict` wrote."""
        return _from_fields(cls, data, where)


@dataclass
class RunRecord(_JsonRecord):
    """``training_config.json``: the arguments a checkpoint was trained with, and its data.

    Attributes:
        model: The model arguments (``model_type``, ``config_overrides``, ``pretrained``...).
        data: The data arguments (folder name, classes, image size, split and pairing options).
        training: The ``TrainingArguments`` (tokens masked, no local paths).
        dataset: What the builders made of the data.
    """

    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    dataset: DatasetRecord | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = RUN_RECORD_FILE) -> RunRecord:
        """Read what :meth:`to_dict` wrote."""
        record = _from_fields(cls, data, where)
        if isinstance(record.dataset, Mapping):
            record.dataset = DatasetRecord.from_dict(record.dataset, f"{where} 'dataset'")
        return record

    @classmethod
    def read(cls, checkpoint_dir: str | Path) -> RunRecord | None:
        """The run record of a checkpoint folder, or None when it has none."""
        path = Path(checkpoint_dir) / RUN_RECORD_FILE
        return cls.load(path) if path.is_file() else None


@dataclass
class EvaluationResults(_JsonRecord):
    """``eval_results.json``, in one layout whether training or ``hf-covid evaluate`` wrote it.

    Attributes:
        model_type: ``config.model_type`` of the evaluated model.
        task: ``"image-classification"`` or ``"image-segmentation"``.
        split: The evaluated split.
        class_names: Class names in id order (None for segmentation).
        metrics: Metric name -> value (``hf_covid.evaluation.classification_metrics`` keys, or
            Dice / IoU), plus ``n_samples`` and ``confusion_matrix``.
        confidence_intervals: Metric name -> ``[low, high]`` (bootstrap) or None.
        confidence: Coverage of the intervals.
        n_resamples: Bootstrap resamples behind the intervals.
        interval_unit: What the bootstrap resampled: ``"patient"`` (every image of a drawn
            patient with it) where the data names patients, else ``"image"``.
        dataset: The evaluated data.
        checkpoint: What was evaluated (folder name or Hub id); None when training wrote it.
        training: The run summary (best epoch, steps, optimizer...), when training wrote it.
        per_source: Source -> short metric set, where the data names sources.
        per_age_group: Age group -> short metric set, where the data names age groups.
        masks: Where the lung masks a mask-reading or lung-cropping model got came from, or
            None when it needed none.
        published: The published number such work reports on this kind of data
            (`hf_covid.evaluation.anchors`), set beside the results, or None.
        modalities: Dual-input model: input combination -> metrics, intervals, inputs used.
        figures: Figure name -> path relative to the results file.
        hub_commit_url: Where the checkpoint was pushed, if it was.
        weights_sha256: The SHA-256 of the evaluated weights, for an external evaluation stored
            with its checkpoint: it describes the checkpoint only while the checkpoint holds
            those weights (:func:`hf_covid.checkpoint_results.weights_sha256`).
    """

    model_type: str
    task: str
    split: str
    class_names: list[str] | None
    metrics: dict[str, Any]
    confidence_intervals: dict[str, list[float] | None] = field(default_factory=dict)
    confidence: float = 0.95
    n_resamples: int = 1000
    interval_unit: str = "image"
    dataset: DatasetRecord | None = None
    checkpoint: str | None = None
    training: dict[str, Any] | None = None
    per_source: dict[str, dict[str, Any]] | None = None
    per_age_group: dict[str, dict[str, Any]] | None = None
    masks: str | None = None
    published: dict[str, Any] | None = None
    modalities: dict[str, dict[str, Any]] | None = None
    figures: dict[str, str] = field(default_factory=dict)
    hub_commit_url: str | None = None
    weights_sha256: str | None = None

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], where: str = EVAL_RESULTS_FILE
    ) -> EvaluationResults:
        """Read what :meth:`to_dict` wrote."""
        results = _from_fields(cls, data, where)
        if not isinstance(results.metrics, Mapping):
            raise ValueError(f"{where}: 'metrics' must be an object")
        if isinstance(results.dataset, Mapping):
            results.dataset = DatasetRecord.from_dict(results.dataset, f"{where} 'dataset'")
        return results

    @classmethod
    def read(cls, folder: str | Path) -> EvaluationResults | None:
        """The evaluation results in ``folder``, or None when it has none."""
        path = Path(folder) / EVAL_RESULTS_FILE
        return cls.load(path) if path.is_file() else None


def is_complete_checkpoint_folder(folder: str | Path) -> bool:
    """Whether a local folder holds ``config.json`` and safetensors weights."""
    folder = Path(folder)
    return (folder / CONFIG_FILE).is_file() and any(
        (folder / name).is_file() for name in WEIGHT_FILES
    )


@dataclass(frozen=True)
class CheckpointSource:
    """Where a checkpoint comes from: a local folder, or a Hub id at an optional revision.

    Attributes:
        location: A local checkpoint folder or a Hub model id.
        revision: The Hub revision (commit hash, branch or tag) to pin; None for a folder, or the
            repository's default branch.
    """

    location: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str | os.PathLike) -> CheckpointSource:
        """``"folder"``, ``"org/name"`` or ``"org/name@revision"`` as a source (an existing path
        with an ``@`` in it stays a path)."""
        text = str(text)
        location, at, revision = text.rpartition("@")
        if at and is_hub_id(location) and revision and not Path(text).exists():
            return cls(location, revision)
        return cls(text)

    def __str__(self) -> str:
        return f"{self.location}@{self.revision}" if self.revision else self.location


def resolve_checkpoint(
    checkpoint: str | os.PathLike | CheckpointSource, *, revision: str | None = None
) -> Path:
    """A local checkpoint folder: ``checkpoint`` itself, or a Hub repository downloaded (once,
    into the Hub cache) at its revision.

    Args:
        checkpoint: A folder, a Hub id, ``"org/name@revision"`` or a :class:`CheckpointSource`.
        revision: The Hub revision to pin, for a Hub id given without one.

    Raises:
        FileNotFoundError: the folder lacks ``config.json`` or safetensors weights, the path is
            neither a folder nor a Hub repository id, or the download failed.
        ValueError: two different revisions (in ``checkpoint`` and ``revision``).
    """
    if not isinstance(checkpoint, CheckpointSource):
        checkpoint = CheckpointSource.parse(checkpoint)
    if revision is not None and checkpoint.revision not in (None, revision):
        raise ValueError(f"checkpoint '{checkpoint}' given with another revision, {revision!r}")
    source = CheckpointSource(checkpoint.location, checkpoint.revision or revision)
    path = Path(source.location).expanduser()
    if not path.exists():
        if not is_hub_id(source.location):
            raise FileNotFoundError(f"checkpoint '{source}' is neither a folder nor a Hub id")
        try:
            path = Path(snapshot_download(source.location, revision=source.revision))
        except Exception as error:  # offline, unknown repository or revision, no access
            raise FileNotFoundError(
                f"could not download checkpoint '{source}' from the Hub: {error}"
            ) from error
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint '{path}' is not a folder")
    missing = []
    if not (path / CONFIG_FILE).is_file():
        missing.append(f"{CONFIG_FILE} (the model configuration)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"{' or '.join(WEIGHT_FILES)} (the weights)")
    if missing:
        raise FileNotFoundError(f"checkpoint folder '{path}' lacks {' and '.join(missing)}")
    return path


def default_output_dir(
    checkpoint: str | Path, folder: str, output_dir: str | Path | None = None
) -> Path:
    """``output_dir`` if given, else ``<checkpoint>/<folder>`` for a local checkpoint, else
    ``./<folder>_<repository name>`` (never inside the Hub cache)."""
    if output_dir is not None:
        return Path(output_dir)
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        return local / folder
    return Path.cwd() / f"{folder}_{str(checkpoint).rsplit('/', 1)[-1]}"


def save_model_and_processor(
    model: PreTrainedModel,
    processor: ChestImageProcessor,
    folder: str | Path,
    *,
    lung_segmenter: tuple[PreTrainedModel, ChestImageProcessor] | None = None,
) -> Path:
    """Save a model and its image processor as a checkpoint folder's core files.

    The model's ``save_pretrained`` writes the weights, ``config.json`` and the remote-code files;
    the processor is the one its family saves
    (:meth:`~hf_covid.registry.ModelFamily.checkpoint_image_processor`: a stock transformers
    processor for the ResNet, so that its checkpoint needs no remote code).

    Args:
        model: The trained model.
        processor: Its image processor.
        folder: The checkpoint folder.
        lung_segmenter: The lung U-Net (model, processor) whose masks the model was trained
            with, saved as a checkpoint of its own in `LUNG_SEGMENTER_FOLDER`.

    Returns:
        The folder.
    """
    folder = Path(folder)
    family = get_model_family(model.config.model_type)
    model.save_pretrained(folder)
    family.checkpoint_image_processor(processor).save_pretrained(folder)
    if lung_segmenter is not None:
        save_model_and_processor(*lung_segmenter, folder / LUNG_SEGMENTER_FOLDER)
    return folder


def load_checkpoint(
    checkpoint: str | os.PathLike | CheckpointSource, *, revision: str | None = None
) -> tuple[PreTrainedModel, Any | None]:
    """The model of a checkpoint folder or Hub id (at ``revision``), and its image processor.

    The model loads with the Auto class of its registered family (safetensors only); our own
    ``ChestImageProcessor`` is used directly, so no remote code runs for it, and the stock
    processor of a ResNet checkpoint becomes the equivalent ``ChestImageProcessor`` (which reads
    DICOM arrays and masks as the rest of hf_covid expects).

    Returns:
        ``(model, processor)``; the processor is None when there is no ``preprocessor_config.json``.

    Raises:
        FileNotFoundError: see :func:`resolve_checkpoint`.
        KeyError: the checkpoint's ``model_type`` is no registered family.
    """
    path = resolve_checkpoint(checkpoint, revision=revision)
    family = get_model_family(AutoConfig.from_pretrained(path).model_type)
    model = family.auto_model_class.from_pretrained(path, use_safetensors=True)
    return model, load_image_processor(path)


def load_image_processor(folder: str | Path) -> ChestImageProcessor | None:
    """The ``ChestImageProcessor`` saved in a local folder (a checkpoint, an ONNX export): ours
    read directly (no remote code), a stock ``ViTImageProcessor`` (a ResNet checkpoint) as its
    equivalent; None without a ``preprocessor_config.json``."""
    folder = Path(folder)
    processor_file = folder / PROCESSOR_FILE
    if not processor_file.is_file():
        return None
    kind = read_json_object(processor_file).get("image_processor_type")
    loader = ChestImageProcessor if kind == ChestImageProcessor.__name__ else AutoImageProcessor
    processor = loader.from_pretrained(folder)
    if isinstance(processor, ViTImageProcessor):
        processor = ChestImageProcessor.from_stock_image_processor(processor)
    return processor
