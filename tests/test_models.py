"""Tests of the hf_covid models: shapes, learning, save/load, remote code, inputs and configs."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    ResNetBackbone,
    ResNetConfig,
    pipeline,
)

from hf_covid.benchmarks.model_stats import model_complexity
from hf_covid.models import (
    ChestImageProcessor,
    CNNLSTMConfig,
    CNNLSTMForImageClassification,
    CNNLSTMModel,
    DualChannelCNNConfig,
    DualChannelCNNForImageClassification,
    DualInputCNNConfig,
    DualInputCNNForImageClassification,
    DualInputCNNModel,
    LungUNetConfig,
    LungUNetForSegmentation,
    build_resnet_classifier,
    set_backbone_trainable,
)
from hf_covid.registry import example_inputs

IMAGE_SIZE = 32
BATCH_SIZE = 8
TINY_RESNET = {
    "embedding_size": 8,
    "hidden_sizes": [8, 16],
    "depths": [1, 1],
    "layer_type": "basic",
}
TINY_HEAD = {"classifier_hidden_sizes": [16], "classifier_dropout": 0.0}


def tiny_dual_input(**overrides) -> DualInputCNNForImageClassification:
    fields = {"widths": [8, 16], "fusion_hidden_size": 16, "num_attention_heads": 2, **TINY_HEAD}
    return DualInputCNNForImageClassification(DualInputCNNConfig(**{**fields, **overrides}))


def tiny_dual_input_resnet() -> DualInputCNNForImageClassification:
    backbone_config = ResNetConfig(num_channels=3, **TINY_RESNET)
    return tiny_dual_input(backbone="transformers", backbone_config=backbone_config)


def tiny_cnn_lstm() -> CNNLSTMForImageClassification:
    config = CNNLSTMConfig(widths=[8, 16], sequence_width=4, lstm_hidden_size=16, **TINY_HEAD)
    return CNNLSTMForImageClassification(config)


def tiny_dual_channel() -> DualChannelCNNForImageClassification:
    return DualChannelCNNForImageClassification(DualChannelCNNConfig(widths=[8, 16], **TINY_HEAD))


def tiny_lung_unet() -> LungUNetForSegmentation:
    return LungUNetForSegmentation(LungUNetConfig(widths=[4, 8, 16]))


def tiny_resnet():
    return build_resnet_classifier(pretrained=None, config_overrides=TINY_RESNET)


TINY_MODELS = {
    "dual_input": tiny_dual_input,
    "dual_input_resnet": tiny_dual_input_resnet,
    "cnn_lstm": tiny_cnn_lstm,
    "dual_channel": tiny_dual_channel,
    "lung_unet": tiny_lung_unet,
    "resnet": tiny_resnet,
}
CUSTOM_MODELS = ["dual_input", "dual_input_resnet", "cnn_lstm", "dual_channel", "lung_unet"]


def learnable_batch(config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Eight noisy images, each with a bright square placed by its class (the U-Net's mask)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(BATCH_SIZE) % config.num_labels
    masks = torch.zeros(BATCH_SIZE, 1, IMAGE_SIZE, IMAGE_SIZE)
    for index, label in enumerate(labels.tolist()):
        row, column = divmod(label, 2)
        top, left = 2 + 14 * row, 2 + 14 * column
        masks[index, :, top : top + 12, left : left + 12] = 1
    images = 0.6 * masks + 0.2 * torch.rand(masks.shape, generator=generator)
    images = images.expand(-1, config.num_channels, -1, -1).contiguous()
    if config.model_type == "covid_lung_unet":
        # Segmentation: the square is the target mask.
        return {"pixel_values": images, "labels": masks[:, 0].long()}
    inputs = {"pixel_values": images, "labels": labels}
    if config.model_type == "covid_dual_input":
        inputs["ct_pixel_values"] = images.flip(-1)
    elif config.model_type == "covid_dual_channel":
        inputs["lung_mask"] = (torch.rand(masks.shape, generator=generator) > 0.5).float()
    return inputs


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value for name, value in batch.items() if name != "labels"}


def training_accuracy(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(**model_inputs(batch)).logits
    if logits.shape[1] == 1:  # segmentation: pixel accuracy
        return ((logits > 0).long()[:, 0] == batch["labels"]).float().mean().item()
    return (logits.argmax(-1) == batch["labels"]).float().mean().item()


@pytest.mark.parametrize(
    ("name", "expected_logits", "expected_maps"),
    [
        ("dual_input", (BATCH_SIZE, 2), [(8, 16, 16), (16, 8, 8)]),
        ("cnn_lstm", (BATCH_SIZE, 4), [(8, 16, 16), (16, 8, 8)]),
        ("dual_channel", (BATCH_SIZE, 4), [(8, 16, 16), (16, 8, 8)]),
        (
            "lung_unet",
            (BATCH_SIZE, 1, IMAGE_SIZE, IMAGE_SIZE),
            [(4, 32, 32), (8, 16, 16), (16, 8, 8), (8, 16, 16), (4, 32, 32)],
        ),
    ],
)
def test_model_output_shapes_loss_and_feature_maps(name, expected_logits, expected_maps):
    model = TINY_MODELS[name]()
    outputs = model(**learnable_batch(model.config), output_hidden_states=True)
    assert outputs.logits.shape == expected_logits
    assert outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
    assert [tuple(feature_map.shape[1:]) for feature_map in outputs.hidden_states] == expected_maps
    assert model(**learnable_batch(model.config)).hidden_states is None


def test_classifiers_return_tuples_when_asked():
    model = tiny_cnn_lstm().eval()
    batch = learnable_batch(model.config)
    loss, logits = model(**batch, return_dict=False)
    assert torch.equal(logits, model(**batch).logits) and loss.ndim == 0


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_model_overfits_a_tiny_batch(name):
    model = TINY_MODELS[name]()
    batch = learnable_batch(model.config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        model.train()
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
        if training_accuracy(model, batch) == 1.0:
            break
    assert training_accuracy(model, batch) == 1.0


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_save_and_load_give_identical_logits(name, tmp_path):
    model = TINY_MODELS[name]().eval()
    inputs = model_inputs(learnable_batch(model.config))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt*"))
    auto_class = (
        AutoModelForSemanticSegmentation if name == "lung_unet" else AutoModelForImageClassification
    )
    loaded = auto_class.from_pretrained(tmp_path)
    assert type(loaded) is type(model)
    assert loaded.config.id2label == model.config.id2label
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("name", CUSTOM_MODELS)
def test_model_saves_its_remote_code(name, tmp_path):
    model = TINY_MODELS[name]()
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert {"layers.py", "labels.py", "configuration_common.py"} <= {
        p.name for p in tmp_path.iterdir()
    }
    task_class = (
        "AutoModelForSemanticSegmentation"
        if name == "lung_unet"
        else "AutoModelForImageClassification"
    )
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", task_class}
    base_class = type(model.base_model).__name__
    assert config.auto_map["AutoModel"].endswith(f".{base_class}")
    if name != "lung_unet":
        assert (tmp_path / "pipeline_chest.py").is_file()
        assert config.custom_pipelines["chest-image-classification"]["pt"] == [task_class]
    for source in tmp_path.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 1 or not node.module.startswith("hf_covid"), source.name
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("hf_covid") for alias in node.names)


def test_remote_code_loads_every_model_where_hf_covid_is_not_installed(tmp_path):
    """Each folder loads with trust_remote_code=True (and runs in a pipeline) where hf_covid is
    not importable."""
    base = DualInputCNNModel(tiny_dual_input().config).eval()
    models = {name: TINY_MODELS[name]().eval() for name in CUSTOM_MODELS} | {
        "dual_input_base": base
    }
    auto_classes = {
        "dual_input": "AutoModelForImageClassification",
        "dual_input_resnet": "AutoModelForImageClassification",
        "cnn_lstm": "AutoModelForImageClassification",
        "dual_channel": "AutoModelForImageClassification",
        "lung_unet": "AutoModelForSemanticSegmentation",
        "dual_input_base": "AutoModel",
    }
    expected = {}
    for name, model in models.items():
        inputs = model_inputs(learnable_batch(model.config))
        model.save_pretrained(tmp_path / name)
        save_file(inputs, tmp_path / f"{name}_inputs.safetensors")
        with torch.no_grad():
            output = model(**inputs)
        expected[name] = output.pooler_output if name == "dual_input_base" else output.logits
    processor = ChestImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor.save_pretrained(tmp_path / "cnn_lstm")

    script = textwrap.dedent(
        f"""
        import sys
        sys.path.append({sysconfig.get_paths()["purelib"]!r})
        try:
            import hf_covid
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("hf_covid is importable in the clean interpreter")
        import torch, transformers
        from safetensors.torch import load_file, save_file
        torch.set_num_threads(1)  # as in this process (conftest), for bitwise-equal logits
        root = {str(tmp_path)!r}
        for name, auto_class in {auto_classes!r}.items():
            model = getattr(transformers, auto_class).from_pretrained(
                f"{{root}}/{{name}}", trust_remote_code=True
            )
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            with torch.no_grad():
                output = model(**load_file(f"{{root}}/{{name}}_inputs.safetensors"))
            result = output.pooler_output if name == "dual_input_base" else output.logits
            save_file({{"result": result.contiguous()}}, f"{{root}}/{{name}}_result.safetensors")
        classifier = transformers.pipeline(
            "image-classification", model=f"{{root}}/cnn_lstm", trust_remote_code=True
        )
        labels = [p["label"] for p in classifier(torch.rand(1, 40, 48), top_k=None)]
        assert sorted(labels) == ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"], labels
        """
    )
    # -I: ignore PYTHONPATH and the working directory; -S: skip site-packages' .pth files, which
    # hold the editable install of hf_covid (site-packages itself is added back by hand).
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for name, logits in expected.items():
        assert torch.equal(load_file(tmp_path / f"{name}_result.safetensors")["result"], logits)


def test_auto_classes_build_the_registered_models():
    config = AutoConfig.for_model("covid_cnn_lstm", widths=[8, 16], sequence_width=4)
    assert isinstance(config, CNNLSTMConfig)
    assert isinstance(AutoModel.from_config(config), CNNLSTMModel)
    assert isinstance(
        AutoModelForImageClassification.from_config(config), CNNLSTMForImageClassification
    )
    unet_config = LungUNetConfig(widths=[4, 8])
    assert isinstance(
        AutoModelForSemanticSegmentation.from_config(unet_config), LungUNetForSegmentation
    )


def test_default_label_maps_name_the_classes():
    assert DualInputCNNConfig().id2label == {0: "Non-COVID", 1: "COVID"}
    for config_class in (CNNLSTMConfig, DualChannelCNNConfig):
        config = config_class()
        assert list(config.id2label.values()) == [
            "COVID",
            "Lung_Opacity",
            "Normal",
            "Viral Pneumonia",
        ]
        assert config.label2id["Viral Pneumonia"] == 3
    assert LungUNetConfig().id2label == {0: "background", 1: "lung"}
    assert DualInputCNNConfig(id2label={0: "a", 1: "b", 2: "c"}).label2id == {
        "a": 0,
        "b": 1,
        "c": 2,
    }


@pytest.mark.parametrize(
    ("config_class", "fields", "message"),
    [
        (DualInputCNNConfig, {"fusion": "sum"}, "fusion must be one of"),
        (DualInputCNNConfig, {"backbone": "vgg"}, "backbone must be one of"),
        (DualInputCNNConfig, {"backbone": "transformers"}, "needs backbone_config"),
        (DualInputCNNConfig, {"modality_dropout": 1.5}, "modality_dropout must be in"),
        (
            DualInputCNNConfig,
            {"fusion": "attention", "fusion_hidden_size": 10, "num_attention_heads": 4},
            "must divide",
        ),
        (CNNLSTMConfig, {"widths": [8, -16]}, "widths must be a non-empty list of positive"),
        (CNNLSTMConfig, {"widths": []}, "widths must be a non-empty list of positive"),
        (CNNLSTMConfig, {"sequence_pooling": "max"}, "sequence_pooling must be one of"),
        (CNNLSTMConfig, {"lstm_hidden_size": 0}, "sizes must be positive"),
        (DualChannelCNNConfig, {"classifier_dropout": 1.0}, "classifier_dropout must be in"),
        (DualChannelCNNConfig, {"classifier_hidden_sizes": [0]}, "classifier_hidden_sizes"),
        (
            DualChannelCNNConfig,
            {"id2label": {0: "COVID", 1: "Normal"}, "label2id": {"COVID": 1, "Normal": 0}},
            "does not invert id2label",
        ),
        (DualChannelCNNConfig, {"id2label": {0: "COVID", 2: "Normal"}}, "must be indexed 0..1"),
        (LungUNetConfig, {"num_labels": 3}, "exactly two classes"),
        (LungUNetConfig, {"dice_weight": 0, "bce_weight": 0}, "not both 0"),
    ],
)
def test_config_rejects_bad_fields_with_a_clear_message(config_class, fields, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        config_class(**fields)


def test_dual_input_accepts_xray_only_ct_only_and_both():
    model = tiny_dual_input().eval()
    xray, ct = torch.rand(2, 3, 1, IMAGE_SIZE, IMAGE_SIZE)
    for inputs, used in (
        ({"pixel_values": xray}, [True, False]),
        ({"ct_pixel_values": ct}, [False, True]),
        ({"pixel_values": xray, "ct_pixel_values": ct}, [True, True]),
    ):
        outputs = model(**inputs)
        assert outputs.logits.shape == (3, 2)
        assert outputs.modalities_used.tolist() == [used] * 3


@pytest.mark.parametrize("fusion", ["concat", "attention", "gated"])
def test_dual_input_ignores_the_pixels_of_an_unavailable_modality(fusion):
    model = tiny_dual_input(fusion=fusion).eval()
    xray, ct = torch.rand(2, 2, 1, IMAGE_SIZE, IMAGE_SIZE)
    ct_available = torch.tensor([True, False])
    with torch.no_grad():
        mixed = model(pixel_values=xray, ct_pixel_values=ct, ct_available=ct_available)
        xray_only = model(pixel_values=xray[1:])
        changed = model(pixel_values=xray, ct_pixel_values=ct.flip(0), ct_available=ct_available)
    assert mixed.modalities_used.tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(mixed.logits[1], xray_only.logits[0])
    torch.testing.assert_close(changed.logits[1], mixed.logits[1])
    assert not torch.allclose(changed.logits[0], mixed.logits[0])


def test_dual_input_rejects_a_batch_without_images():
    model = tiny_dual_input()
    with pytest.raises(ValueError, match="needs at least one image"):
        model()
    with pytest.raises(ValueError, match=r"samples \[1\] have neither an X-ray nor a CT"):
        model(
            pixel_values=torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE),
            xray_available=torch.tensor([True, False]),
        )


def test_dual_input_rejects_mismatched_images():
    model = tiny_dual_input()
    image = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match="2 X-rays but ct_pixel_values holds 3 CTs"):
        model(pixel_values=image, ct_pixel_values=torch.rand(3, 1, IMAGE_SIZE, IMAGE_SIZE))
    with pytest.raises(ValueError, match=r"ct_pixel_values must be a tensor of shape \(batch, 1"):
        model(pixel_values=image, ct_pixel_values=torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE))
    with pytest.raises(ValueError, match=r"xray_available must have shape \(2,\)"):
        model(pixel_values=image, xray_available=torch.tensor([True]))


def test_modality_dropout_drops_one_modality_in_training_only():
    model = tiny_dual_input(modality_dropout=1.0)
    xray, ct = torch.rand(2, 64, 1, 16, 16)
    used = model.train()(pixel_values=xray, ct_pixel_values=ct).modalities_used
    assert used.sum(dim=1).tolist() == [1] * 64
    assert 0 < used[:, 0].sum() < 64  # both modalities get dropped, never both at once
    used = model.train()(pixel_values=xray).modalities_used
    assert used[:, 0].all(), "the only available modality must never be dropped"
    assert model.eval()(pixel_values=xray, ct_pixel_values=ct).modalities_used.all()


def test_dual_input_with_a_transformers_backbone():
    model = tiny_dual_input_resnet().eval()
    outputs = model(
        pixel_values=torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE),
        ct_pixel_values=torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE),
        output_hidden_states=True,
    )
    assert outputs.logits.shape == (2, 2)
    assert [tuple(feature_map.shape[1:]) for feature_map in outputs.ct_hidden_states] == [
        (8, 8, 8),
        (16, 4, 4),
    ]


def test_dual_input_backbones_start_from_pretrained_weights(tmp_path):
    pretrained = ResNetBackbone(ResNetConfig(num_channels=3, **TINY_RESNET))
    pretrained.save_pretrained(tmp_path / "resnet")
    model = tiny_dual_input(backbone="transformers", backbone_pretrained=str(tmp_path / "resnet"))
    assert model.config.backbone_config["model_type"] == "resnet"
    assert all(module.training for module in model.modules())
    for encoder in (model.dual_input.xray_encoder, model.dual_input.ct_encoder):
        loaded = encoder.backbone.state_dict()
        for key, value in pretrained.state_dict().items():
            assert torch.equal(loaded[key], value), key
    model.save_pretrained(tmp_path / "dual")
    shutil.rmtree(tmp_path / "resnet")  # reloading reads the fine-tuned checkpoint only
    reloaded = DualInputCNNForImageClassification.from_pretrained(tmp_path / "dual")
    image = torch.rand(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(reloaded(pixel_values=image).logits, model.eval()(pixel_values=image).logits)


def test_dual_channel_requires_a_lung_mask():
    model = tiny_dual_channel()
    image = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(
        ValueError, match=r"needs lung_mask .*LungUNetForSegmentation\.predict_mask"
    ):
        model(pixel_values=image)
    with pytest.raises(ValueError, match="they need the same batch size, height and width"):
        model(pixel_values=image, lung_mask=torch.rand(2, 1, 16, 16))


def test_dual_channel_classifies_with_a_mask_predicted_by_the_lung_unet():
    segmenter = tiny_lung_unet().eval()
    image = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    mask = segmenter.predict_mask(image)
    assert mask.shape == (2, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert tiny_dual_channel()(pixel_values=image, lung_mask=mask).logits.shape == (2, 4)


def test_lung_unet_accepts_index_and_float_masks_and_odd_sizes():
    model = tiny_lung_unet().eval()
    image = torch.rand(2, 1, 30, 27)
    masks = (torch.rand(2, 30, 27) > 0.5).long()
    with torch.no_grad():
        from_indices = model(pixel_values=image, labels=masks)
        from_floats = model(pixel_values=image, labels=masks[:, None].float())
    assert from_indices.logits.shape == (2, 1, 30, 27)
    torch.testing.assert_close(from_indices.loss, from_floats.loss)
    with pytest.raises(ValueError, match="labels must have shape"):
        model(pixel_values=image, labels=masks[:, :10])


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_channels_last_gives_the_same_logits(name):
    model = TINY_MODELS[name]().eval()
    inputs = model_inputs(learnable_batch(model.config))
    with torch.no_grad():
        expected = model(**inputs).logits
        model = model.to(memory_format=torch.channels_last)
        channels_last = {
            key: value.contiguous(memory_format=torch.channels_last)
            for key, value in inputs.items()
        }
        torch.testing.assert_close(model(**channels_last).logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["dual_input", "dual_input_resnet", "cnn_lstm", "dual_channel"])
def test_gradcam_target_layers_output_the_last_feature_map(name):
    model = TINY_MODELS[name]().eval()
    inputs = model_inputs(learnable_batch(model.config))
    captured = {}
    for input_name, layer in model.gradcam_target_layers.items():
        model.get_submodule(layer).register_forward_hook(
            lambda module, args, output, key=input_name: captured.__setitem__(key, output)
        )
    outputs = model(**inputs, output_hidden_states=True)
    last_maps = {"xray": outputs.hidden_states[-1], "image": outputs.hidden_states[-1]}
    if name.startswith("dual_input"):
        last_maps["ct"] = outputs.ct_hidden_states[-1]
    for input_name, feature_map in captured.items():
        assert torch.equal(feature_map, last_maps[input_name])
    assert set(captured) == set(model.gradcam_target_layers)


def test_resnet_backbone_freezes_for_feature_extraction_then_fine_tunes():
    model = build_resnet_classifier(
        pretrained=None,
        labels=("Non-COVID", "COVID"),
        freeze_backbone=True,
        config_overrides=TINY_RESNET,
    )
    assert model.config.id2label == {0: "Non-COVID", 1: "COVID"}
    assert not any(parameter.requires_grad for parameter in model.resnet.parameters())
    assert all(parameter.requires_grad for parameter in model.classifier.parameters())
    set_backbone_trainable(model, True)
    assert all(parameter.requires_grad for parameter in model.parameters())


def test_resnet_builder_loads_pretrained_weights_with_a_new_head(tmp_path):
    source = build_resnet_classifier(
        pretrained=None, labels=("a", "b", "c"), config_overrides=TINY_RESNET
    )
    source.save_pretrained(tmp_path)
    model = build_resnet_classifier(pretrained=str(tmp_path))
    assert model.config.num_labels == 4 and model.classifier[1].out_features == 4
    for key, value in source.resnet.state_dict().items():
        assert torch.equal(model.resnet.state_dict()[key], value), key


def test_model_complexity_counts_parameters_and_convolution_flops():
    convolution = torch.nn.Conv2d(2, 4, kernel_size=3, padding=1, bias=False)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convolution = convolution

        def forward(self, pixel_values):
            return self.convolution(pixel_values)

    result = model_complexity(Wrapper(), {"pixel_values": torch.rand(1, 2, 8, 8)})
    assert result == {"parameters": 2 * 4 * 9, "flops": 2 * (2 * 9) * 4 * 8 * 8}
    model = tiny_dual_input()
    stats = model_complexity(model, example_inputs(model.config, image_size=IMAGE_SIZE))
    assert stats["parameters"] == sum(p.numel() for p in model.parameters()) and stats["flops"] > 0


@pytest.mark.parametrize("name", ["cnn_lstm", "dual_input"])
def test_image_classification_pipeline_classifies_an_xray(name, tmp_path):
    model = TINY_MODELS[name]().eval()
    processor = ChestImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    xray = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48), dtype=np.uint8))

    predictions = pipeline("image-classification", model=str(tmp_path))(xray, top_k=None)

    with torch.no_grad():
        logits = model(**processor(xray, return_tensors="pt")).logits
    expected = dict(
        zip(model.config.id2label.values(), logits.softmax(-1)[0].tolist(), strict=True)
    )
    assert {
        prediction["label"]: prediction["score"] for prediction in predictions
    } == pytest.approx(expected, abs=1e-6)
