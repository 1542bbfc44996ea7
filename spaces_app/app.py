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
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder
from PIL import Image

from hf_covid.inference import (
    DEFAULT_MAX_PIXELS,
    INPUT_NAMES,
    SERVED_MODEL_TYPES,
    InputError,
    Prediction,
    ServedModels,
    feature_map_grid,
    heatmap_overlay,
    load_served_models,
    mask_overlay,
)

logger = logging.getLogger("hf_covid.app")

APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"
DEFAULT_CHECKPOINT_ROOT = APP_DIR.parent / "outputs" / "demo" / "checkpoints"

MODEL_NAMES: dict[str, str] = {
    "dual_input": "Dual-input CNN (X-ray + CT)",
    "cnn_lstm": "CNN + LSTM",
    "dual_channel": "Dual-channel CNN (X-ray + lung mask)",
    "resnet": "ResNet-50 (transfer learning)",
    "lung_unet": "Lung U-Net (segmentation)",
}
FOUR_CLASS_MODELS = ("cnn_lstm", "dual_channel", "resnet")

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
        checkpoints: model key (see ``hf_covid.inference.SERVED_MODEL_TYPES``) -> local folder or
            Hub id.
        max_file_size: largest upload (Gradio size string, e.g. "50mb").
        max_image_pixels: largest decoded image accepted.
        concurrency_limit: predictions running at once.
        max_queue_size: requests waiting at most; more are refused with "queue full".
        cache_cleanup: (every, older than) seconds: Gradio's ``delete_cache``, which deletes the
            uploads and output images it cached. Gradio stores uploads by content hash, so two
            requests with the same file share one path: deleting it as soon as one request has
            read it would break the other, so uploads age out instead.
        examples_dir: folder of example images (None: no examples).
    """

    checkpoints: dict[str, str] = field(
        default_factory=lambda: {
            key: str(DEFAULT_CHECKPOINT_ROOT / key) for key in SERVED_MODEL_TYPES
        }
    )
    max_file_size: str = "50mb"
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    concurrency_limit: int = 2
    max_queue_size: int = 32
    cache_cleanup: tuple[int, int] = (30, 60)
    examples_dir: Path | None = EXAMPLES_DIR


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
    for key in SERVED_MODEL_TYPES:
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
    arguments = parser.parse_args(argv)
    config = AppConfig(
        checkpoints={key: getattr(arguments, key) for key in SERVED_MODEL_TYPES},
        max_file_size=arguments.max_file_size,
        concurrency_limit=arguments.concurrency_limit,
        max_queue_size=arguments.max_queue_size,
    )
    return config, arguments.host, arguments.port


def _upload(path: str | None, what: str) -> str | None:
    """An upload's path, checked to be still there (Gradio's cache cleanup may have removed it)."""
    if path and not Path(path).is_file():
        raise InputError(
            f"the {what} upload has expired (uploads are deleted after a minute or two): please "
            "upload it again"
        )
    return path


def _gradio_error(error: Exception) -> gr.Error:
    if isinstance(error, InputError):
        return gr.Error(str(error), title="Cannot use this input", print_exception=False)
    logger.exception("prediction failed")
    return gr.Error("Prediction failed because of an internal error; it was logged.")


class OutputFiles:
    """Writes output images as PNG files with unique names into Gradio's cache folder.

    Gradio stores numpy outputs under a content hash and writes the file in place, so two
    requests with identical outputs (the same example, clicked twice) overwrite a file while it
    is being served and a client gets it truncated. Unique names avoid that; Gradio serves the
    files from its cache as they are and deletes them with its own (``delete_cache``).
    """

    def __init__(self) -> None:
        self.folder = Path(get_upload_folder()) / "hf_covid_outputs"

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


def _unavailable_note(models: ServedModels, keys: Sequence[str]) -> str:
    missing = [key for key in keys if key in models.unavailable]
    return "\n".join(
        f"- *{MODEL_NAMES[key]} is not available: {models.unavailable[key]}.*" for key in missing
    )


def _examples(config: AppConfig, names: Sequence[Sequence[str | None]]) -> list[list[str | None]]:
    """Example rows whose files all exist (an incomplete example folder just shows fewer)."""
    if config.examples_dir is None:
        return []
    rows = []
    for row in names:
        paths = [None if name is None else config.examples_dir / name for name in row]
        if all(path is None or path.is_file() for path in paths):
            rows.append([None if path is None else str(path) for path in paths])
    return rows


def build_demo(config: AppConfig, models: ServedModels | None = None) -> gr.Blocks:
    """The app's page, with its queue configured (launch it with :func:`launch_options`).

    Args:
        config: what to serve.
        models: already loaded models (default: load ``config.checkpoints``).

    Raises:
        RuntimeError: no classifier could be loaded.
    """
    models = models or load_served_models(config.checkpoints, max_pixels=config.max_image_pixels)
    image_types = None  # any file: DICOM often has no extension; the reader checks the content
    with gr.Blocks(
        title="hf_covid: COVID-19 chest imaging (research demo)",
        delete_cache=config.cache_cleanup,
    ) as demo:
        output_files = OutputFiles()
        gr.Markdown("# hf_covid: COVID-19 chest X-ray and CT (research demo)")
        gr.Markdown(DISCLAIMER, elem_id="disclaimer")
        with gr.Tabs():
            with gr.Tab("X-ray + CT", id="xray_ct"):
                dual_input = models.classifiers.get("dual_input")
                gr.Markdown(
                    "Binary COVID / Non-COVID from a chest X-ray and a CT slice with the dual-input "
                    "CNN. Either image may be left empty; the result says which inputs were used. "
                    "PNG, JPEG or DICOM."
                )
                if dual_input is None:
                    gr.Markdown(_unavailable_note(models, ["dual_input"]))
                with gr.Row():
                    xray_ct_xray = gr.File(
                        label="Chest X-ray", file_types=image_types, elem_id="xray_ct_xray"
                    )
                    xray_ct_ct = gr.File(
                        label="CT slice", file_types=image_types, elem_id="xray_ct_ct"
                    )
                xray_ct_button = gr.Button(
                    "Predict",
                    variant="primary",
                    interactive=dual_input is not None,
                    elem_id="xray_ct_predict",
                )
                with gr.Row():
                    xray_ct_label = gr.Label(
                        label="Class probabilities", num_top_classes=4, elem_id="xray_ct_label"
                    )
                    xray_ct_summary = gr.Markdown()
                with gr.Row():
                    xray_ct_xray_cam = gr.Image(label="Grad-CAM: X-ray", format="png")
                    xray_ct_ct_cam = gr.Image(label="Grad-CAM: CT", format="png")
                xray_ct_gallery = gr.Gallery(label="Feature maps", columns=2, format="png")
                rows = _examples(
                    config,
                    [
                        ["xray_covid.png", "ct_covid.png"],
                        ["xray_normal.png", "ct_non_covid.png"],
                        [None, "ct_covid.png"],
                    ],
                )
                if rows:
                    gr.Examples(rows, [xray_ct_xray, xray_ct_ct], cache_examples=False)

            with gr.Tab("Chest X-ray, 4 classes", id="chest_xray"):
                choices = [
                    (MODEL_NAMES[key], key)
                    for key in FOUR_CLASS_MODELS
                    if key in models.classifiers
                ]
                gr.Markdown(
                    "COVID / Lung opacity / Normal / Viral pneumonia from a chest X-ray. The lung "
                    "mask is uploaded or, when left empty, made by the lung U-Net."
                )
                note = _unavailable_note(models, [*FOUR_CLASS_MODELS, "lung_unet"])
                if note:
                    gr.Markdown(note)
                chest_model = gr.Radio(
                    choices, value=choices[0][1] if choices else None, label="Model"
                )
                with gr.Row():
                    chest_xray = gr.File(
                        label="Chest X-ray", file_types=image_types, elem_id="chest_xray"
                    )
                    chest_mask = gr.File(
                        label="Lung mask (optional)", file_types=image_types, elem_id="chest_mask"
                    )
                chest_button = gr.Button(
                    "Predict", variant="primary", interactive=bool(choices), elem_id="chest_predict"
                )
                with gr.Row():
                    chest_label = gr.Label(
                        label="Class probabilities", num_top_classes=4, elem_id="chest_label"
                    )
                    chest_summary = gr.Markdown()
                with gr.Row():
                    chest_cam = gr.Image(label="Grad-CAM", format="png", elem_id="chest_cam")
                    chest_mask_overlay = gr.Image(
                        label="Lung mask", format="png", elem_id="chest_mask_overlay"
                    )
                chest_gallery = gr.Gallery(label="Feature maps", columns=2, format="png")
                rows = _examples(
                    config,
                    [
                        ["xray_covid.png", None],
                        ["xray_covid.png", "xray_covid_mask.png"],
                        ["xray_normal.png", None],
                    ],
                )
                if rows:
                    gr.Examples(rows, [chest_xray, chest_mask], cache_examples=False)

            with gr.Tab("About", id="about"):
                gr.Markdown(_about(models))

        def predict_xray_ct(xray: str | None, ct: str | None) -> tuple[Any, ...]:
            """Dual-input CNN: COVID / Non-COVID from an X-ray and/or a CT slice."""
            if dual_input is None:
                raise gr.Error(f"{MODEL_NAMES['dual_input']} is not available")
            try:
                prediction = dual_input.predict(xray=_upload(xray, "X-ray"), ct=_upload(ct, "CT"))
            except Exception as error:
                raise _gradio_error(error) from None
            cams = {
                name: output_files.image(heatmap_overlay(prediction.images[name], cam))
                for name, cam in prediction.gradcam.items()
            }
            return (
                prediction.probabilities,
                _summary(prediction, "dual_input"),
                cams.get("xray"),
                cams.get("ct"),
                output_files.gallery(prediction),
            )

        def predict_chest_xray(
            model_key: str | None, xray: str | None, lung_mask: str | None
        ) -> tuple[Any, ...]:
            """Four-class chest X-ray classification with the chosen model."""
            # The radio button only offers served models; None is "nothing chosen".
            predictor = (
                models.classifiers.get(model_key) if model_key in FOUR_CLASS_MODELS else None
            )
            if predictor is None:
                raise gr.Error("choose a model first")
            try:
                prediction = predictor.predict(
                    xray=_upload(xray, "X-ray"), lung_mask=_upload(lung_mask, "lung mask")
                )
            except Exception as error:
                raise _gradio_error(error) from None
            image = prediction.images["xray"]
            return (
                prediction.probabilities,
                _summary(prediction, model_key),
                output_files.image(
                    heatmap_overlay(image, prediction.gradcam["xray"])
                    if prediction.gradcam
                    else None
                ),
                output_files.image(
                    None
                    if prediction.lung_mask is None
                    else mask_overlay(image, prediction.lung_mask)
                ),
                output_files.gallery(prediction),
            )

        for button, function, inputs, outputs, name in (
            (
                xray_ct_button,
                predict_xray_ct,
                [xray_ct_xray, xray_ct_ct],
                [xray_ct_label, xray_ct_summary, xray_ct_xray_cam, xray_ct_ct_cam, xray_ct_gallery],
                "predict_xray_ct",
            ),
            (
                chest_button,
                predict_chest_xray,
                [chest_model, chest_xray, chest_mask],
                [chest_label, chest_summary, chest_cam, chest_mask_overlay, chest_gallery],
                "predict_chest_xray",
            ),
        ):
            button.click(function, inputs, outputs, api_name=name)
    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    return demo


def _about(models: ServedModels) -> str:
    sections = [
        "## About",
        DISCLAIMER,
        "hf_covid is research software for studying COVID-19 classifiers on chest X-rays and CT. "
        "Its outputs, including the Grad-CAM maps, are not medical advice: a heat map shows where "
        "a model looked, not where disease is.",
        "## Served models",
    ]
    for key in SERVED_MODEL_TYPES:
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


def main(argv: Sequence[str] | None = None) -> None:
    """Load the configured models and serve the app until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config, host, port = parse_arguments(argv)
    demo = build_demo(config)
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(config),
    )
    print(f"hf_covid app running on {url}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
