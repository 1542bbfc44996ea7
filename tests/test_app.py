"""The Gradio app (hf_covid.app) and its Space folder: configuration, page, and every endpoint
called with gradio_client against a live app on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
import yaml
from app_support import (
    PATIENT_ID,
    PATIENT_NAME,
    SPACE_DIR,
    build_tiny_checkpoints,
    running_app,
    write_test_images,
)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from hf_covid.app import AppConfig, build_app, parse_arguments, read_models_file
from hf_covid.app.text import PHANTOM_WARNING, model_summary
from hf_covid.benchmarks.app_latency import serve_app_file
from hf_covid.checkpoints import CheckpointSource, DatasetRecord, EvaluationResults, RunRecord
from hf_covid.data.xray_ct import PAIRING_DESCRIPTIONS
from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS
from hf_covid.registry import list_models
from hf_covid.serving import read_provenance

TINY_LIMITS = {"max_image_pixels": 1_000_000, "max_file_size": "1mb"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return build_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_test_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def upload_folder(tmp_path_factory):
    """Gradio's upload cache, private to this module so the tests can look inside it."""
    folder = tmp_path_factory.mktemp("gradio_uploads")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("GRADIO_TEMP_DIR")
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


@pytest.fixture(scope="module")
def url(checkpoints, upload_folder):
    """The app, served on a free loopback port for this module's tests."""
    with running_app(checkpoints, **TINY_LIMITS, sweep_every=1, max_age=4) as (_, url):
        yield url


@pytest.fixture(scope="module")
def client(url, tmp_path_factory):
    client = Client(
        url,
        verbose=False,
        download_files=tmp_path_factory.mktemp("downloads"),
        analytics_enabled=False,
    )
    yield client
    client.close()


def output_bytes(result) -> bytes:
    """Everything a client received: the values, and the bytes of every downloaded file."""
    label, summary, *images, gallery = result
    files = [path for path in images if path] + [item["image"] for item in gallery]
    return repr(result).encode() + b"".join(Path(path).read_bytes() for path in files)


@pytest.mark.parametrize("model", ["cnn_lstm", "dual_channel", "resnet"])
def test_chest_xray_endpoint_returns_label_overlays_and_feature_maps(client, images, model):
    label, summary, cam, mask, gallery = client.predict(
        model, handle_file(images["xray"]), None, api_name="/predict_chest_xray"
    )

    assert label["label"] in RADIOGRAPHY_LABELS
    assert {item["label"] for item in label["confidences"]} == set(RADIOGRAPHY_LABELS)
    assert "made by the Lung U-Net" in summary
    assert "**Input check (X-ray)" in summary
    assert "**Trained on:** unknown" in summary  # the tiny checkpoints have no run record
    assert Path(cam).stat().st_size > 0 and Path(mask).stat().st_size > 0
    assert gallery and all(Path(item["image"]).is_file() for item in gallery)


def test_chest_xray_endpoint_uses_an_uploaded_mask(client, images):
    _, summary, _, mask, _ = client.predict(
        "dual_channel",
        handle_file(images["xray"]),
        handle_file(images["mask"]),
        api_name="/predict_chest_xray",
    )

    assert "**Lung mask:** uploaded" in summary
    assert Path(mask).is_file()


def test_xray_ct_endpoint_says_which_inputs_it_used(client, images):
    label, summary, xray_cam, ct_cam, _ = client.predict(
        "dual_input", None, handle_file(images["ct"]), api_name="/predict_xray_ct"
    )

    assert label["label"] in BINARY_LABELS
    assert "**Inputs used:** CT" in summary
    assert xray_cam is None and Path(ct_cam).is_file()

    _, summary, xray_cam, ct_cam, _ = client.predict(
        "dual_input",
        handle_file(images["xray"]),
        handle_file(images["ct"]),
        api_name="/predict_xray_ct",
    )
    assert "**Inputs used:** X-ray, CT" in summary
    assert Path(xray_cam).is_file() and Path(ct_cam).is_file()


@pytest.mark.parametrize(
    ("xray", "mask", "message"),
    [
        ("not_an_image", None, "cannot read the X-ray: not a recognised image"),
        ("corrupt", None, "cannot read the X-ray: truncated or corrupt PNG data"),
        ("huge", None, "1200x1000"),
        ("xray", "mask_wrong_shape", "mask is 16x48 but the image is 48x48"),
        (None, None, "no image given: upload an X-ray"),
    ],
)
def test_bad_input_gives_a_clear_error_and_the_app_keeps_serving(
    client, images, xray, mask, message
):
    arguments = [handle_file(images[name]) if name else None for name in (xray, mask)]

    with pytest.raises(AppError, match=message) as error:
        client.predict("dual_channel", *arguments, api_name="/predict_chest_xray")

    assert "Doe_Jane" not in str(error.value)  # the upload's file name is never echoed
    label, *_ = client.predict(
        "cnn_lstm", handle_file(images["xray"]), None, api_name="/predict_chest_xray"
    )
    assert label["label"] in RADIOGRAPHY_LABELS


@pytest.mark.parametrize(
    ("model", "message"), [("vgg", "not in the list of choices"), (None, "choose a model")]
)
def test_unknown_model_choice_is_refused(client, images, model, message):
    with pytest.raises(AppError, match=message):
        client.predict(model, handle_file(images["xray"]), None, api_name="/predict_chest_xray")


def test_upload_above_the_size_limit_is_refused(client, url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(1_100_000))

    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict("cnn_lstm", handle_file(big), None, api_name="/predict_chest_xray")
    # The server refuses it too, whatever the client checks.
    response = httpx.post(
        f"{url.rstrip('/')}/gradio_api/upload", files={"files": ("big.png", big.read_bytes())}
    )
    assert response.status_code == 413


def wait_until_gone(folder: Path, name: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while list(folder.rglob(name)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def test_dicom_upload_works_and_no_patient_data_reaches_the_outputs(client, images, upload_folder):
    result = client.predict(
        "cnn_lstm", handle_file(images["dicom"]), None, api_name="/predict_chest_xray"
    )

    assert result[0]["label"] in RADIOGRAPHY_LABELS
    received = output_bytes(result)
    for secret in (PATIENT_NAME, "Doe", PATIENT_ID):
        assert secret.encode() not in received
    # Uploads are not kept: the app's sweeper (every 1 s, older than 4 s in this app) takes it.
    assert any(upload_folder.iterdir())  # the uploads went here (their folders remain)
    assert wait_until_gone(upload_folder, "xray.dcm")
    assert wait_until_gone(upload_folder / "hf_covid_outputs", "*.png")  # and the outputs


def test_page_shows_the_disclaimer_and_model_cards(url):
    config = urllib.request.urlopen(f"{url.rstrip('/')}/config", timeout=10).read().decode()

    assert "not a diagnostic device" in config
    assert "Model card of cnn_lstm" in config
    assert "X-ray + CT" in config and "Chest X-ray, 4 classes" in config and "About" in config


def markdown_texts(demo: gr.Blocks) -> str:
    return "\n".join(
        block.value or "" for block in demo.blocks.values() if isinstance(block, gr.Markdown)
    )


def test_missing_checkpoint_disables_its_choice_with_a_visible_note(checkpoints, tmp_path):
    served = dict(checkpoints, resnet=str(tmp_path / "no_resnet"), dual_input=str(tmp_path / "x"))
    demo = build_app(AppConfig(checkpoints=served)).demo

    xray_ct, chest = [block for block in demo.blocks.values() if isinstance(block, gr.Radio)]
    assert xray_ct.choices == [] and xray_ct.value is None
    assert [value for _, value in chest.choices] == ["cnn_lstm", "dual_channel"]
    notes = markdown_texts(demo)
    assert "ResNet (transfer learning) is not available: no checkpoint folder at" in notes
    assert "Dual-input CNN (X-ray + CT) is not available" in notes
    buttons = [block for block in demo.blocks.values() if isinstance(block, gr.Button)]
    assert [button.interactive for button in buttons] == [False, True]


def test_app_without_any_classifier_serves_a_startup_page_saying_what_was_tried(tmp_path):
    config = AppConfig(checkpoints={key: str(tmp_path / key) for key in list_models()})

    app = build_app(config)

    assert app.models is None
    assert "no classifier checkpoint could be loaded" in app.startup_error
    page = markdown_texts(app.demo)
    assert "No model could be loaded" in page
    assert str(tmp_path / "cnn_lstm") in page and "HF_COVID_CNN_LSTM" in page
    assert "not a diagnostic device" in page.lower() or "Research software" in page


def write_run_records(folder: Path, *, synthetic: bool, sources: dict[str, int]) -> None:
    """A run record and evaluation results as training writes them."""
    dataset = DatasetRecord(
        kind="radiography",
        name="COVID-19 Radiography Database",
        synthetic=synthetic,
        sources=sources,
    )
    RunRecord(model={"model_type": "covid_cnn_lstm"}, dataset=dataset).save(
        folder / "training_config.json"
    )
    EvaluationResults(
        model_type="covid_cnn_lstm",
        task="image-classification",
        split="test",
        class_names=list(RADIOGRAPHY_LABELS),
        metrics={"accuracy": 0.9, "f1_macro": 0.85, "n_samples": 120},
        confidence_intervals={"accuracy": [0.84, 0.95], "f1_macro": None},
        dataset=dataset,
    ).save(folder / "eval_results.json")


@pytest.mark.parametrize("pairing", ["label", "patient"])
def test_the_provenance_says_the_pairing_the_data_record_gives(tmp_path, pairing):
    note = PAIRING_DESCRIPTIONS[pairing]
    dataset = DatasetRecord(kind="xray_ct", name="X-ray + CT", pairing=pairing, pairing_note=note)
    RunRecord(model={"model_type": "covid_dual_input"}, dataset=dataset).save(
        tmp_path / "training_config.json"
    )
    provenance = read_provenance(tmp_path)

    assert provenance.pairing == note
    assert f"**X-ray/CT pairing:** {note}" in model_summary(provenance)
    other = PAIRING_DESCRIPTIONS["patient" if pairing == "label" else "label"]
    assert other not in "\n".join(model_summary(provenance))


@pytest.mark.parametrize(
    ("synthetic", "sources", "trained_on", "warned"),
    [
        (True, {}, "synthetic phantoms", True),
        (False, {"kermany": 500, "ieee8023": 300}, "public data: ieee8023, kermany", False),
    ],
)
def test_each_prediction_says_what_the_model_was_trained_on_and_its_test_metrics(
    tmp_path, images, synthetic, sources, trained_on, warned
):
    checkpoints = build_tiny_checkpoints(tmp_path / "checkpoints")
    write_run_records(Path(checkpoints["cnn_lstm"]), synthetic=synthetic, sources=sources)
    app = build_app(AppConfig(checkpoints=checkpoints, **TINY_LIMITS))
    _, summary, *_ = app.handlers.predict("radiography", "cnn_lstm", str(images["xray"]), None)

    assert f"**Trained on:** {trained_on}" in summary
    assert "Accuracy 0.900 (95% CI 0.840-0.950)" in summary and "F1 (macro) 0.850" in summary
    assert "(test split, 120 images)" in summary
    assert (PHANTOM_WARNING in summary) is warned
    assert "meaning" not in summary.replace(PHANTOM_WARNING, "").split("Input check")[0]
    about = markdown_texts(app.demo)
    assert f"**Trained on:** {trained_on}" in about


def test_input_check_flags_a_ct_slice_in_the_xray_slot(checkpoints, tmp_path):
    ct = np.zeros((256, 256), dtype=np.uint8)  # a round body of soft tissue in black air
    rows, columns = np.mgrid[:256, :256]
    ct[(rows - 128) ** 2 + (columns - 128) ** 2 < 110**2] = 120
    ct[((rows - 128) ** 2 / 60**2 + (columns - 85) ** 2 / 30**2) < 1] = 20  # the lungs
    ct[((rows - 128) ** 2 / 60**2 + (columns - 171) ** 2 / 30**2) < 1] = 20
    path = tmp_path / "ct.png"
    Image.fromarray(ct).save(path)
    app = build_app(AppConfig(checkpoints=checkpoints, **TINY_LIMITS))
    _, summary, *_ = app.handlers.predict("radiography", "cnn_lstm", str(path), None)

    assert "**Input check (X-ray): this upload does not look right**" in summary


def test_flags_override_environment_variables_which_override_the_models_file(tmp_path):
    models_file = tmp_path / "models.yaml"
    models_file.write_text(
        "cnn_lstm: {id: org/cnn-lstm, revision: 0123abc}\nresnet: org/resnet@v1\n"
    )
    environ = {"HF_COVID_RESNET": "org/resnet-covid", "HF_COVID_LUNG_UNET": "/models/unet"}

    config, host, port = parse_arguments(
        ["--lung-unet", "/flag/unet", "--port", "7999"], environ, models_file=models_file
    )

    assert config.checkpoints["resnet"] == "org/resnet-covid"
    assert config.checkpoints["lung_unet"] == "/flag/unet"
    assert config.checkpoints["cnn_lstm"] == CheckpointSource("org/cnn-lstm", "0123abc")
    assert config.checkpoints["dual_input"] is None  # not in the file: not served
    assert (host, port) == ("127.0.0.1", 7999)
    assert (config.explanation, config.explanation_stage) == ("gradcam", None)


def test_without_configuration_the_demo_checkpoints_are_served():
    config, _, _ = parse_arguments([], {})
    assert config.checkpoints["cnn_lstm"] == str(Path("outputs/demo/checkpoints/cnn_lstm"))


def test_checkpoints_dir_serves_one_subfolder_per_model(tmp_path):
    config, _, _ = parse_arguments([], {"HF_COVID_CHECKPOINTS_DIR": str(tmp_path)})
    assert config.checkpoints == {key: str(tmp_path / key) for key in list_models()}
    config, _, _ = parse_arguments(["--checkpoints-dir", "/models", "--resnet", "org/r"], {})
    assert config.checkpoints["resnet"] == "org/r"
    assert config.checkpoints["cnn_lstm"] == str(Path("/models/cnn_lstm"))


def test_hub_ids_take_a_pinned_revision():
    assert CheckpointSource.parse("org/name@3f2a9c") == CheckpointSource("org/name", "3f2a9c")
    assert CheckpointSource.parse("org/name") == CheckpointSource("org/name")
    assert str(CheckpointSource("org/name", "main")) == "org/name@main"


@pytest.mark.parametrize(
    ("text", "message"),
    [("vgg: org/vgg\n", "unknown model key 'vgg'"), ("cnn_lstm: [1, 2]\n", "must be an id")],
)
def test_a_bad_models_file_is_a_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_models_file(path)
    assert str(path) in str(error.value)


def test_explanation_comes_from_flags_or_environment():
    environ = {"HF_COVID_EXPLANATION": "hirescam", "HF_COVID_EXPLANATION_STAGE": "1"}
    config, _, _ = parse_arguments([], environ)
    assert (config.explanation, config.explanation_stage) == ("hirescam", 1)
    config, _, _ = parse_arguments(["--explanation", "gradcam"], environ)
    assert (config.explanation, config.explanation_stage) == ("gradcam", 1)
    with pytest.raises(SystemExit):
        parse_arguments(["--explanation", "lime"], {})


def test_the_space_models_file_pins_a_revision_for_every_model():
    sources = read_models_file(SPACE_DIR / "models.yaml")
    assert set(sources) == set(list_models())
    assert all(source.revision for source in sources.values())


@pytest.mark.slow
def test_space_app_file_has_a_module_level_demo_and_serves_with_flags(checkpoints, tmp_path):
    flags = [f"--{key.replace('_', '-')}={path}" for key, path in checkpoints.items()]
    probe = (
        "import runpy, sys, gradio; sys.argv = ['app.py', *sys.argv[1:]]; "
        f"namespace = runpy.run_path({str(SPACE_DIR / 'app.py')!r}); "
        "assert isinstance(namespace['demo'], gradio.Blocks); print('demo ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *flags], capture_output=True, text=True, timeout=300
    )
    assert "demo ok" in result.stdout, result.stderr[-2000:]

    with serve_app_file(SPACE_DIR / "app.py", flags) as served:
        page = urllib.request.urlopen(served.url, timeout=10).read().decode()
        config = urllib.request.urlopen(f"{served.url}config", timeout=10).read().decode()
    assert "<html" in page.lower()
    assert "Model card of cnn_lstm" in config and "No model could be loaded" not in config


def test_space_folder_is_a_deployable_gradio_space():
    readme = (SPACE_DIR / "README.md").read_text()
    front_matter = yaml.safe_load(readme.split("---")[1])

    assert front_matter["sdk"] == "gradio"
    assert front_matter["app_file"] == "app.py"
    assert front_matter["sdk_version"] == gr.__version__
    assert front_matter["license"]
    assert "not a diagnostic device" in readme
    requirements = (SPACE_DIR / "requirements.txt").read_text()
    assert "hf_covid[app,dicom]==" in requirements and "git+" not in requirements
    examples = list((SPACE_DIR / "examples").glob("*.png"))
    assert examples and sum(path.stat().st_size for path in examples) < 200_000
