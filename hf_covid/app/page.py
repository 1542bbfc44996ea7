"""The Gradio page: tabs, handlers, and the server around them (sweeper, quota, queue).

:func:`build_app` loads the configured models and lays out the page: one tab per dataset kind
(:data:`hf_covid.registry.DATASET_KINDS`) with the classifiers that train on it, whose uploads and
overlays follow from the kind's columns (a CT upload where it has CT, an optional lung mask where
it has masks, made by the served segmentation family when left empty). When no classifier can be
loaded it builds a start-up page that says what was tried and how to configure the app, instead
of failing with a traceback. :class:`ChestApp` launches and closes it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from ..data.image_reading import InputError
from ..data.validation import DEFAULT_INPUT_POLICY
from ..registry import DATASET_KINDS, DatasetKind, get_model_family, list_models, model_families
from ..serving.overlays import feature_map_grid, heatmap_overlay, mask_overlay
from ..serving.predictor import INPUT_NAMES, ChestPredictor, Prediction
from ..serving.served import ServedModels, load_served_models
from .config import AppConfig, environment_variable
from .text import disclaimer, model_summary, prediction_summary
from .uploads import (
    OUTPUTS_SUBDIR,
    ExampleFiles,
    OutputFiles,
    UploadQuota,
    UploadQuotaMiddleware,
    UploadSweeper,
)

__all__ = [
    "TAB_LAYOUTS",
    "ChestApp",
    "TabLayout",
    "build_app",
    "classifier_tabs",
    "tab_layout",
    "tab_uploads",
]

logger = logging.getLogger(__name__)

TITLE = "hf_covid: COVID-19 chest X-ray and CT (research demo)"
CAM_DISPLAY_NAMES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}
UPLOAD_LABELS = {"xray": "Chest X-ray", "ct": "CT slice", "lung_mask": "Lung mask (optional)"}


@dataclass(frozen=True)
class TabLayout:
    """How the page presents the classifiers of one dataset kind.

    Attributes:
        tab_id: The prefix of the tab's element ids (``<tab_id>_xray``, ``<tab_id>_predict``).
        title: The tab's label (the number of classes is added when its models agree on it).
        api_name: The tab's endpoint (``/<api_name>``): the model key, then one file per upload.
        examples: Example rows (file names in the examples folder, None for an empty upload),
            in upload order.
    """

    tab_id: str
    title: str
    api_name: str
    examples: tuple[tuple[str | None, ...], ...] = ()


TAB_LAYOUTS: Mapping[str, TabLayout] = {
    "xray_ct": TabLayout(
        "xray_ct",
        "X-ray + CT",
        "predict_xray_ct",
        (
            ("xray_covid.png", "ct_covid.png"),
            ("xray_normal.png", "ct_non_covid.png"),
            (None, "ct_covid.png"),
        ),
    ),
    "radiography": TabLayout(
        "chest",
        "Chest X-ray",
        "predict_chest_xray",
        (
            ("xray_covid.png", None),
            ("xray_covid.png", "xray_covid_mask.png"),
            ("xray_normal.png", None),
        ),
    ),
}
"""Dataset kind -> its tab's layout; a kind without an entry gets one from its key."""


def tab_layout(kind: DatasetKind) -> TabLayout:
    """The layout of the tab of dataset kind ``kind``."""
    return TAB_LAYOUTS.get(kind.key) or TabLayout(kind.key, kind.name, f"predict_{kind.key}")


def tab_uploads(kind: DatasetKind) -> tuple[str, ...]:
    """The predictor inputs a tab of this kind uploads: the X-ray, then a CT where the kind has
    CT, a lung mask where it has masks."""
    return (
        "xray",
        *(("ct",) if kind.ct_column else ()),
        *(("lung_mask",) if kind.mask_column else ()),
    )


def _images_of(kind: DatasetKind) -> tuple[str, ...]:
    """The inputs a tab of this kind explains (one map each)."""
    return tuple(name for name in tab_uploads(kind) if name != "lung_mask")


def classifier_tabs() -> dict[str, tuple[str, ...]]:
    """Dataset kind -> the keys of the registered classifiers that train on it (one tab each),
    for the kinds that have one, in registration order."""
    tabs: dict[str, list[str]] = {}
    for family in model_families():
        if family.task == "classification":
            tabs.setdefault(family.dataset_kind, []).append(family.key)
    return {kind: tuple(keys) for kind, keys in tabs.items()}


def _segmenter_keys() -> list[str]:
    return [family.key for family in model_families() if family.task == "segmentation"]


def _display_name(key: str) -> str:
    return get_model_family(key).display_name


def _gradio_error(error: Exception) -> gr.Error:
    if isinstance(error, InputError):
        return gr.Error(str(error), title="Cannot use this input", print_exception=False)
    logger.exception("prediction failed")
    return gr.Error("Prediction failed because of an internal error; it was logged.")


class Handlers:
    """The app's event handlers: Gradio values in, predictions, Gradio values out."""

    def __init__(self, models: ServedModels, sweeper: UploadSweeper, config: AppConfig) -> None:
        self.models = models
        self.sweeper = sweeper
        self.config = config
        self.output_files = OutputFiles(sweeper.folder / OUTPUTS_SUBDIR)

    def predict(self, kind: str, model_key: str | None, *uploads: str | None) -> tuple[Any, ...]:
        """One tab's prediction: the chosen classifier of dataset kind ``kind`` on the uploads
        (in the tab's upload order; None for an empty one)."""
        dataset = DATASET_KINDS[kind]
        # The radio button only offers served models of this kind; None is "nothing chosen".
        predictor = (
            self.models.classifiers.get(model_key)
            if model_key in classifier_tabs().get(kind, ())
            else None
        )
        if predictor is None:
            raise gr.Error("choose a model first", print_exception=False)
        names = tab_uploads(dataset)
        prediction = self._predict(predictor, **dict(zip(names, uploads, strict=True)))
        overlays = [
            heatmap_overlay(
                prediction.images[name],
                cam,
                box=prediction.lung_crop_box if name == "xray" else None,
            )
            if (cam := prediction.gradcam.get(name)) is not None
            else None
            for name in _images_of(dataset)
        ]
        if dataset.mask_column:
            overlays.append(
                None
                if prediction.lung_mask is None
                else mask_overlay(prediction.images["xray"], prediction.lung_mask)
            )
        return self._outputs(prediction, model_key, overlays)

    def _predict(self, predictor: ChestPredictor, **uploads: str | None) -> Prediction:
        try:
            for name, path in uploads.items():
                if not path:
                    continue
                if not Path(path).is_file():  # the sweeper removed it
                    raise InputError(
                        f"the {INPUT_NAMES[name]} upload has expired (uploads are deleted "
                        f"{self.config.deletion_bound_s:.0f} s after their last use): please "
                        "upload it again"
                    )
                self.sweeper.used(path)
            return predictor.predict(**uploads)
        except Exception as error:
            raise _gradio_error(error) from None

    def _outputs(self, prediction: Prediction, model_key: str, images: Iterable) -> tuple[Any, ...]:
        """(probabilities, summary, *images, feature-map gallery)."""
        gallery = [
            (
                self.output_files.image(feature_map_grid(maps)),
                f"{INPUT_NAMES[name]} branch: first {len(maps)} channels of the explained layer",
            )
            for name, maps in prediction.feature_maps.items()
        ]
        return (
            prediction.probabilities,
            prediction_summary(prediction, model_key, self.models.provenance.get(model_key)),
            *map(self.output_files.image, images),
            gallery,
        )


@dataclass
class ChestApp:
    """The app: its page, and what runs beside it while it is served.

    Attributes:
        demo: the Gradio page (a start-up page when no model could be loaded).
        config: what it serves.
        models: the loaded models, None when none could be loaded.
        startup_error: why no model could be loaded, or None.
        handlers: the page's event handlers (None on the start-up page).
        sweeper: deletes uploads and outputs (runs while the server runs).
        quota: disk space for uploads in flight.
    """

    demo: gr.Blocks
    config: AppConfig
    models: ServedModels | None
    startup_error: str | None
    handlers: Handlers | None
    sweeper: UploadSweeper
    quota: UploadQuota

    def launch_options(self) -> dict[str, Any]:
        """Keyword arguments for ``demo.launch`` that every launch of this app uses."""
        sweeper = self.sweeper

        @contextlib.asynccontextmanager
        async def sweep_while_serving(_: Any) -> AsyncIterator[None]:
            sweeper.start()
            try:
                yield
            finally:
                sweeper.stop()

        return {
            "max_file_size": self.config.max_file_size,
            "run_history": False,  # the browser must not keep a copy of the uploads
            "enable_monitoring": False,
            "mcp_server": False,
            "ssr_mode": False,
            "show_error": False,  # gr.Error messages reach the client; other errors stay server-side
            "app_kwargs": {
                "middleware": [Middleware(UploadQuotaMiddleware, quota=self.quota)],
                "lifespan": sweep_while_serving,
            },
        }

    def launch(self, host: str = "127.0.0.1", port: int = 7860) -> str:
        """Start serving in the background; returns the local URL."""
        # Each prediction gets its share of the cores: more intra-op threads than cores (PyTorch's
        # default, times the concurrent requests) makes every request several times slower.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.config.concurrency_limit))
        self.demo.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            **self.launch_options(),
        )
        return self.demo.local_url

    def close(self) -> None:
        """Stop the server; every upload and output but the examples is deleted."""
        self.demo.close()
        self.sweeper.stop()


def build_app(config: AppConfig, models: ServedModels | None = None) -> ChestApp:
    """Load the configured models (unless given) and lay out the page.

    When no classifier can be loaded the page is a start-up page saying what was tried and how
    to configure the app; the app still serves it.
    """
    quota = UploadQuota(config.upload_quota_bytes)
    sweeper = UploadSweeper(
        Path(get_upload_folder()),
        config.sweep_every,
        config.max_age,
        keep=ExampleFiles(_example_files(config)),
        quota=quota,
    )
    startup_error = None
    if models is None:
        try:
            models = load_served_models(
                config.checkpoints,
                policy=DEFAULT_INPUT_POLICY.with_max_pixels(config.max_image_pixels),
                explanation=config.explanation,
                explanation_stage=config.explanation_stage,
            )
        except RuntimeError as error:
            startup_error = str(error)
            logger.error("no model can be served: %s", error)
    handlers = None if models is None else Handlers(models, sweeper, config)
    if handlers is None:
        demo = _startup_page(config, startup_error or "no models")
    else:
        demo = _page(config, handlers)
    sweeper.forget = lambda paths: _forget(demo, paths)
    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    return ChestApp(demo, config, models, startup_error, handlers, sweeper, quota)


def _example_files(config: AppConfig) -> list[Path]:
    """The example files the page offers (those that exist)."""
    if config.examples_dir is None:
        return []
    names = {
        name
        for kind in classifier_tabs()
        for row in tab_layout(DATASET_KINDS[kind]).examples
        for name in row
        if name
    }
    return [path for name in sorted(names) if (path := Path(config.examples_dir) / name).is_file()]


def _forget(demo: gr.Blocks, paths: set[str]) -> None:
    """Drop deleted files from Gradio's registries of the files it handed out (sets that would
    otherwise grow for as long as the app runs; removing from them never iterates them)."""
    for registry in demo.temp_file_sets:
        registry.difference_update(paths)


def _startup_page(config: AppConfig, error: str) -> gr.Blocks:
    tried = "\n".join(
        f"- **{_display_name(key)}** (`{environment_variable(key)}`): "
        f"`{config.checkpoints.get(key) or 'not configured'}`"
        for key in list_models()
    )
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}")
        gr.Markdown(
            "## No model could be loaded\n\n"
            "The app is running, but none of its classifiers could be loaded, so there is "
            f"nothing to serve yet.\n\n**What was tried:**\n\n{tried}\n\n**Why:** {error}\n\n"
            "**How to fix it:** set each variable above to a checkpoint folder or a Hub model id "
            "(`org/name@revision` pins a revision), or list them in the models file "
            "(`HF_COVID_MODELS_FILE`, `models.yaml` in a Space), or point "
            "`HF_COVID_CHECKPOINTS_DIR` at a folder with one sub-folder per model; then restart.",
            elem_id="startup_error",
        )
        gr.Markdown(disclaimer(config.deletion_bound_s), elem_id="disclaimer")
    return demo


def _unavailable_note(models: ServedModels, keys: Sequence[str]) -> None:
    """A note on the page for each of ``keys`` that is not served."""
    for key in keys:
        if key in models.unavailable:
            gr.Markdown(f"*{_display_name(key)} is not available: {models.unavailable[key]}.*")


def _uploads(tab: str, labels: Mapping[str, str]) -> list[gr.File]:
    """One upload box per input. Any file type: DICOM often has no extension, and the image
    reader checks the content, not the name."""
    with gr.Row():
        return [gr.File(label=label, elem_id=f"{tab}_{name}") for name, label in labels.items()]


def _results(tab: str, image_labels: Mapping[str, str]) -> list[gr.components.Component]:
    """Probabilities, a summary, one image per ``image_labels`` entry and the feature maps."""
    with gr.Row():
        label = gr.Label(label="Class probabilities", num_top_classes=4, elem_id=f"{tab}_label")
        summary = gr.Markdown(elem_id=f"{tab}_summary")
    with gr.Row():
        images = [
            gr.Image(label=text, elem_id=f"{tab}_{name}") for name, text in image_labels.items()
        ]
    gallery = gr.Gallery(
        label="Feature maps",
        columns=2,
        fit_columns=False,  # one branch's grid takes half the width, not all of it, cropped
        height="auto",
        object_fit="contain",
    )
    return [label, summary, *images, gallery]


def _examples(
    config: AppConfig, tab: str, inputs: Sequence[gr.File], rows: Sequence[Sequence[str | None]]
) -> None:
    """Example rows whose files all exist (an incomplete example folder just shows fewer)."""
    if config.examples_dir is None:
        return
    examples = []
    for row in rows:
        paths = [None if name is None else Path(config.examples_dir) / name for name in row]
        if all(path is None or path.is_file() for path in paths):
            examples.append([None if path is None else str(path) for path in paths])
    if examples:
        gr.Examples(examples, list(inputs), cache_examples=False, elem_id=f"{tab}_examples")


def _page(config: AppConfig, handlers: Handlers) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}")
        gr.Markdown(disclaimer(config.deletion_bound_s), elem_id="disclaimer")
        with gr.Tabs():
            for kind, keys in classifier_tabs().items():
                _classifier_tab(config, handlers, DATASET_KINDS[kind], keys)
            with gr.Tab("About", id="about"):
                gr.Markdown(_about(handlers.models, config))
    return demo


def _classifier_tab(
    config: AppConfig, handlers: Handlers, kind: DatasetKind, keys: Sequence[str]
) -> None:
    """The tab of one dataset kind: a choice among its served classifiers, one upload per input,
    and the prediction with one map per image (and the lung mask where the kind has masks)."""
    models = handlers.models
    layout = tab_layout(kind)
    tab = layout.tab_id
    served = [key for key in keys if key in models.classifiers]
    labels = list(
        dict.fromkeys(label for key in served for label in models.classifiers[key].labels)
    )
    counts = {len(models.classifiers[key].labels) for key in served}
    title = f"{layout.title}, {counts.pop()} classes" if len(counts) == 1 else layout.title
    cam_name = CAM_DISPLAY_NAMES[config.explanation]
    images = _images_of(kind)
    with gr.Tab(title, id=tab):
        gr.Markdown(_tab_description(models, kind, labels))
        _unavailable_note(models, [*keys, *(_segmenter_keys() if kind.mask_column else [])])
        choice = gr.Radio(
            [(_display_name(key), key) for key in served],
            value=served[0] if served else None,
            label="Model",
            elem_id=f"{tab}_model",
        )
        uploads = _uploads(tab, {name: UPLOAD_LABELS[name] for name in tab_uploads(kind)})
        button = gr.Button(
            "Predict", variant="primary", interactive=bool(served), elem_id=f"{tab}_predict"
        )
        shown = {f"{name}_cam": f"{cam_name}: {INPUT_NAMES[name]}" for name in images}
        if kind.mask_column:
            shown["mask_overlay"] = "Lung mask"
        outputs = _results(tab, shown)
        _examples(config, tab, uploads, layout.examples)
    button.click(
        functools.partial(handlers.predict, kind.key),
        [choice, *uploads],
        outputs,
        api_name=layout.api_name,
    )


def _tab_description(models: ServedModels, kind: DatasetKind, labels: Sequence[str]) -> str:
    """What a tab does: the classes its served models tell apart, from which images."""
    images = " and ".join(
        {"xray": "a chest X-ray", "ct": "a CT slice"}[name] for name in _images_of(kind)
    )
    lines = [f"{' / '.join(labels) or 'Classification'} from {images}."]
    if kind.ct_column:
        lines.append("Either image may be left empty; the result says which inputs were used.")
    if kind.mask_column:
        segmenter = models.lung_segmenter
        made_by = (
            f"made by the {get_model_family(segmenter.model.config.model_type).display_name}"
            if segmenter is not None
            else "not made (no lung segmentation model is served)"
        )
        lines.append(f"The lung mask is uploaded or, when left empty, {made_by}.")
    lines.append("PNG, JPEG or DICOM.")
    return " ".join(lines)


def _about(models: ServedModels, config: AppConfig) -> str:
    sections = [
        "## About",
        disclaimer(config.deletion_bound_s),
        "hf_covid is research software for studying COVID-19 classifiers on chest X-rays and CT. "
        "Its outputs, including the Grad-CAM maps, are not medical advice: a heat map shows where "
        "a model looked, not where disease is.",
        "## Served models",
    ]
    for key in list_models():
        title = f"### {_display_name(key)}"
        if key in models.unavailable:
            sections.append(f"{title}\n\n*Not available: {models.unavailable[key]}.*")
            continue
        facts = "  \n".join(
            [f"**Checkpoint:** `{models.sources[key]}`", *model_summary(models.provenance[key])]
        )
        card = models.model_cards.get(key, "*This checkpoint has no model card.*")
        # Cards start at "#": push their headings below this section's.
        sections.append(f"{title}\n\n{facts}\n\n" + card.replace("\n#", "\n###"))
    return "\n\n".join(sections)
