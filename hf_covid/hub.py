"""Publishing checkpoints and datasets to the Hugging Face Hub.

Uploads go through :class:`huggingface_hub.HfApi` at ``HF_ENDPOINT`` (default
https://huggingface.co) with the token of the usual sources (the ``token`` argument, ``HF_TOKEN``,
or ``hf auth login``); the token is never logged or put in a card or an error message. The cards
are rendered offline by :mod:`hf_covid.model_card` and :mod:`hf_covid.dataset_card` (re-exported
here). A dataset holding images whose licence forbids an open copy (NC, ND, unstated) is pushed
publicly only when told explicitly. Example::

    from hf_covid.hub import push_checkpoint, push_dataset

    push_checkpoint("outputs/demo/checkpoints/cnn_lstm", "me/covid-cnn-lstm", private=True)
    push_dataset(dataset, "me/covid-radiography-splits", private=True)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import filter_repo_objects

from hf_covid.checkpoints import (
    CONFIG_FILE,
    EVAL_RESULTS_FILE,
    EXTERNAL_EVALUATION_PREFIX,
    FIGURES_DIR,
    MODEL_CARD_FILE,
    WEIGHT_FILES,
    read_json_object,
)
from hf_covid.data.public.licenses import check_publishable
from hf_covid.dataset_card import render_dataset_card
from hf_covid.model_card import (
    WIDGET_EXAMPLE_FILE,
    render_model_card,
    widget_example_png,
    write_model_card,
)

__all__ = [
    "UPLOAD_ALLOW_PATTERNS",
    "UPLOAD_IGNORE_PATTERNS",
    "check_checkpoint",
    "publishable_files",
    "push_checkpoint",
    "push_dataset",
    "render_dataset_card",
    "render_model_card",
    "write_model_card",
]

logger = logging.getLogger(__name__)

UPLOAD_ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.py",
    "*.md",
    "*.txt",
    "figures/*",
    f"{EXTERNAL_EVALUATION_PREFIX}*/{EVAL_RESULTS_FILE}",
]
"""What of a checkpoint's top-level files, ``figures/`` and external evaluations is uploaded
(other sub-folders never are)."""

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
    top-level weights, configs, remote code and JSON results, ``figures/`` and the results of
    each external evaluation (``evaluation_external_<name>/eval_results.json``, which the card
    and the app read); never other sub-folders (the Trainer's intermediate checkpoints) nor
    pickles."""
    folder = Path(folder)
    candidates = [
        *folder.iterdir(),
        *folder.glob(f"{FIGURES_DIR}/*"),
        *folder.glob(f"{EXTERNAL_EVALUATION_PREFIX}*/{EVAL_RESULTS_FILE}"),
    ]
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
    processor config, ``eval_results.json`` and the other JSON files, ``figures/``, the external
    evaluations' ``eval_results.json``, a model
    card rendered for ``repo_id`` (the folder's own README.md is replaced by it) and the card
    widget's example image (a synthetic phantom, :data:`~hf_covid.model_card.WIDGET_EXAMPLE_FILE`). Pickles
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
    uploaded = {name.split("/", 1)[0] for name in published} | {MODEL_CARD_FILE, FIGURES_DIR}
    skipped = sorted(path.name for path in folder.iterdir() if path.name not in uploaded)
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
    if card.data.get("widget"):
        operations.append(
            CommitOperationAdd(
                path_in_repo=WIDGET_EXAMPLE_FILE, path_or_fileobj=widget_example_png()
            )
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
    allow_restricted: bool = False,
) -> str:
    """Upload a built ``DatasetDict`` to a Hub dataset repo as Parquet, with its dataset card.

    The card (:func:`render_dataset_card`) is committed first; ``DatasetDict.push_to_hub`` then
    uploads the Parquet shards (images embedded) and adds the ``dataset_info``/``configs``
    metadata to that card, so ``datasets.load_dataset(repo_id)`` works.

    Licence gate: a public push of a dataset holding images whose licence is non-commercial
    (NC), forbids derivatives (ND), or is unstated or unrecognised (the public-collection
    compositions carry a licence per image) is refused before any upload, unless
    ``allow_restricted=True`` says that the caller checked that every source allows it
    (:func:`hf_covid.data.public.licenses.check_publishable`). A private push of them is allowed,
    with a warning.

    Args:
        dataset_dict: a ``datasets.DatasetDict``.
        repo_id: ``namespace/name`` of the dataset repo.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token; defaults to ``HF_TOKEN`` or the token saved by ``hf auth login``.
        pretty_name, synthetic: see :func:`render_dataset_card`.
        max_shard_size: passed to ``push_to_hub`` (e.g. "500MB").
        allow_restricted: push restricted images to a public repo anyway.

    Returns:
        The URL of the last commit.

    Raises:
        RestrictedLicenseError: a public push of restricted images without
            ``allow_restricted`` (a ``PermissionError``; nothing is uploaded).
        PermissionError: no token, or the Hub refused it.
    """
    check_publishable(dataset_dict, private=private, allow_restricted=allow_restricted)
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
