"""The layer table: every module of hf_covid in exactly one row, bottom to top.

A module imports only from its own row and the rows below it: at module level, in a function
(deferred), through a lazy export (``_LAZY_EXPORTS``) or ``importlib.import_module``.
``tests/test_architecture.py`` checks it on the source of every module, and checks that the table
in ``docs/architecture.md`` is this one. To add a module, add it (or its package) to one row.

A row names modules by pattern: ``"hf_covid.models.*"`` is a package and everything below it,
any other entry one module (``"hf_covid"`` is the package's ``__init__.py`` alone).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LAYERS", "Layer"]


@dataclass(frozen=True)
class Layer:
    """One row of the layer table.

    Attributes:
        name: What the row is.
        modules: The modules in it (see the module docstring for the patterns).
        summary: What they do, for the table in ``docs/architecture.md``.
    """

    name: str
    modules: tuple[str, ...]
    summary: str


LAYERS: tuple[Layer, ...] = (
    Layer(
        "foundation",
        ("hf_covid._lazy", "hf_covid._layers", "hf_covid.recipes.*"),
        "lazy exports, this table, the packaged recipes and their loader; no other hf_covid import",
    ),
    Layer(
        "models",
        ("hf_covid.models.*",),
        "one `configuration_*.py` + `modeling_*.py` pair per model, shared blocks in `layers.py`, "
        "`ChestImageProcessor`, `labels.py`; flat on purpose (remote code copies only the files a "
        "modeling file imports from its own folder)",
    ),
    Layer(
        "registry",
        ("hf_covid.registry",),
        "one `ModelFamily` record per model (its recipes, ONNX exporter, Grad-CAM layers, example "
        "inputs); registers each with the transformers Auto classes",
    ),
    Layer(
        "data",
        ("hf_covid.data.*",),
        "`load_image` (the one image reader, `InputError`), `resize`, `dicom`, `io`, `validation` "
        "(`InputPolicy`), the builders, `public/`, `splits`, `dedup`, `augment`, `pipeline`, "
        "`synthetic/`, the upload input check, Parquet export",
    ),
    Layer(
        "checkpoint format",
        ("hf_covid.checkpoints", "hf_covid.checkpoint_results"),
        "file names, `RunRecord`, `EvaluationResults`, `DatasetRecord`, `CheckpointSource`, "
        "`resolve_checkpoint(..., revision=)`, `load_checkpoint`; a checkpoint's external "
        "evaluations (`read_external_evaluations`) and study probes (`StudyProbes`)",
    ),
    Layer(
        "figures",
        ("hf_covid.plots",),
        "matplotlib only: draws the curves, matrices and scores it is handed",
    ),
    Layer(
        "lung masks",
        ("hf_covid.lung_masks",),
        "`LungSegmenter` (a lung U-Net checkpoint as a mask maker) and `add_unet_masks`, used by "
        "training (`--mask_model`), serving and the study",
    ),
    Layer(
        "cards and publishing",
        (
            "hf_covid.card_data",
            "hf_covid.card_results",
            "hf_covid.model_card",
            "hf_covid.dataset_card",
            "hf_covid.hub",
        ),
        "model and dataset cards (templates in `model_cards/`; the training data and licence, "
        "the internal, external and probe results of a model card), pushing checkpoints and "
        "datasets; below training and evaluation, which write the card and push",
    ),
    Layer(
        "training, evaluation",
        ("hf_covid.training.*", "hf_covid.evaluation.*"),
        "arguments, trainer, checkpoint writing and the training command; metrics in numpy, "
        "evaluating a checkpoint, external validation, reports",
    ),
    Layer(
        "explain, serving, export",
        ("hf_covid.explain.*", "hf_covid.serving.*", "hf_covid.export"),
        "CAM methods, their quality scores and overlays; `ChestPredictor`, `load_predictor` and "
        "the served models; ONNX export",
    ),
    Layer(
        "applications",
        ("hf_covid.app.*", "hf_covid.demo", "hf_covid.benchmarks.*", "hf_covid.study.*"),
        "the Gradio app, the demo, the benchmark cases, the real-data study",
    ),
    Layer(
        "public API",
        ("hf_covid",),
        "`import hf_covid`: registers the model families (imports the registry) and exports the "
        "public names lazily",
    ),
    Layer(
        "command line",
        ("hf_covid_cli",),
        "the `hf-covid` console script, beside the package: standard library only until a "
        "subcommand is chosen",
    ),
)
"""The rows, bottom to top."""
