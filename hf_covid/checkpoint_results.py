"""What a checkpoint folder holds besides its own test results: its external evaluations and the
study's probes of its model.

``hf-covid evaluate CHECKPOINT --data_dir FOLDER --dataset_name NAME`` stores the evaluation on
an external folder with a local checkpoint, in ``evaluation_external_<slug of NAME>/``
(:func:`external_evaluation_folder`); :func:`read_external_evaluations` is the one reader, used
by the model card and by the app, and it keeps only the results on the weights the checkpoint
holds now (:func:`weights_sha256`). A checkpoint of the real-data study also holds the study's
probes of its model, ``study_probes.json`` (:class:`StudyProbes`). The file names are constants
of :mod:`hf_covid.checkpoints`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoints import (
    EVAL_RESULTS_FILE,
    EXTERNAL_EVALUATION_PREFIX,
    EXTERNAL_SPLIT,
    STUDY_PROBES_FILE,
    WEIGHT_FILES,
    EvaluationResults,
    _from_fields,
    _JsonRecord,
)

__all__ = [
    "StudyProbes",
    "dataset_slug",
    "external_evaluation_folder",
    "read_external_evaluations",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def dataset_slug(name: str) -> str:
    """``name`` as a folder-name part: lower case, each run of other characters than letters and
    digits one ``_`` (``"Site A (Spain)"`` -> ``"site_a_spain"``).

    Raises:
        ValueError: ``name`` has no letter or digit.
    """
    slug = _NOT_SLUG.sub("_", str(name).lower()).strip("_")
    if not slug:
        raise ValueError(f"data set name {name!r} needs at least one letter or digit")
    return slug


def external_evaluation_folder(dataset_name: str) -> str:
    """The sub-folder of a checkpoint that holds its evaluation on the external data set
    ``dataset_name``: ``evaluation_external_<slug>`` (see :func:`dataset_slug`); names with the
    same slug share it, so evaluating again under the same name replaces the results."""
    return EXTERNAL_EVALUATION_PREFIX + dataset_slug(dataset_name)


def weights_sha256(checkpoint_dir: str | Path) -> str | None:
    """The SHA-256 of a checkpoint folder's safetensors weights (``model.safetensors``, or the
    index and every shard it names, in order); None without weights."""
    folder = Path(checkpoint_dir)
    single, index = (folder / name for name in WEIGHT_FILES)
    if single.is_file():
        files = [single]
    elif index.is_file():
        shards = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()
        files = [index, *(folder / name for name in sorted(set(shards)))]
    else:
        return None
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_external_evaluations(checkpoint_dir: str | Path) -> dict[str, EvaluationResults]:
    """Data set name -> the external evaluation stored with a checkpoint folder, by name.

    Reads every ``evaluation_external_<slug>/eval_results.json``
    (:func:`external_evaluation_folder`, written by ``hf-covid evaluate CHECKPOINT --data_dir
    FOLDER --dataset_name NAME``); the model card and the app's provenance both read them here.

    Results measured on other weights than the checkpoint holds now (it was trained again in
    the same folder: their ``weights_sha256`` differs or is missing) are left out, with a
    warning naming them: they no longer describe this model.

    Returns:
        ``{name: EvaluationResults}``, sorted by name; {} when there is none.

    Raises:
        ValueError: such a file is not the results of an external evaluation, or holds those of
            a data set whose folder is another (the message names the file).
    """
    found: dict[str, EvaluationResults] = {}
    pattern = f"{EXTERNAL_EVALUATION_PREFIX}*/{EVAL_RESULTS_FILE}"
    paths = sorted(Path(checkpoint_dir).glob(pattern))
    current = weights_sha256(checkpoint_dir) if paths else None
    for path in paths:
        results = EvaluationResults.load(path)
        name = results.dataset.name if results.dataset is not None else None
        if results.split != EXTERNAL_SPLIT or not name:
            raise ValueError(
                f"{path}: not the results of an external evaluation (split {results.split!r}, "
                f"data set {name!r}); evaluate with --dataset_name NAME"
            )
        expected = external_evaluation_folder(name)
        if expected != path.parent.name:
            raise ValueError(
                f"{path}: holds the results on {name!r}, which belong in {expected}/; move them "
                "there or evaluate again with --dataset_name"
            )
        if results.weights_sha256 is None or results.weights_sha256 != current:
            logger.warning(
                "leaving out %s: measured on other weights than %s holds now; evaluate again",
                path,
                checkpoint_dir,
            )
            continue
        found[name] = results
    return dict(sorted(found.items()))


def _list_of_objects(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ValueError(f"{where}: expected a list of objects, got {value!r:.80}")
    return [dict(item) for item in value]


def _picked(values: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: values[key] for key in keys if key in values}


_PROBE_SCORE_KEYS = ("metrics", "confidence_intervals")


@dataclass
class StudyProbes(_JsonRecord):
    """``study_probes.json``: what the real-data study (``hf-covid study``) measured for the
    model of one study checkpoint, shown on its model card.

    The collection probe and the leave-one-source-out probes are small CNNs trained on the
    images of the model's configuration, as the model sees them (crop, standardisation): they
    measure what those images let a model learn, not this model. The lungs-only drop and the
    hospital films are this model's own (the films are scored by a copy of it trained without
    them when its composition holds them). Intervals resample patients.

    Attributes:
        configuration: Key of the study configuration (``"1_adult_controls"``).
        title: The configuration's title.
        model: The model family's key.
        collection_probe: Per image region (``whole``, ``outside_lungs``, ``lungs_only``):
            ``region``, ``metrics`` (``balanced_accuracy``, ``roc_auc``, ...) and
            ``confidence_intervals`` of a probe telling the collections apart.
        lungs_only: ``accuracy_drop`` (accuracy on whole images minus with everything outside
            the lungs blanked) and ``accuracy_drop_interval``, or None.
        hospital_films: Adult COVID hospital films of an unseen hospital against adult Normal
            images: ``metrics`` (``covid_sensitivity``, ``specificity_COVID``,
            ``roc_auc_COVID``), ``confidence_intervals``, ``n_films``, ``n_controls`` and
            ``trained_without_films``; or None.
        leave_one_source_out: Per COVID source held out of a probe's training: ``source``,
            ``n_held_out_covid``, ``held_out_source`` (``metrics`` with ``covid_sensitivity``,
            ``roc_auc``, ``balanced_accuracy``, and ``confidence_intervals``) and, where
            measured, ``in_distribution`` (the same on the test split without that source).
    """

    configuration: str
    title: str | None = None
    model: str | None = None
    collection_probe: list[dict[str, Any]] = field(default_factory=list)
    lungs_only: dict[str, Any] | None = None
    hospital_films: dict[str, Any] | None = None
    leave_one_source_out: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = STUDY_PROBES_FILE) -> StudyProbes:
        """Read what :meth:`to_dict` wrote.

        Raises:
            ValueError: no ``configuration``, or a field of the wrong shape (named).
        """
        configuration = data.get("configuration") if isinstance(data, Mapping) else ""
        if isinstance(data, Mapping) and (not isinstance(configuration, str) or not configuration):
            raise ValueError(f"{where}: 'configuration' must name the study configuration")
        probes = _from_fields(cls, data, where)  # a value that is no object: named there
        for name in ("collection_probe", "leave_one_source_out"):
            setattr(probes, name, _list_of_objects(getattr(probes, name), f"{where} '{name}'"))
        for name in ("lungs_only", "hospital_films"):
            value = getattr(probes, name)
            if value is not None and not isinstance(value, Mapping):
                raise ValueError(f"{where} '{name}': expected an object or null, got {value!r:.80}")
        for row in probes.collection_probe:
            if not isinstance(row.get("region"), str) or not isinstance(
                row.get("metrics"), Mapping
            ):
                raise ValueError(f"{where} 'collection_probe': each row needs region and metrics")
        for row in probes.leave_one_source_out:
            if not isinstance(row.get("source"), str) or not isinstance(
                row.get("held_out_source"), Mapping
            ):
                raise ValueError(
                    f"{where} 'leave_one_source_out': each row needs source and held_out_source"
                )
        return probes

    @classmethod
    def read(cls, checkpoint_dir: str | Path) -> StudyProbes | None:
        """The study probes of a checkpoint folder, or None when it has none."""
        path = Path(checkpoint_dir) / STUDY_PROBES_FILE
        return cls.load(path) if path.is_file() else None

    @classmethod
    def from_study_results(cls, configuration: Mapping[str, Any], model: str) -> StudyProbes:
        """The probes of ``model`` from one configuration of the study's ``results.json``.

        Args:
            configuration: ``results["configurations"][i]`` (``key``, ``title``,
                ``collection_probe``, ``leave_one_source_out`` and ``models``).
            model: The family key in ``configuration["models"]``; a model with
                ``hospital_films_train_wall_s`` had its films scored by a copy trained without
                them.

        Raises:
            ValueError: the configuration has no results for ``model``.
        """
        measured = (configuration.get("models") or {}).get(model)
        if not isinstance(measured, Mapping):
            raise ValueError(
                f"study configuration {configuration.get('key')!r} has no results for {model!r}"
            )
        lungs = next(
            (
                condition
                for condition in (measured.get("lungs_only") or {}).get("conditions", [])
                if "accuracy_drop" in condition
            ),
            None,
        )
        films = measured.get("hospital_films")
        probe = configuration.get("collection_probe") or {}
        held_out = (configuration.get("leave_one_source_out") or {}).get("held_out", [])
        return cls(
            configuration=configuration["key"],
            title=configuration.get("title"),
            model=model,
            collection_probe=[
                _picked(row, ("region", *_PROBE_SCORE_KEYS)) for row in probe.get("conditions", [])
            ],
            lungs_only=None
            if lungs is None
            else _picked(lungs, ("accuracy_drop", "accuracy_drop_interval")),
            hospital_films=None
            if films is None
            else _picked(films, ("n_films", "n_controls", *_PROBE_SCORE_KEYS))
            | {"trained_without_films": "hospital_films_train_wall_s" in measured},
            leave_one_source_out=[
                _picked(row, ("source", "n_held_out_covid", "held_out_source", "in_distribution"))
                for row in held_out
            ],
        )
