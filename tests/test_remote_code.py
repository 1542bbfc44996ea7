"""Every model through transformers alone: its pipeline and AutoModel by remote code where
hf_covid is not importable, and the ResNet with no remote code at all."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, pipeline

from hf_covid.checkpoints import load_checkpoint, save_model_and_processor
from hf_covid.models import ChestImageProcessor
from hf_covid.models.pipeline_chest import (
    CHEST_CLASSIFICATION_TASK,
    ChestImageClassificationPipeline,
)
from hf_covid.registry import get_model_family

IMAGE_SIZE = 32
FAMILIES = ("dual_input", "cnn_lstm", "dual_channel", "lung_unet", "resnet")


def _processor(key: str) -> ChestImageProcessor:
    options = get_model_family(key).processor_options
    return ChestImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, **options)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint per family, a dual-channel one naming its U-Net, and example images."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    folders = {}
    for key in FAMILIES:
        model = get_model_family(key).tiny_model().eval()
        folders[key] = save_model_and_processor(model, _processor(key), root / key)
    named_segmenter, _ = load_checkpoint(folders["dual_channel"])
    named_segmenter.config.lung_segmenter = str(folders["lung_unet"])
    folders["dual_channel_segmenter"] = save_model_and_processor(
        named_segmenter, _processor("dual_channel"), root / "dual_channel_segmenter"
    )
    rng = np.random.default_rng(0)
    for name in ("xray", "ct"):
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(root / f"{name}.png")
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[5:35, 4:22] = mask[5:35, 26:44] = 255
    Image.fromarray(mask).save(root / "mask.png")
    folders["images"] = root
    return folders


def _scores(predictions: list[dict]) -> dict[str, float]:
    return {prediction["label"]: prediction["score"] for prediction in predictions}


def _expected(folder: Path, **images: Image.Image | np.ndarray) -> dict[str, float]:
    """Class probabilities computed by hand from the model and hf_covid's processor."""
    model, processor = load_checkpoint(folder)
    inputs = {}
    if "xray" in images:
        inputs.update(processor(images["xray"], masks=images.get("mask"), return_tensors="pt"))
    if "ct" in images:
        inputs["ct_pixel_values"] = processor(images["ct"], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probabilities = model.eval()(**inputs).logits.softmax(-1)[0]
    return {model.config.id2label[index]: float(p) for index, p in enumerate(probabilities)}


def _local_pipeline(folder: Path, **kwargs) -> ChestImageClassificationPipeline:
    """hf_covid's own pipeline class, so no remote code runs in this process."""
    return pipeline(
        CHEST_CLASSIFICATION_TASK,
        model=str(folder),
        pipeline_class=ChestImageClassificationPipeline,
        trust_remote_code=False,
        **kwargs,
    )


def _unet_mask(folders: dict[str, Path], xray: Image.Image) -> np.ndarray:
    unet, unet_processor = load_checkpoint(folders["lung_unet"])
    with torch.no_grad():
        outputs = unet.eval()(**unet_processor(xray, return_tensors="pt"))
    label_map = unet_processor.post_process_semantic_segmentation(
        outputs, target_sizes=[(xray.height, xray.width)]
    )[0]
    return label_map.numpy().astype(np.uint8)


def test_dual_input_pipeline_takes_an_xray_a_ct_or_both(folders):
    xray = Image.open(folders["images"] / "xray.png")
    ct = Image.open(folders["images"] / "ct.png")
    classifier = _local_pipeline(folders["dual_input"])

    cases = {
        "xray": (classifier(xray), {"xray": xray}),
        "ct": (classifier(ct=ct), {"ct": ct}),
        "both": (classifier(xray, ct=ct), {"xray": xray, "ct": ct}),
        "dict": (classifier({"ct": ct}), {"ct": ct}),
    }
    for name, (predictions, images) in cases.items():
        assert _scores(predictions) == pytest.approx(
            _expected(folders["dual_input"], **images), abs=1e-6
        ), name
    as_dicts = classifier([{"xray": xray}, {"ct": ct}])
    assert [_scores(predictions) for predictions in as_dicts] == [
        pytest.approx(_scores(cases["xray"][0]), abs=1e-6),
        pytest.approx(_scores(cases["ct"][0]), abs=1e-6),
    ]
    batch = classifier([xray, xray], ct=[ct, None])
    assert _scores(batch[0]) == pytest.approx(_scores(cases["both"][0]), abs=1e-6)
    assert _scores(batch[1]) == pytest.approx(_scores(cases["xray"][0]), abs=1e-6)
    assert _scores(cases["ct"][0]) != pytest.approx(_scores(cases["xray"][0]), abs=1e-6)


def test_dual_channel_pipeline_takes_a_mask_or_makes_it_with_the_lung_unet(folders):
    xray = Image.open(folders["images"] / "xray.png")
    mask = Image.open(folders["images"] / "mask.png")
    segmenter = pipeline(
        "image-segmentation", model=str(folders["lung_unet"]), trust_remote_code=False
    )
    classifier = _local_pipeline(folders["dual_channel"], segmenter=segmenter)

    with_mask = classifier(xray, masks=mask)
    without_mask = classifier(xray)

    expected = _expected(folders["dual_channel"], xray=xray, mask=mask)
    assert _scores(with_mask) == pytest.approx(expected, abs=1e-6)
    unet_mask = _unet_mask(folders, xray)
    assert unet_mask.shape == (40, 48) and set(np.unique(unet_mask)) <= {0, 1}
    expected = _expected(folders["dual_channel"], xray=xray, mask=unet_mask)
    assert _scores(without_mask) == pytest.approx(expected, abs=1e-6)


def test_dual_channel_pipeline_without_mask_or_segmenter_says_what_it_needs(folders):
    classifier = _local_pipeline(folders["dual_channel"])
    with pytest.raises(ValueError, match="needs a lung mask .*pass masks=.*no lung_segmenter"):
        classifier(folders["images"] / "xray.png")


def test_xray_only_pipeline_refuses_a_ct_and_an_example_without_images(folders):
    classifier = _local_pipeline(folders["cnn_lstm"])
    xray = Image.open(folders["images"] / "xray.png")
    assert _scores(classifier(xray)) == pytest.approx(
        _expected(folders["cnn_lstm"], xray=xray), abs=1e-6
    )
    with pytest.raises(ValueError, match="takes no CT"):
        classifier(xray, ct=xray)
    with pytest.raises(ValueError, match="needs an X-ray, a CT"):
        classifier({"mask": xray})


def test_lung_unet_runs_in_the_image_segmentation_pipeline(folders):
    xray = Image.open(folders["images"] / "xray.png")
    segmenter = pipeline(
        "image-segmentation", model=str(folders["lung_unet"]), trust_remote_code=False
    )

    segments = {segment["label"]: segment for segment in segmenter(xray)}

    expected = _unet_mask(folders, xray)
    assert set(segments) <= {"background", "lung"}
    lung = (
        np.asarray(segments["lung"]["mask"]) > 0 if "lung" in segments else np.zeros_like(expected)
    )
    assert lung.shape == (40, 48)
    assert np.array_equal(lung, expected.astype(bool))


def test_resnet_checkpoint_saves_a_stock_processor_and_no_remote_code(folders):
    folder = folders["resnet"]
    assert not list(folder.glob("*.py"))
    saved = json.loads((folder / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "ViTImageProcessor" and "auto_map" not in saved
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    stock = AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
    assert type(stock).__module__.startswith("transformers.models.vit")
    _, processor = load_checkpoint(folder)
    assert isinstance(processor, ChestImageProcessor)
    assert processor.to_dict() == _processor("resnet").to_dict()


_WITHOUT_HF_COVID = """
import json, sys
sys.path.append({purelib!r})
try:
    import hf_covid
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("hf_covid is importable in the clean interpreter")
import torch, transformers
from PIL import Image
from transformers import AutoModel, pipeline

torch.set_num_threads(1)
folders = {folders!r}
xray, ct, mask = (Image.open(f"{{folders['images']}}/{{name}}.png") for name in ("xray", "ct", "mask"))
scores = lambda predictions: {{p["label"]: p["score"] for p in predictions}}
results = {{"auto_model": {{}}}}
for key in ("dual_input", "cnn_lstm", "dual_channel", "lung_unet"):
    model = AutoModel.from_pretrained(folders[key], trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    results["auto_model"][key] = type(model).__name__

dual_input = pipeline(model=folders["dual_input"], trust_remote_code=True)
assert type(dual_input).__module__.startswith("transformers_modules"), type(dual_input)
results["dual_input"] = {{
    "xray": scores(dual_input(xray)),
    "ct": scores(dual_input(ct=ct)),
    "both": scores(dual_input(xray, ct=ct)),
}}
results["cnn_lstm"] = scores(pipeline(model=folders["cnn_lstm"], trust_remote_code=True)(xray))
dual_channel = pipeline(model=folders["dual_channel"], trust_remote_code=True, segmenter=folders["lung_unet"])
results["dual_channel"] = {{"mask": scores(dual_channel(xray, masks=mask)), "unet": scores(dual_channel(xray))}}
named = pipeline(model=folders["dual_channel_segmenter"], trust_remote_code=True)
results["dual_channel_config_segmenter"] = scores(named(xray))
segmenter = pipeline("image-segmentation", model=folders["lung_unet"], trust_remote_code=True)
results["lung_unet"] = {{s["label"]: sum(1 for v in s["mask"].getdata() if v) for s in segmenter(xray)}}
resnet = pipeline("image-classification", model=folders["resnet"], trust_remote_code=False)
assert type(resnet.model).__module__.startswith("transformers.models.resnet"), type(resnet.model)
results["resnet"] = scores(resnet(xray, top_k=None))
print(json.dumps(results))
"""


def test_every_model_runs_by_remote_code_where_hf_covid_is_not_installed(folders):
    script = _WITHOUT_HF_COVID.format(
        purelib=sysconfig.get_paths()["purelib"],
        folders={key: str(value) for key, value in folders.items()},
    )
    # -I: ignore PYTHONPATH and the working directory; -S: skip site-packages' .pth files, which
    # hold the editable install of hf_covid (site-packages itself is added back by hand).
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", textwrap.dedent(script)],
        cwd=folders["images"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])

    assert results["auto_model"] == {
        "dual_input": "DualInputCNNModel",
        "cnn_lstm": "CNNLSTMModel",
        "dual_channel": "DualChannelCNNModel",
        "lung_unet": "LungUNetForSegmentation",
    }
    xray = Image.open(folders["images"] / "xray.png")
    ct = Image.open(folders["images"] / "ct.png")
    mask = Image.open(folders["images"] / "mask.png")
    expected_dual_input = {
        "xray": _expected(folders["dual_input"], xray=xray),
        "ct": _expected(folders["dual_input"], ct=ct),
        "both": _expected(folders["dual_input"], xray=xray, ct=ct),
    }
    for name, expected in expected_dual_input.items():
        assert results["dual_input"][name] == pytest.approx(expected, abs=1e-6), name
    assert results["cnn_lstm"] == pytest.approx(_expected(folders["cnn_lstm"], xray=xray), abs=1e-6)
    unet_mask = _unet_mask(folders, xray)
    with_unet = _expected(folders["dual_channel"], xray=xray, mask=unet_mask)
    assert results["dual_channel"]["mask"] == pytest.approx(
        _expected(folders["dual_channel"], xray=xray, mask=mask), abs=1e-6
    )
    assert results["dual_channel"]["unet"] == pytest.approx(with_unet, abs=1e-6)
    assert results["dual_channel_config_segmenter"] == pytest.approx(with_unet, abs=1e-6)
    assert results["lung_unet"].get("lung", 0) == int(unet_mask.sum())
    # The stock processor of the ResNet: probabilities as hf_covid's processor gives them.
    assert results["resnet"] == pytest.approx(_expected(folders["resnet"], xray=xray), abs=1e-3)
