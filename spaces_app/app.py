"""hf_covid Gradio app (a Hugging Face Space): COVID-19 chest X-ray and CT classification with
Grad-CAM, lung masks and feature maps. Research software, not a diagnostic device.

Run ``python spaces_app/app.py [--host 127.0.0.1] [--port 7860]``. Which checkpoints are served is
set per model by a flag or an environment variable (a local folder or a Hub id); by default the
demo checkpoints under ``outputs/demo/checkpoints``:

    --dual-input    HF_COVID_DUAL_INPUT      X-ray + CT, binary
    --cnn-lstm      HF_COVID_CNN_LSTM        X-ray, 4 classes
    --dual-channel  HF_COVID_DUAL_CHANNEL    X-ray + lung mask, 4 classes
    --resnet        HF_COVID_RESNET          X-ray, 4 classes (transfer learning)
    --lung-unet     HF_COVID_LUNG_UNET       lung segmentation

The logic lives in :mod:`hf_covid.inference`; this file lays out the page and turns inputs and
outputs into Gradio values.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder
from PIL import Image

from hf_covid.explain import CAM_METHODS
from hf_covid.inference import (
    DEFAULT_MAX_PIXELS,
    INPUT_NAMES,
    ChestPredictor,
    InputError,
    Prediction,
    ServedModels,
    feature_map_grid,
    heatmap_overlay,
    load_served_models,
    mask_overlay,
)
from hf_covid.registry import list_models, model_families

logger = logging.getLogger("hf_covid.app")

APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"
DEFAULT_CHECKPOINT_ROOT = APP_DIR.parent / "outputs" / "demo" / "checkpoints"

MODEL_NAMES: dict[str, str] = {family.key: family.display_name for family in model_families()}
CAM_DISPLAY_NAMES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}
FOUR_CLASS_MODELS = tuple(
    family.key
    for family in model_families()
    if family.task == "classification" and family.dataset_kind == "radiography"
)

DISCLAIMER = (
    "**Research software, not a diagnostic device.** These models were trained on public or "
    "synthetic data and have not been validated for clinical use: never use them to diagnose, "
    "treat or triage a patient. Only the pixel data of an upload is read; DICOM metadata (patient "
    "name, ids) is never shown, logged or stored, and uploads are deleted from the server within "
    "two minutes."
)


@dataclass
class AppConfig:
    """What the app serves and how much load it accepts.

    Attributes:
        checkpoints: model key (``hf_covid.registry.list_models()``) -> local folder or
            Hub id.
        max_file_size: largest upload (Gradio size string, e.g. "50mb").
        max_image_pixels: largest decoded image accepted.
        concurrency_limit: predictions running at once.
        max_queue_size: requests waiting at most; more are refused with "queue full".
        cache_cleanup: (every, older than) seconds: uploads and output images are deleted this
            long after their last use (see :class:`CacheSweeper`; Gradio's ``delete_cache`` too).
        examples_dir: folder of example images (None: no examples).
        explanation: CAM method of the overlays, "gradcam" or "hirescam".
        explanation_stage: encoder stage explained (None: each model's last block, the Grad-CAM
            default; at the demo's 64 px, finer stages localise lesions better, see the README).
    """

    checkpoints: dict[str, str] = field(
        default_factory=lambda: {key: str(DEFAULT_CHECKPOINT_ROOT / key) for key in list_models()}
    )
    max_file_size: str = "50mb"
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    concurrency_limit: int = 2
    max_queue_size: int = 32
    cache_cleanup: tuple[int, int] = (30, 60)
    examples_dir: Path | None = EXAMPLES_DIR
    explanation: str = "gradcam"
    explanation_stage: int | None = None


def environment_variable(key: str) -> str:
    """The environment variable that names a model's checkpoint, e.g. HF_COVID_CNN_LSTM."""
    return f"HF_COVID_{key.upper()}"


def parse_arguments(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[AppConfig, str, int]:
    """The app configuration, host and port from flags, then environment variables, then defaults."""
    environ = os.environ if environ is None else environ
    defaults = AppConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(environ.get("GRADIO_SERVER_PORT", 7860)))
    for key in list_models():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            default=environ.get(environment_variable(key), defaults.checkpoints[key]),
            help=f"{MODEL_NAMES[key]}: checkpoint folder or Hub id "
            f"(env {environment_variable(key)})",
        )
    parser.add_argument("--max-file-size", default=defaults.max_file_size)
    parser.add_argument("--concurrency-limit", type=int, default=defaults.concurrency_limit)
    parser.add_argument("--max-queue-size", type=int, default=defaults.max_queue_size)
    parser.add_argument(
        "--explanation",
        choices=sorted(CAM_METHODS),
        default=environ.get("HF_COVID_EXPLANATION", defaults.explanation),
        help="CAM method of the overlays (env HF_COVID_EXPLANATION)",
    )
    stage = environ.get("HF_COVID_EXPLANATION_STAGE")
    parser.add_argument(
        "--explanation-stage",
        type=int,
        default=int(stage) if stage else defaults.explanation_stage,
        help="encoder stage explained, 0 = shallowest (default: each model's last block; "
        "env HF_COVID_EXPLANATION_STAGE)",
    )
    arguments = parser.parse_args(argv)
    config = AppConfig(
        checkpoints={key: getattr(arguments, key) for key in list_models()},
        max_file_size=arguments.max_file_size,
        concurrency_limit=arguments.concurrency_limit,
        max_queue_size=arguments.max_queue_size,
        explanation=arguments.explanation,
        explanation_stage=arguments.explanation_stage,
    )
    return config, arguments.host, arguments.port


def _gradio_error(error: Exception) -> gr.Error:
    if isinstance(error, InputError):
        return gr.Error(str(error), title="Cannot use this input", print_exception=False)
    logger.exception("prediction failed")
    return gr.Error("Prediction failed because of an internal error; it was logged.")


class CacheSweeper:
    """Deletes the uploads the app has read and the images it wrote, ``max_age`` seconds after
    their last use, checking every ``every`` seconds from a daemon thread.

    Gradio's own ``delete_cache`` does the same for its cache, but in Gradio 6.31 its background
    task dies for good when a request adds a file while it runs ("Set changed size during
    iteration"), after which nothing is deleted; so the app does not rely on it alone. Uploads
    age out rather than being deleted right after the request because Gradio stores them by
    content hash: two requests with the same file share one path.

    Args:
        output_folder: where :class:`OutputFiles` writes (every file there is the app's).
        every: seconds between sweeps.
        max_age: seconds after its last use that a file is deleted.
        keep: returns paths never to delete (the example files, shared by every user).
    """

    def __init__(
        self, output_folder: Path, every: float, max_age: float, keep: Callable[[], set[str]]
    ) -> None:
        self.output_folder = output_folder
        self.every = every
        self.max_age = max_age
        self.keep = keep
        self._uploads: dict[str, float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name="hf_covid-cache-sweeper", daemon=True
        )

    def start(self) -> None:
        """Start sweeping in the background (until the process exits)."""
        self._thread.start()

    def used(self, path: str) -> None:
        """Record that a request read the upload at ``path``."""
        with self._lock:
            self._uploads[str(Path(path).resolve())] = time.time()

    def sweep(self) -> None:
        """Delete what is older than ``max_age`` now."""
        cutoff = time.time() - self.max_age
        with self._lock:
            expired = [path for path, last_use in self._uploads.items() if last_use < cutoff]
            for path in expired:
                del self._uploads[path]
        keep = self.keep()
        old_outputs = [
            path for path in self.output_folder.glob("*.png") if path.stat().st_mtime < cutoff
        ]
        for path in [*map(Path, expired), *old_outputs]:
            if str(path) not in keep:
                path.unlink(missing_ok=True)

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            try:
                self.sweep()
            except Exception:  # keep sweeping: one failure must not end the cleanup
                logger.exception("cache sweep failed")


class OutputFiles:
    """Writes output images as PNG files with unique names into Gradio's cache folder.

    Gradio stores numpy outputs under a content hash and writes the file in place, so two
    requests with identical outputs (the same example, clicked twice) overwrite a file while it
    is being served and a client gets it truncated. Unique names avoid that; Gradio serves the
    files from its cache as they are, and :class:`CacheSweeper` deletes them.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def image(self, pixels: np.ndarray | None) -> str | None:
        """Save one (H, W, 3) uint8 image; returns its path (None for None)."""
        if pixels is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{uuid.uuid4().hex}.png"
        Image.fromarray(pixels).save(path, compress_level=1)
        return str(path)

    def gallery(self, prediction: Prediction) -> list[tuple[str, str]]:
        """One grid of feature maps per input branch, as (path, caption) pairs (one image per
        branch rather than per channel: every image is one more download per request)."""
        return [
            (
                self.image(feature_map_grid(maps)),
                f"{INPUT_NAMES[name]} branch: first {len(maps)} channels of the last conv block",
            )
            for name, maps in prediction.feature_maps.items()
        ]


class Handlers:
    """The app's event handlers: Gradio values in, predictions, Gradio values out."""

    def __init__(self, models: ServedModels, sweeper: CacheSweeper) -> None:
        self.models = models
        self.sweeper = sweeper
        self.output_files = OutputFiles(sweeper.output_folder)

    def predict_xray_ct(self, xray: str | None, ct: str | None) -> tuple[Any, ...]:
        """Dual-input CNN: COVID / Non-COVID from an X-ray and/or a CT slice."""
        predictor = self.models.classifiers.get("dual_input")
        if predictor is None:
            raise gr.Error(f"{MODEL_NAMES['dual_input']} is not available", print_exception=False)
        prediction = self._predict(predictor, xray=xray, ct=ct)
        cams = [
            self.output_files.image(heatmap_overlay(prediction.images[name], cam))
            if (cam := prediction.gradcam.get(name)) is not None
            else None
            for name in ("xray", "ct")
        ]
        return self._outputs(prediction, "dual_input", cams)

    def predict_chest_xray(
        self, model_key: str | None, xray: str | None, lung_mask: str | None
    ) -> tuple[Any, ...]:
        """Four-class chest X-ray classification with the chosen model."""
        # The radio button only offers served models; None is "nothing chosen".
        predictor = (
            self.models.classifiers.get(model_key) if model_key in FOUR_CLASS_MODELS else None
        )
        if predictor is None:
            raise gr.Error("choose a model first", print_exception=False)
        prediction = self._predict(predictor, xray=xray, lung_mask=lung_mask)
        image = prediction.images["xray"]
        cam = prediction.gradcam.get("xray")
        overlays = [
            None if cam is None else heatmap_overlay(image, cam),
            None if prediction.lung_mask is None else mask_overlay(image, prediction.lung_mask),
        ]
        return self._outputs(prediction, model_key, map(self.output_files.image, overlays))

    def _predict(self, predictor: ChestPredictor, **uploads: str | None) -> Prediction:
        try:
            for name, path in uploads.items():
                if not path:
                    continue
                if not Path(path).is_file():  # the cache cleanup removed it
                    raise InputError(
                        f"the {INPUT_NAMES[name]} upload has expired (uploads are deleted after "
                        "a minute or two): please upload it again"
                    )
                self.sweeper.used(path)
            return predictor.predict(**uploads)
        except Exception as error:
            raise _gradio_error(error) from None

    def _outputs(
        self, prediction: Prediction, model_key: str, images: Iterable[str | None]
    ) -> tuple[Any, ...]:
        """(probabilities, summary, *images, feature-map gallery)."""
        return (
            prediction.probabilities,
            _summary(prediction, model_key),
            *images,
            self.output_files.gallery(prediction),
        )


def _summary(prediction: Prediction, model_key: str) -> str:
    used = ", ".join(INPUT_NAMES[name] for name in prediction.inputs_used)
    lines = [
        f"**Prediction:** {prediction.label} ({prediction.probabilities[prediction.label]:.1%}) "
        f"by the {MODEL_NAMES[model_key]}",
        f"**Inputs used:** {used}",
    ]
    if prediction.mask_source:
        source = {"uploaded": "uploaded", "lung_unet": "made by the lung U-Net"}
        lines.append(f"**Lung mask:** {source[prediction.mask_source]}")
    return "  \n".join(lines)


def _unavailable_note(models: ServedModels, keys: Sequence[str]) -> None:
    """A note on the page for each of ``keys`` that is not served."""
    for key in keys:
        if key in models.unavailable:
            gr.Markdown(f"*{MODEL_NAMES[key]} is not available: {models.unavailable[key]}.*")


def _uploads(tab: str, labels: Mapping[str, str]) -> list[gr.File]:
    """One upload box per input. Any file type: DICOM often has no extension, and the image
    reader checks the content, not the name."""
    with gr.Row():
        return [gr.File(label=label, elem_id=f"{tab}_{name}") for name, label in labels.items()]


def _results(tab: str, image_labels: Mapping[str, str]) -> list[gr.components.Component]:
    """Probabilities, a summary, one image per ``image_labels`` entry and the feature maps."""
    with gr.Row():
        label = gr.Label(label="Class probabilities", num_top_classes=4, elem_id=f"{tab}_label")
        summary = gr.Markdown()
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
    config: AppConfig, inputs: Sequence[gr.File], rows: Sequence[Sequence[str | None]]
) -> None:
    """Example rows whose files all exist (an incomplete example folder just shows fewer)."""
    if config.examples_dir is None:
        return
    examples = []
    for row in rows:
        paths = [None if name is None else config.examples_dir / name for name in row]
        if all(path is None or path.is_file() for path in paths):
            examples.append([None if path is None else str(path) for path in paths])
    if examples:
        gr.Examples(examples, list(inputs), cache_examples=False)


def build_demo(config: AppConfig, models: ServedModels | None = None) -> gr.Blocks:
    """The app's page, with its queue configured (launch it with :func:`launch_options`).

    Args:
        config: what to serve.
        models: already loaded models (default: load ``config.checkpoints``).

    Raises:
        RuntimeError: no classifier could be loaded.
    """
    cam_name = CAM_DISPLAY_NAMES[config.explanation]
    models = models or load_served_models(
        config.checkpoints,
        max_pixels=config.max_image_pixels,
        explanation=config.explanation,
        explanation_stage=config.explanation_stage,
    )
    every, max_age = config.cache_cleanup
    sweeper = CacheSweeper(
        Path(get_upload_folder()) / "hf_covid_outputs",
        every,
        max_age,
        lambda: _examples_in_cache(demo),
    )
    handlers = Handlers(models, sweeper)
    four_class = [key for key in FOUR_CLASS_MODELS if key in models.classifiers]
    with gr.Blocks(
        title="hf_covid: COVID-19 chest imaging (research demo)",
        delete_cache=config.cache_cleanup,
    ) as demo:
        gr.Markdown("# hf_covid: COVID-19 chest X-ray and CT (research demo)")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        with gr.Tabs():
            with gr.Tab("X-ray + CT", id="xray_ct"):
                gr.Markdown(
                    "Binary COVID / Non-COVID from a chest X-ray and a CT slice with the dual-input "
                    "CNN. Either image may be left empty; the result says which inputs were used. "
                    "PNG, JPEG or DICOM."
                )
                _unavailable_note(models, ["dual_input"])
                xray_ct_inputs = _uploads("xray_ct", {"xray": "Chest X-ray", "ct": "CT slice"})
                xray_ct_button = gr.Button(
                    "Predict",
                    variant="primary",
                    interactive="dual_input" in models.classifiers,
                    elem_id="xray_ct_predict",
                )
                xray_ct_outputs = _results(
                    "xray_ct", {"xray_cam": f"{cam_name}: X-ray", "ct_cam": f"{cam_name}: CT"}
                )
                _examples(
                    config,
                    xray_ct_inputs,
                    [
                        ["xray_covid.png", "ct_covid.png"],
                        ["xray_normal.png", "ct_non_covid.png"],
                        [None, "ct_covid.png"],
                    ],
                )

            with gr.Tab("Chest X-ray, 4 classes", id="chest_xray"):
                gr.Markdown(
                    "COVID / Lung opacity / Normal / Viral pneumonia from a chest X-ray. The lung "
                    "mask is uploaded or, when left empty, made by the lung U-Net. PNG, JPEG or "
                    "DICOM."
                )
                _unavailable_note(models, [*FOUR_CLASS_MODELS, "lung_unet"])
                chest_model = gr.Radio(
                    [(MODEL_NAMES[key], key) for key in four_class],
                    value=four_class[0] if four_class else None,
                    label="Model",
                )
                chest_inputs = _uploads(
                    "chest", {"xray": "Chest X-ray", "mask": "Lung mask (optional)"}
                )
                chest_button = gr.Button(
                    "Predict",
                    variant="primary",
                    interactive=bool(four_class),
                    elem_id="chest_predict",
                )
                chest_outputs = _results("chest", {"cam": cam_name, "mask_overlay": "Lung mask"})
                _examples(
                    config,
                    chest_inputs,
                    [
                        ["xray_covid.png", None],
                        ["xray_covid.png", "xray_covid_mask.png"],
                        ["xray_normal.png", None],
                    ],
                )

            with gr.Tab("About", id="about"):
                gr.Markdown(_about(models))

        xray_ct_button.click(
            handlers.predict_xray_ct, xray_ct_inputs, xray_ct_outputs, api_name="predict_xray_ct"
        )
        chest_button.click(
            handlers.predict_chest_xray,
            [chest_model, *chest_inputs],
            chest_outputs,
            api_name="predict_chest_xray",
        )
    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    sweeper.start()
    return demo


def _examples_in_cache(demo: gr.Blocks) -> set[str]:
    """Gradio's cached copies of the example files (``keep_in_cache``: served to every user)."""
    return {
        str(Path(path).resolve())
        for block in demo.blocks.values()
        for path in getattr(block, "keep_in_cache", ())
    }


def _about(models: ServedModels) -> str:
    sections = [
        "## About",
        DISCLAIMER,
        "hf_covid is research software for studying COVID-19 classifiers on chest X-rays and CT. "
        "Its outputs, including the Grad-CAM maps, are not medical advice: a heat map shows where "
        "a model looked, not where disease is.",
        "## Served models",
    ]
    for key in list_models():
        if key in models.unavailable:
            sections.append(
                f"### {MODEL_NAMES[key]}\n\n*Not available: {models.unavailable[key]}.*"
            )
        else:
            card = models.model_cards.get(key, "*This checkpoint has no model card.*")
            # Cards start at "#": push their headings below this section's.
            sections.append(f"### {MODEL_NAMES[key]}\n\n" + card.replace("\n#", "\n###"))
    return "\n\n".join(sections)


def launch_options(config: AppConfig) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` that every launch of this app uses."""
    return {
        "max_file_size": config.max_file_size,
        "run_history": False,  # the browser must not keep a copy of the uploads
        "enable_monitoring": False,
        "mcp_server": False,
        "ssr_mode": False,
        "show_error": False,  # gr.Error messages reach the client; other errors stay server-side
    }


def serve(argv: Sequence[str] | None = None) -> gr.Blocks:
    """Load the configured models, start the server in the background and print its URL."""
    config, host, port = parse_arguments(argv)
    # Each prediction gets its share of the cores: more intra-op threads than cores (PyTorch's
    # default, times the concurrent requests) makes every request several times slower.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.concurrency_limit))
    demo = build_demo(config)
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(config),
    )
    print(f"hf_covid app running on {url}", flush=True)
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the app until interrupted."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("hf_covid").setLevel(logging.INFO)  # which models are served, and errors
    serve(argv).block_thread()


if __name__ == "__main__":
    main()
