"""ONNX export of every hf_covid model, checked against PyTorch under onnxruntime.

:func:`export_onnx` writes ``model.onnx`` with the inputs of the model's ``forward`` as named
inputs (``pixel_values``; ``lung_mask`` for the dual-channel model; ``pixel_values``,
``ct_pixel_values``, ``xray_available`` and ``ct_available`` for the dual-input model) and its
outputs as named outputs (``logits``; the dual-input model adds ``modalities_used``), a dynamic
batch axis and, where the model allows it, dynamic height and width. Beside it go the model's
``config.json``, its ``preprocessor_config.json`` and ``onnx_export.json`` (:class:`OnnxExport`:
exporter, opset, axes and the difference to PyTorch measured after export), so that the folder
describes itself. A checkpoint with its own lung U-Net (`LUNG_SEGMENTER_FOLDER`: the masks its
lung crop or mask input was trained with) gets that U-Net exported beside it, in the same
sub-folder, so that :class:`hf_covid.serving.onnx_predictor.OnnxPredictor` crops as training and
serving do. :func:`verify_onnx` runs onnxruntime and compares with PyTorch.

Exporters: each family's record names the exporter that handles it
(:attr:`hf_covid.registry.ModelFamily.onnx_exporter`) and whether its width may stay dynamic
(:attr:`~hf_covid.registry.ModelFamily.onnx_dynamic_width`). The torch.export-based exporter
(``torch.onnx.export(..., dynamo=True)``, the default since torch 2.9; the TorchScript one is
deprecated) exports four of the five models. It cannot trace the dual-input model, whose
``forward`` checks the availability flags with a Python ``if`` on tensor values ("neither an
X-ray nor a CT"); that model goes through the TorchScript exporter, which evaluates the check
once on the all-available example and leaves it out of the graph (:func:`onnx_inputs` makes the
same check before a run). The TorchScript exporter in turn cannot export the CNN+LSTM with any
dynamic axis (its adaptive row pooling). The CNN+LSTM keeps a fixed width:
``AdaptiveAvgPool2d((None, sequence_width))`` is exported as a pooling kernel computed from the
example's width, so only its batch and height (the LSTM's sequence length) are dynamic.

The dual-input graph always takes all four inputs: for a missing modality, :func:`onnx_inputs`
passes zeros of the other image's shape with its flag False, which gives the same logits as
PyTorch given ``None`` (a missing modality's features are zeroed before the fusion).

Nothing here reaches the network: checkpoints are read from local folders only.

Example::

    >>> from hf_covid.export import export_onnx, onnx_inputs, onnx_session
    >>> path = export_onnx("outputs/demo/checkpoints/dual_input", "exports/dual_input")
    >>> session = onnx_session(path)
    >>> logits, used = session.run(None, onnx_inputs({"ct_pixel_values": ct}, path))  # CT only
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from .checkpoints import LUNG_SEGMENTER_FOLDER, load_checkpoint
from .registry import MODALITY_FLAGS, example_inputs, get_model_family

__all__ = [
    "EXPORT_INFO_FILE_NAME",
    "ONNX_FILE_NAME",
    "OnnxExport",
    "default_exporter",
    "export_onnx",
    "main",
    "onnx_inputs",
    "onnx_session",
    "verify_onnx",
]

ONNX_FILE_NAME = "model.onnx"
"""File name of the graph when :func:`export_onnx` is given a folder."""

EXPORT_INFO_FILE_NAME = "onnx_export.json"
"""File beside the graph describing the export (:class:`OnnxExport`)."""

Exporter = Literal["dynamo", "torchscript"]

# Outputs exported when the model returns them, in this order.
_OUTPUT_NAMES = ("logits", "modalities_used")
# Own height/width axis names for inputs whose size may differ from the X-ray's.
_AXIS_PREFIXES = {"ct_pixel_values": "ct_"}
# Batch of the traced example: torch.export specialises axes of size 1, so not 1; and the
# post-export check runs another batch size to catch an axis the exporter fixed.
_EXPORT_BATCH_SIZE = 2
_CHECK_BATCH_SIZE = 3
_DEFAULT_IMAGE_SIZE = 224


@dataclass
class OnnxExport:
    """What ``onnx_export.json`` records beside an exported graph.

    Attributes:
        model_type: ``config.model_type`` of the exported model.
        onnx_file: File name of the graph, relative to this record.
        exporter: ``"dynamo"`` (torch.export-based) or ``"torchscript"``.
        opset: ONNX opset of the default domain.
        input_names: Graph inputs, in order.
        output_names: Graph outputs, in order.
        dynamic_axes: Per input, the dynamic axes (index -> name); other axes are fixed.
        input_shapes: Shapes of the traced example (the fixed axes take these sizes).
        max_abs_difference: Per output, the largest difference to PyTorch measured after export
            (on another batch size, and another image size where dynamic); empty if not checked.
        torch_version: The torch that exported it.
    """

    model_type: str
    onnx_file: str
    exporter: str
    opset: int
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    input_shapes: dict[str, list[int]]
    max_abs_difference: dict[str, float]
    torch_version: str

    def to_json_file(self, path: str | Path) -> None:
        """Write the record as JSON."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def from_json_file(cls, path: str | Path) -> OnnxExport:
        """Read a record written by :meth:`to_json_file`."""
        fields = json.loads(Path(path).read_text())
        fields["dynamic_axes"] = {
            name: {int(axis): label for axis, label in axes.items()}
            for name, axes in fields["dynamic_axes"].items()
        }
        return cls(**fields)


def _import_optional(name: str, purpose: str) -> ModuleType:
    """Import an optional dependency of the ``onnx`` extra, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the '{name}' package, part of the onnx extra: "
            "pip install 'hf_covid[onnx]'"
        ) from error


def default_exporter(model_type: str) -> Exporter:
    """The exporter that handles ``model_type``: its family's ``onnx_exporter``."""
    return get_model_family(model_type).onnx_exporter


class _OnnxForward(nn.Module):
    """The model with positional tensor inputs and a tuple of named outputs, as exporters need."""

    def __init__(
        self, model: PreTrainedModel, input_names: Sequence[str], output_names: Sequence[str]
    ):
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, inputs, strict=True)), return_dict=True)
        return tuple(outputs[name] for name in self.output_names)


def _example_inputs(
    model: PreTrainedModel, batch_size: int, height: int, width: int
) -> dict[str, torch.Tensor]:
    """Seeded random inputs for every name the model's family feeds its ``forward``."""
    generator = torch.Generator().manual_seed(0)
    return example_inputs(model.config, batch_size, height, width=width, generator=generator)


def _dynamic_axes(
    model_type: str,
    inputs: Mapping[str, torch.Tensor],
    dynamic_batch: bool,
    dynamic_image_size: bool,
) -> dict[str, dict[int, str]]:
    """Per input, its dynamic axes (index -> name); equal names are one axis."""
    axes = {}
    for name, tensor in inputs.items():
        named = {0: "batch"} if dynamic_batch else {}
        if tensor.ndim == 4 and dynamic_image_size:
            prefix = _AXIS_PREFIXES.get(name, "")
            named[2] = f"{prefix}height"
            if get_model_family(model_type).onnx_dynamic_width:
                named[3] = f"{prefix}width"
        axes[name] = named
    return axes


def _export_graph(
    wrapper: _OnnxForward,
    inputs: Mapping[str, torch.Tensor],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    onnx_path: Path,
    exporter: Exporter,
    opset: int | None,
) -> None:
    """Run the chosen torch exporter and write one self-contained ``.onnx`` file."""
    _import_optional("onnx", "ONNX export")
    names = {"input_names": list(inputs), "output_names": list(wrapper.output_names)}
    if exporter == "dynamo":
        _import_optional("onnxscript", "ONNX export")
        dims = {
            label: torch.export.Dim(label)
            for axes in dynamic_axes.values()
            for label in axes.values()
        }
        # One spec per positional input, inside a tuple for the `*inputs` parameter.
        shapes = tuple(
            {axis: dims[label] for axis, label in dynamic_axes[name].items()} for name in inputs
        )
        torch.onnx.export(
            wrapper,
            tuple(inputs.values()),
            onnx_path,
            dynamic_shapes=(shapes,),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
            **names,
        )
    elif exporter == "torchscript":
        output_axes = {0: "batch"} if any(0 in axes for axes in dynamic_axes.values()) else {}
        torch.onnx.export(
            wrapper,
            tuple(inputs.values()),
            onnx_path,
            dynamic_axes={
                **dynamic_axes,
                **{name: output_axes for name in wrapper.output_names},
            },
            opset_version=opset,
            dynamo=False,
            **names,
        )
    else:
        raise ValueError(f"unknown exporter {exporter!r}; expected 'dynamo' or 'torchscript'")


def _load_model(
    checkpoint_or_model: str | Path | PreTrainedModel, processor: Any | None
) -> tuple[PreTrainedModel, Any | None]:
    if isinstance(checkpoint_or_model, PreTrainedModel):
        return checkpoint_or_model, processor
    folder = Path(checkpoint_or_model).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"checkpoint '{checkpoint_or_model}' is not a local folder; export_onnx reads local "
            "checkpoints only (download a Hub checkpoint first with "
            "huggingface_hub.snapshot_download)"
        )
    model, saved_processor = load_checkpoint(folder)
    return model, processor if processor is not None else saved_processor


def _export_size(
    image_size: int | tuple[int, int] | None, processor: Any | None
) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    if image_size is not None:
        return tuple(image_size)
    size = getattr(processor, "size", None)
    if size is not None and size.get("height") and size.get("width"):
        return int(size["height"]), int(size["width"])
    return _DEFAULT_IMAGE_SIZE, _DEFAULT_IMAGE_SIZE


def _onnx_opset(onnx_path: Path) -> int:
    onnx = _import_optional("onnx", "Reading an ONNX graph")
    graph = onnx.load(str(onnx_path), load_external_data=False)
    return next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))


def export_onnx(
    checkpoint_or_model: str | Path | PreTrainedModel,
    output_dir_or_path: str | Path,
    *,
    opset: int | None = None,
    dynamic_batch: bool = True,
    dynamic_image_size: bool = True,
    image_size: int | tuple[int, int] | None = None,
    processor: Any | None = None,
    exporter: Exporter | None = None,
    verify: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export a model to ONNX, with its config and processor beside it.

    Args:
        checkpoint_or_model: A local checkpoint folder, or a model instance (put in eval mode).
        output_dir_or_path: A ``.onnx`` file path, or a folder that receives ``model.onnx``.
        opset: ONNX opset (the exporter's default when None).
        dynamic_batch: Make the batch axis dynamic.
        dynamic_image_size: Make height and width dynamic where the model allows it (the
            CNN+LSTM keeps its width).
        image_size: Height and width of the traced example (the fixed sizes of a static axis);
            default the processor's ``size``, else 224.
        processor: Image processor to save beside the graph (default: the checkpoint's).
        exporter: ``"dynamo"`` or ``"torchscript"``; default :func:`default_exporter`.
        verify: Compare onnxruntime with PyTorch after export, on another batch size (and image
            size where dynamic), and record the differences in ``onnx_export.json``.
        atol: Largest absolute difference that :func:`verify_onnx` accepts.

    Returns:
        The path of the ``.onnx`` file.

    Raises:
        FileNotFoundError: the checkpoint is not a local folder.
        ImportError: onnx, onnxscript or onnxruntime is missing (the ``onnx`` extra).
        ValueError: onnxruntime's outputs differ from PyTorch's by more than ``atol``.
    """
    model, processor = _load_model(checkpoint_or_model, processor)
    model.eval()
    segmenter = (
        None
        if isinstance(checkpoint_or_model, PreTrainedModel)
        else Path(checkpoint_or_model).expanduser() / LUNG_SEGMENTER_FOLDER
    )
    model_type = model.config.model_type
    exporter = exporter or default_exporter(model_type)
    height, width = _export_size(image_size, processor)
    inputs = _example_inputs(model, _EXPORT_BATCH_SIZE, height, width)
    with torch.no_grad():
        outputs = model(**inputs, return_dict=True)
    output_names = [name for name in _OUTPUT_NAMES if outputs.get(name) is not None]
    dynamic_axes = _dynamic_axes(model_type, inputs, dynamic_batch, dynamic_image_size)

    output = Path(output_dir_or_path)
    onnx_path = output if output.suffix == ".onnx" else output / ONNX_FILE_NAME
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        _export_graph(
            _OnnxForward(model, inputs, output_names),
            inputs,
            dynamic_axes,
            onnx_path,
            exporter,
            opset,
        )
    model.config.save_pretrained(onnx_path.parent)
    if processor is not None:
        processor.save_pretrained(onnx_path.parent)
    if segmenter is not None and segmenter.is_dir():
        export_onnx(segmenter, onnx_path.parent / LUNG_SEGMENTER_FOLDER, opset=opset, verify=verify)

    differences = {}
    if verify:
        check_batch = _CHECK_BATCH_SIZE if dynamic_batch else _EXPORT_BATCH_SIZE
        check_height = height + 16 if dynamic_image_size else height
        check_width = (
            width + 16 if dynamic_image_size and 3 in dynamic_axes["pixel_values"] else width
        )
        check_inputs = _example_inputs(model, check_batch, check_height, check_width)
        differences = verify_onnx(model, onnx_path, check_inputs, atol=atol)
    OnnxExport(
        model_type=model_type,
        onnx_file=onnx_path.name,
        exporter=exporter,
        opset=_onnx_opset(onnx_path),
        input_names=list(inputs),
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        input_shapes={name: list(tensor.shape) for name, tensor in inputs.items()},
        max_abs_difference=differences,
        torch_version=torch.__version__,
    ).to_json_file(onnx_path.parent / EXPORT_INFO_FILE_NAME)
    return onnx_path


def onnx_session(onnx_path: str | Path, num_threads: int | None = None):
    """An onnxruntime CPU session for an exported graph.

    Args:
        onnx_path: The ``.onnx`` file.
        num_threads: Intra-op threads; default ``torch.get_num_threads()``, so that onnxruntime
            and eager PyTorch compare on the same threads. Inter-op: one (sequential execution).
    """
    onnxruntime = _import_optional("onnxruntime", "Running an ONNX graph")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _graph_input_names(graph: Any) -> list[str]:
    if hasattr(graph, "get_inputs"):
        return [node.name for node in graph.get_inputs()]
    return OnnxExport.from_json_file(Path(graph).parent / EXPORT_INFO_FILE_NAME).input_names


def onnx_inputs(
    inputs: Mapping[str, torch.Tensor | np.ndarray | None], graph: Any
) -> dict[str, np.ndarray]:
    """The feed of an onnxruntime run from the keyword inputs one would give the PyTorch model.

    For the dual-input model, a missing image (absent or None) becomes zeros of the other image's
    shape and its flag defaults to False (a given image's to True), as the model's ``forward``
    treats ``None``; the checks the graph lacks are made here.

    Args:
        inputs: Model inputs by name (tensors or arrays).
        graph: An onnxruntime session, or the path of a graph written by :func:`export_onnx`.

    Raises:
        ValueError: an input the graph does not take, or one it needs that is missing; for the
            dual-input model, no image, or a sample marked as having neither image.
    """
    input_names = _graph_input_names(graph)
    arrays = {
        name: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        for name, value in inputs.items()
        if value is not None
    }
    unknown = sorted(set(arrays) - set(input_names))
    if unknown:
        raise ValueError(f"the ONNX graph takes {input_names}, not {unknown}")
    if set(MODALITY_FLAGS.values()) <= set(input_names):
        _fill_missing_modality(arrays)
    missing = [name for name in input_names if name not in arrays]
    if missing:
        raise ValueError(f"the ONNX graph needs {missing} (it takes {input_names})")
    return {name: arrays[name] for name in input_names}


def _fill_missing_modality(arrays: dict[str, np.ndarray]) -> None:
    given = [image for image in MODALITY_FLAGS if image in arrays]
    if not given:
        raise ValueError(
            "the dual-input model needs at least one image: pass pixel_values (X-ray), "
            "ct_pixel_values (CT) or both"
        )
    reference = arrays[given[0]]
    for image, flag in MODALITY_FLAGS.items():
        present = image in arrays
        if flag not in arrays:
            arrays[flag] = np.full(len(reference), present)
        arrays[flag] = arrays[flag].astype(bool)
        if not present:
            if arrays[flag].any():
                raise ValueError(f"{flag} marks samples as available but {image} was not passed")
            arrays[image] = np.zeros_like(reference)
    neither = ~np.logical_or(*(arrays[flag] for flag in MODALITY_FLAGS.values()))
    if neither.any():
        raise ValueError(
            f"samples {np.flatnonzero(neither).tolist()} have neither an X-ray nor a CT "
            "(xray_available and ct_available are both False)"
        )


def verify_onnx(
    model: PreTrainedModel,
    onnx_path: str | Path,
    inputs: Mapping[str, torch.Tensor | None],
    atol: float = 1e-4,
) -> dict[str, float]:
    """Run the graph under onnxruntime and compare every output with the PyTorch model's.

    Args:
        model: The PyTorch model (put in eval mode).
        onnx_path: Its exported graph.
        inputs: Keyword inputs of the model (for the dual-input model either image may be None).
        atol: Largest absolute difference accepted.

    Returns:
        Per output name, the largest absolute difference.

    Raises:
        ValueError: an output whose shape differs or whose difference exceeds ``atol``.
    """
    session = onnx_session(onnx_path)
    feed = onnx_inputs(inputs, session)
    model.eval()
    with torch.no_grad():
        expected = model(**{k: v for k, v in inputs.items() if v is not None}, return_dict=True)
    output_names = [node.name for node in session.get_outputs()]
    differences = {}
    for name, actual in zip(output_names, session.run(output_names, feed), strict=True):
        reference = expected[name].detach().cpu().numpy()
        if actual.shape != reference.shape:
            raise ValueError(
                f"{onnx_path}: output '{name}' has shape {actual.shape} under onnxruntime but "
                f"{reference.shape} in PyTorch"
            )
        differences[name] = float(
            np.abs(actual.astype(np.float64) - reference.astype(np.float64)).max(initial=0.0)
        )
    too_far = {name: value for name, value in differences.items() if value > atol}
    if too_far:
        raise ValueError(
            f"{onnx_path}: onnxruntime differs from PyTorch by more than {atol}: "
            + ", ".join(f"'{name}' by {value:.3g}" for name, value in too_far.items())
        )
    return differences


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``export_onnx.py CHECKPOINT OUTPUT [--opset N] ...``; returns the exit code."""
    parser = argparse.ArgumentParser(
        description="Export a local hf_covid checkpoint to ONNX and check it against PyTorch "
        "under onnxruntime (research software, not a diagnostic device)."
    )
    parser.add_argument("checkpoint", help="local checkpoint folder (config.json + safetensors)")
    parser.add_argument("output", help="folder for model.onnx, or a .onnx file path")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (exporter default)")
    parser.add_argument("--static-batch", action="store_true", help="fix the batch size")
    parser.add_argument("--static-size", action="store_true", help="fix height and width")
    parser.add_argument("--image-size", type=int, default=None, help="traced height and width")
    parser.add_argument("--exporter", choices=("dynamo", "torchscript"), default=None)
    parser.add_argument("--atol", type=float, default=1e-4, help="accepted difference to PyTorch")
    args = parser.parse_args(argv)
    onnx_path = export_onnx(
        args.checkpoint,
        args.output,
        opset=args.opset,
        dynamic_batch=not args.static_batch,
        dynamic_image_size=not args.static_size,
        image_size=args.image_size,
        exporter=args.exporter,
        atol=args.atol,
    )
    record = OnnxExport.from_json_file(onnx_path.parent / EXPORT_INFO_FILE_NAME)
    differences = ", ".join(
        f"{name} {value:.2e}" for name, value in record.max_abs_difference.items()
    )
    print(
        f"wrote {onnx_path} ({record.exporter} exporter, opset {record.opset}); "
        f"onnxruntime vs PyTorch max |difference|: {differences}"
    )
    return 0
