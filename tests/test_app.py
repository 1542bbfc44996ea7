"""The Gradio Space (spaces_app/app.py): configuration, page, and every endpoint called with
gradio_client against a live app on a loopback port."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import gradio as gr
import httpx
import pytest
import torch
import yaml
from app_support import (
    PATIENT_ID,
    PATIENT_NAME,
    REPO_ROOT,
    build_tiny_checkpoints,
    free_port,
    load_app_module,
    running_app,
    write_test_images,
)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hf_covid.models.labels import BINARY_LABELS, RADIOGRAPHY_LABELS

app = load_app_module()


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
    with running_app(
        checkpoints, max_image_pixels=1_000_000, max_file_size="1mb", cache_cleanup=(1, 4)
    ) as (_, url):
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
    assert "made by the lung U-Net" in summary
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
        None, handle_file(images["ct"]), api_name="/predict_xray_ct"
    )

    assert label["label"] in BINARY_LABELS
    assert "**Inputs used:** CT" in summary
    assert xray_cam is None and Path(ct_cam).is_file()

    _, summary, xray_cam, ct_cam, _ = client.predict(
        handle_file(images["xray"]), handle_file(images["ct"]), api_name="/predict_xray_ct"
    )
    assert "**Inputs used:** X-ray, CT" in summary
    assert Path(xray_cam).is_file() and Path(ct_cam).is_file()


@pytest.mark.parametrize(
    ("xray", "mask", "message"),
    [
        ("not_an_image", None, "cannot read the X-ray: not a recognised image"),
        ("corrupt", None, "cannot read the X-ray: truncated or corrupt PNG data"),
        ("huge", None, "1200x1000"),
        ("xray", "mask_wrong_shape", "lung mask is 16x48 but the X-ray is 48x48"),
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
    # Uploads are not kept: Gradio's cache cleanup (every 1 s, older than 4 s in this app) takes it.
    assert any(upload_folder.iterdir())  # the uploads went here (their folders remain)
    assert wait_until_gone(upload_folder, "xray.dcm")
    assert wait_until_gone(upload_folder / "hf_covid_outputs", "*.png")  # and the outputs


def test_page_shows_the_disclaimer_and_model_cards(url):
    config = urllib.request.urlopen(f"{url.rstrip('/')}/config", timeout=10).read().decode()

    assert "not a diagnostic device" in config
    assert "Model card of cnn_lstm" in config
    assert "X-ray + CT" in config and "Chest X-ray, 4 classes" in config and "About" in config


def test_cache_sweeper_deletes_old_uploads_and_outputs_but_not_examples(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    upload, example, recent = (
        tmp_path / "upload.png",
        tmp_path / "example.png",
        tmp_path / "new.png",
    )
    old_output = outputs / "old.png"
    for path in (upload, example, recent, old_output):
        path.write_bytes(b"png")
    os.utime(old_output, (time.time() - 120, time.time() - 120))
    sweeper = app.CacheSweeper(outputs, every=60, max_age=60, keep=lambda: {str(example)})
    for path in (upload, example):
        sweeper.used(str(path))
    sweeper.max_age = -1  # everything used so far has expired
    sweeper.sweep()
    sweeper.max_age = 60
    sweeper.used(str(recent))
    sweeper.sweep()

    assert not upload.exists() and not old_output.exists()
    assert example.exists() and recent.exists()


def markdown_texts(demo: gr.Blocks) -> str:
    return "\n".join(
        block.value or "" for block in demo.blocks.values() if isinstance(block, gr.Markdown)
    )


def test_missing_checkpoint_disables_its_choice_with_a_visible_note(checkpoints, tmp_path):
    served = dict(checkpoints, resnet=str(tmp_path / "no_resnet"), dual_input=str(tmp_path / "x"))
    demo = app.build_demo(app.AppConfig(checkpoints=served, examples_dir=None))

    (radio,) = [block for block in demo.blocks.values() if isinstance(block, gr.Radio)]
    assert [value for _, value in radio.choices] == ["cnn_lstm", "dual_channel"]
    notes = markdown_texts(demo)
    assert "ResNet (transfer learning) is not available: no checkpoint folder at" in notes
    assert "Dual-input CNN (X-ray + CT) is not available" in notes
    buttons = [block for block in demo.blocks.values() if isinstance(block, gr.Button)]
    assert [button.interactive for button in buttons] == [False, True]


def test_app_without_any_classifier_fails_at_startup_with_a_clear_error(tmp_path):
    config = app.AppConfig(checkpoints={key: str(tmp_path / key) for key in app.MODEL_NAMES})

    with pytest.raises(RuntimeError, match="no classifier checkpoint could be loaded"):
        app.build_demo(config)


def test_flags_override_environment_variables_which_override_defaults():
    environ = {"HF_COVID_RESNET": "org/resnet-covid", "HF_COVID_LUNG_UNET": "/models/unet"}

    config, host, port = app.parse_arguments(
        ["--lung-unet", "/flag/unet", "--port", "7999"], environ
    )

    assert config.checkpoints["resnet"] == "org/resnet-covid"
    assert config.checkpoints["lung_unet"] == "/flag/unet"
    assert config.checkpoints["cnn_lstm"].endswith("outputs/demo/checkpoints/cnn_lstm")
    assert (host, port) == ("127.0.0.1", 7999)
    assert (config.explanation, config.explanation_stage) == ("gradcam", None)


def test_explanation_comes_from_flags_or_environment():
    environ = {"HF_COVID_EXPLANATION": "hirescam", "HF_COVID_EXPLANATION_STAGE": "1"}
    config, _, _ = app.parse_arguments([], environ)
    assert (config.explanation, config.explanation_stage) == ("hirescam", 1)
    config, _, _ = app.parse_arguments(["--explanation", "gradcam"], environ)
    assert (config.explanation, config.explanation_stage) == ("gradcam", 1)
    with pytest.raises(SystemExit):
        app.parse_arguments(["--explanation", "lime"], {})


def test_launch_from_flags_prints_the_url_and_serves(checkpoints, capsys):
    port = free_port()
    flags = [f"--{key.replace('_', '-')}={path}" for key, path in checkpoints.items()]
    threads = torch.get_num_threads()

    demo = app.serve(["--host", "127.0.0.1", "--port", str(port), *flags])
    try:
        assert f"hf_covid app running on http://127.0.0.1:{port}" in capsys.readouterr().out
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "<html" in page.lower()
    finally:
        demo.close()
        torch.set_num_threads(threads)


def test_space_folder_is_a_deployable_gradio_space():
    readme = (REPO_ROOT / "spaces_app" / "README.md").read_text()
    front_matter = yaml.safe_load(readme.split("---")[1])

    assert front_matter["sdk"] == "gradio"
    assert front_matter["app_file"] == "app.py"
    assert front_matter["sdk_version"] == gr.__version__
    assert front_matter["license"]
    assert "not a diagnostic device" in readme
    requirements = (REPO_ROOT / "spaces_app" / "requirements.txt").read_text()
    assert "hf_covid" in requirements and "torch" in requirements
    examples = list((REPO_ROOT / "spaces_app" / "examples").glob("*.png"))
    assert examples and sum(path.stat().st_size for path in examples) < 200_000
