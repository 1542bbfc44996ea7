"""Training: recipes and argument errors, the Trainer options, and the checkpoint folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForImageClassification
from transformers.modeling_outputs import ImageClassifierOutput

from hf_covid import training
from hf_covid.data.synthetic import generate_radiography, generate_xray_ct
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.recipes import RECIPE_DIR
from hf_covid.registry import list_models
from hf_covid.training import (
    BalancedClassSampler,
    ConfigurationError,
    class_weights_from_labels,
    measure_trainer_overhead,
    optimizer_class_and_kwargs,
    parse_arguments,
    train_from_recipe,
)
from hf_covid.training import arguments as training_arguments

SECRET_TOKEN = "hf_not_a_real_token_0123456789"

TINY_RUN = {
    "image_size": 32,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "disable_tqdm": True,
    "logging_steps": 1,
    "early_stopping_patience": 0,
}
TINY_MODELS = {
    "cnn_lstm": {
        "widths": [4, 8],
        "classifier_hidden_sizes": [8],
        "lstm_hidden_size": 8,
        "sequence_width": 2,
    },
    "dual_channel": {"widths": [4, 8], "classifier_hidden_sizes": [8]},
    "dual_input": {"widths": [4, 8], "classifier_hidden_sizes": [8]},
    "lung_unet": {"widths": [4, 8, 16]},
    "resnet": {
        "embedding_size": 8,
        "hidden_sizes": [8, 16],
        "depths": [1, 1],
        "layer_type": "basic",
    },
}


@pytest.fixture(scope="module")
def radiography_root(tmp_path_factory) -> Path:
    return generate_radiography(
        tmp_path_factory.mktemp("radiography"),
        images_per_class=6,
        image_size=48,
        mask_size=48,
        progress=False,
    )


@pytest.fixture(scope="module")
def xray_ct_root(tmp_path_factory) -> Path:
    return generate_xray_ct(tmp_path_factory.mktemp("xray_ct"), images_per_class=6, progress=False)


def _write_recipe(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def _tiny_overrides(model_type: str, data_dir: Path, output_dir: Path, **extra) -> dict:
    return {
        **TINY_RUN,
        "config_overrides": TINY_MODELS[model_type],
        "data_dir": str(data_dir),
        "output_dir": str(output_dir),
        **extra,
    }


# ---- recipes and arguments -------------------------------------------------------------------


def test_every_model_has_a_real_and_a_synthetic_recipe_that_parse(tmp_path):
    for model_type in list_models():
        for name in (f"{model_type}.yaml", f"{model_type}_synthetic.yaml"):
            model_args, data_args, training_args = parse_arguments(
                [str(RECIPE_DIR / name), "--output_dir", str(tmp_path)]
            )
            assert model_args.model_type == model_type
            assert data_args.data_dir
    real_resnet, real_data, _ = parse_arguments([str(RECIPE_DIR / "resnet.yaml")])
    assert real_resnet.pretrained == "microsoft/resnet-50"
    assert real_data.image_size == 224


def test_command_line_overrides_the_recipe(tmp_path):
    recipe = _write_recipe(
        tmp_path / "recipe.yaml",
        {"model_type": "cnn_lstm", "num_train_epochs": 5, "learning_rate": 0.01, "image_size": 64},
    )
    for argv in (
        [str(recipe), "--num_train_epochs", "2", "--config_overrides", '{"widths": [4]}'],
        ["--config", str(recipe), "--num_train_epochs=2", "--config_overrides", '{"widths": [4]}'],
    ):
        model_args, data_args, training_args = parse_arguments([*argv, "--output_dir", "out"])
        assert training_args.num_train_epochs == 2
        assert training_args.learning_rate == 0.01
        assert data_args.image_size == 64
        assert model_args.config_overrides == {"widths": [4]}


def test_recipe_key_that_does_not_exist_is_rejected(tmp_path):
    recipe = _write_recipe(tmp_path / "bad.yaml", {"model_type": "cnn_lstm", "lerning_rate": 0.1})
    with pytest.raises(ConfigurationError, match="unknown key 'lerning_rate'.*'learning_rate'"):
        parse_arguments([str(recipe)])


def test_unknown_model_type_is_rejected(tmp_path):
    recipe = _write_recipe(tmp_path / "bad.yaml", {"model_type": "vgg16"})
    with pytest.raises(ConfigurationError, match="unknown model 'vgg16'"):
        parse_arguments([str(recipe)])


def test_missing_data_folder_fails_before_training(tmp_path):
    overrides = _tiny_overrides("cnn_lstm", tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ConfigurationError, match="nowhere does not exist"):
        train_from_recipe(RECIPE_DIR / "cnn_lstm_synthetic.yaml", overrides)
    assert not (tmp_path / "out").exists()


def test_labels_that_do_not_match_the_recipe_are_rejected(tmp_path, radiography_root):
    out = tmp_path / "out"
    bad_name = _tiny_overrides("cnn_lstm", radiography_root, out, classes=["COVID", "Pneumonia"])
    with pytest.raises(
        ConfigurationError, match="'Pneumonia'.*not COVID-19 Radiography Database classes"
    ):
        train_from_recipe(RECIPE_DIR / "cnn_lstm_synthetic.yaml", bad_name)
    binary_on_radiography = _tiny_overrides("dual_input", radiography_root, out)
    with pytest.raises(ConfigurationError, match="data_dir"):
        train_from_recipe(RECIPE_DIR / "dual_input_synthetic.yaml", binary_on_radiography)
    two_class_data = tmp_path / "two_classes"
    two_class_data.mkdir()
    for name in ("COVID", "Normal"):
        (two_class_data / name).symlink_to(radiography_root / name, target_is_directory=True)
    four_classes = _tiny_overrides("cnn_lstm", two_class_data, out)
    with pytest.raises(ConfigurationError, match="not found"):
        train_from_recipe(RECIPE_DIR / "cnn_lstm_synthetic.yaml", four_classes)
    assert not out.exists()


def test_metric_for_best_model_must_be_one_the_model_computes(tmp_path, radiography_root):
    overrides = _tiny_overrides(
        "lung_unet", radiography_root, tmp_path / "out", metric_for_best_model="f1_macro"
    )
    with pytest.raises(ConfigurationError, match="'f1_macro' is not computed.*dice"):
        train_from_recipe(RECIPE_DIR / "lung_unet_synthetic.yaml", overrides)


def test_push_to_hub_needs_a_hub_model_id(tmp_path, radiography_root):
    overrides = _tiny_overrides("cnn_lstm", radiography_root, tmp_path / "out", push_to_hub=True)
    with pytest.raises(ConfigurationError, match="hub_model_id"):
        train_from_recipe(RECIPE_DIR / "cnn_lstm_synthetic.yaml", overrides)


# ---- settings that conflict or that the Trainer would ignore ---------------------------------


def _parse(*argv: str, recipe: str = "cnn_lstm_synthetic.yaml"):
    return parse_arguments([str(RECIPE_DIR / recipe), "--output_dir", "out", *argv])[2]


def test_command_line_optim_replaces_the_recipe_optimizer_with_the_trainer_optimizer():
    args = _parse("--optim", "sgd")
    assert args.optimizer is None
    assert optimizer_class_and_kwargs(args)[0] is torch.optim.SGD
    recipe_choice = _parse()
    assert recipe_choice.optimizer == "adam"
    assert optimizer_class_and_kwargs(recipe_choice)[0] is torch.optim.Adam


def test_optimizer_and_optim_that_disagree_at_the_same_level_are_rejected(tmp_path):
    with pytest.raises(ConfigurationError, match="optimizer='adam' and optim='sgd'"):
        _parse("--optimizer", "adam", "--optim", "sgd")
    both_in_recipe = {"model_type": "cnn_lstm", "optimizer": "rmsprop", "optim": "adafactor"}
    with pytest.raises(ConfigurationError, match="both choose the optimizer"):
        parse_arguments([], recipe=both_in_recipe)
    agreeing = _parse("--optimizer", "adamw", "--optim", "adamw_torch")
    assert optimizer_class_and_kwargs(agreeing)[0] is torch.optim.AdamW
    with pytest.raises(ConfigurationError, match="optim_args apply to the Trainer's optim"):
        _parse("--optim_args", "momentum=0.9")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hub_strategy", "every_save"], "hub_strategy='every_save' is not supported"),
        (["--hub_revision", "dev"], "hub_revision='dev' is not supported"),
        (["--remove_unused_columns", "true"], "remove_unused_columns must be false"),
        (["--prediction_loss_only", "true"], "prediction_loss_only must be false"),
        (["--eval_do_concat_batches", "false"], "eval_do_concat_batches must be true"),
        (["--greater_is_better", "false"], "greater_is_better=False contradicts.*f1_macro"),
        (["--mixed_precision", "no", "--bf16"], "mixed_precision='no' but bf16=True"),
        (["--eval_strategy", "no"], "training arguments: --load_best_model_at_end requires"),
        (["--report_to", "nonsense"], r"unknown tracker\(s\) \['nonsense'\]"),
    ],
)
def test_trainer_options_that_would_be_ignored_or_contradict_are_rejected(argv, message):
    with pytest.raises(ConfigurationError, match=message):
        _parse(*argv)


def test_mixed_precision_auto_follows_accelerate_launch_and_a_mismatch_is_rejected(monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` exports
    followed = _parse("--use_cpu", "true")
    assert followed.bf16 and not followed.fp16
    with pytest.raises(ConfigurationError, match="accelerate launch asks for mixed precision"):
        _parse("--use_cpu", "true", "--mixed_precision", "no")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # accelerate's default
    assert not _parse("--mixed_precision", "no").bf16


def test_missing_tracker_backend_fails_before_the_data_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(training_arguments, "get_available_reporting_integrations", lambda: [])
    overrides = _tiny_overrides(
        "cnn_lstm", tmp_path / "nowhere", tmp_path / "out", report_to="tensorboard"
    )
    with pytest.raises(ConfigurationError, match=r"pip install 'hf_covid\[tracking\]'"):
        train_from_recipe(RECIPE_DIR / "cnn_lstm_synthetic.yaml", overrides)
    assert not (tmp_path / "out").exists()


def test_options_the_lung_unet_cannot_use_fail_before_the_data_is_read(tmp_path):
    for option, message in (
        ({"label_smoothing_factor": 0.1}, "label_smoothing_factor applies to classifiers"),
        ({"activation_checkpointing": True}, "LungUNetForSegmentation does not support it"),
    ):
        overrides = _tiny_overrides("lung_unet", tmp_path / "nowhere", tmp_path / "out", **option)
        with pytest.raises(ConfigurationError, match=message):
            train_from_recipe(RECIPE_DIR / "lung_unet_synthetic.yaml", overrides)


def test_class_weighted_loss_applies_label_smoothing():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    labels = torch.tensor([0, 2])
    weights = torch.tensor([1.0, 2.0, 0.5])

    class Model(torch.nn.Module):
        def forward(self, pixel_values):
            return ImageClassifierOutput(logits=logits)

    trainer = training.ChestTrainer.__new__(training.ChestTrainer)
    trainer.class_weights = weights
    trainer.args = type("Args", (), {"label_smoothing_factor": 0.2})()
    loss = trainer.compute_loss(Model(), {"pixel_values": torch.zeros(2), "labels": labels})
    expected = torch.nn.functional.cross_entropy(
        logits, labels, weight=weights, label_smoothing=0.2
    )
    torch.testing.assert_close(loss, expected)
    unsmoothed = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
    assert not torch.isclose(loss, unsmoothed)


# ---- imbalance and metrics -------------------------------------------------------------------


def test_class_weights_are_inverse_class_frequencies():
    weights = class_weights_from_labels(np.array([0] * 6 + [1] * 2 + [2] * 4), 3)
    torch.testing.assert_close(weights, torch.tensor([12 / 18, 12 / 6, 12 / 12]))
    with pytest.raises(ConfigurationError, match="every class needs training examples"):
        class_weights_from_labels(np.array([0, 0, 2]), 3)


def test_balanced_sampler_draws_every_class_equally_often_and_repeats_per_epoch():
    labels = np.array([0] * 900 + [1] * 100)
    sampler = BalancedClassSampler(labels, seed=3)
    first = list(sampler)
    assert len(first) == len(labels)
    minority_share = np.mean(labels[first] == 1)
    assert 0.45 < minority_share < 0.55
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


# ---- end-to-end training -----------------------------------------------------------------------


def test_training_writes_a_complete_checkpoint_folder(tmp_path, radiography_root):
    out = tmp_path / "cnn_lstm"
    results = train_from_recipe(
        RECIPE_DIR / "cnn_lstm_synthetic.yaml",
        _tiny_overrides(
            "cnn_lstm",
            radiography_root,
            out,
            num_train_epochs=2,
            optimizer="adam",
            channels_last=True,
            hub_token=SECRET_TOKEN,
            report_to="tensorboard",
        ),
    )
    for name in (
        "config.json",
        "model.safetensors",
        "modeling_cnn_lstm.py",
        "configuration_cnn_lstm.py",
        "preprocessor_config.json",
        "eval_results.json",
        "trainer_state.json",
        "README.md",
        "figures/training_curves.png",
        "figures/confusion_matrix.png",
    ):
        assert (out / name).is_file(), name
    top_level = {path.suffix for path in out.iterdir() if path.is_file()}
    assert not top_level & {".bin", ".pt", ".pth", ".pkl"}
    saved = json.loads((out / "eval_results.json").read_text())
    steps_per_epoch = math.ceil(saved["dataset"]["split_sizes"]["train"] / 8)
    assert sorted(path.name for path in (out / "checkpoints").glob("checkpoint-*")) == [
        f"checkpoint-{steps_per_epoch}",
        f"checkpoint-{2 * steps_per_epoch}",
    ]
    assert saved["metrics"] == results["metrics"]
    assert saved["metrics"]["n_samples"] == saved["dataset"]["split_sizes"]["test"]
    for key in ("accuracy", "f1_macro", "recall_Viral Pneumonia", "covid_sensitivity"):
        assert 0.0 <= saved["metrics"][key] <= 1.0
    assert len(saved["metrics"]["confusion_matrix"]) == 4
    for metric, (low, high) in saved["confidence_intervals"].items():
        assert low <= saved["metrics"][metric] <= high, metric
    assert "95% CI" in (out / "README.md").read_text()
    assert saved["training"]["best_metric"]["name"] == "f1_macro"
    assert saved["training"]["best_epoch"] in (1.0, 2.0)
    assert saved["training"]["optimizer"] == "adam"
    assert saved["dataset"]["synthetic"] is True
    # No file training writes holds the token (training_args.bin in checkpoints/ included), and
    # no file that gets pushed holds a local absolute path (the folder is in tmp_path).
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET_TOKEN.encode() not in path.read_bytes(), path
    for path in out.iterdir():
        if path.suffix in (".json", ".md"):
            assert str(tmp_path) not in path.read_text(), path

    # --report_to tensorboard: event files beside the Trainer's checkpoints, never pushed.
    (events,) = (out / "checkpoints" / "runs").glob("*/events.out.tfevents.*")
    assert events.stat().st_size > 0
    assert (
        "tensorboard"
        in json.loads((out / "training_config.json").read_text())["training"]["report_to"]
    )

    config = AutoConfig.from_pretrained(out)
    assert config.auto_map["AutoModelForImageClassification"].startswith("modeling_cnn_lstm.")
    model = AutoModelForImageClassification.from_pretrained(out)
    weights = load_file(out / "model.safetensors")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, weights[name])
    processor = ChestImageProcessor.from_pretrained(out)
    assert processor.size["height"] == 32
    assert processor.num_channels == 1


def test_lung_unet_trains_on_the_lung_masks_reports_dice_and_pushes_the_folder(
    tmp_path, radiography_root, monkeypatch
):
    pushed = []

    def push_checkpoint(folder, repo_id, *, private=False, token=None):
        pushed.append(
            (Path(folder), repo_id, private, sorted(p.name for p in Path(folder).iterdir()))
        )
        return f"https://hub.test/{repo_id}/commit/1"

    monkeypatch.setattr(training.run.hub, "push_checkpoint", push_checkpoint)
    out = tmp_path / "unet"
    results = train_from_recipe(
        RECIPE_DIR / "lung_unet_synthetic.yaml",
        _tiny_overrides(
            "lung_unet", radiography_root, out, push_to_hub=True, hub_model_id="someone/lung-unet"
        ),
    )
    assert len(pushed) == 1
    folder, repo_id, private, files = pushed[0]
    assert (folder, repo_id, private) == (out, "someone/lung-unet", False)
    assert {"model.safetensors", "eval_results.json", "README.md"} <= set(files)
    assert results["hub_commit_url"].endswith("/commit/1")
    metrics = results["metrics"]
    assert set(metrics) == {"dice", "dice_std", "iou", "iou_std", "n_samples", "loss"}
    assert 0.0 < metrics["dice"] <= 1.0 and metrics["n_samples"] > 0
    low, high = results["confidence_intervals"]["dice"]
    assert low <= metrics["dice"] <= high
    assert results["training"]["best_metric"]["name"] == "dice"
    assert results["task"] == "image-segmentation"
    assert (out / "figures" / "training_curves.png").is_file()


def test_dual_input_results_say_that_label_pairing_joins_different_people(tmp_path, xray_ct_root):
    results = train_from_recipe(
        RECIPE_DIR / "dual_input_synthetic.yaml",
        _tiny_overrides("dual_input", xray_ct_root, tmp_path / "dual", imbalance="class_weights"),
    )
    dataset = results["dataset"]
    assert dataset["pairing"] == "label"
    assert "different people" in dataset["pairing_note"]
    assert sum(dataset["split_sizes"].values()) > 0
    assert dataset["near_duplicates"]["groups"] >= 0
    assert results["class_names"] == ["Non-COVID", "COVID"]
    assert "covid_sensitivity" in results["metrics"]


def test_resnet_trains_with_three_channels_imagenet_statistics_and_balanced_sampler(
    tmp_path, radiography_root
):
    out = tmp_path / "resnet"
    results = train_from_recipe(
        RECIPE_DIR / "resnet_synthetic.yaml",
        _tiny_overrides(
            "resnet", radiography_root, out, imbalance="balanced_sampler", optimizer="rmsprop"
        ),
    )
    assert results["model_type"] == "resnet"
    assert results["training"]["imbalance"] == "balanced_sampler"
    # A stock transformers processor (3-channel RGB input), so the checkpoint needs no remote code.
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"] == "ViTImageProcessor"
    assert "auto_map" not in processor
    assert processor["do_convert_rgb"] is True
    assert processor["do_normalize"] is True
    assert processor["image_mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_trainer_overhead_is_measured_against_a_plain_loop(radiography_root, tmp_path):
    model_args, data_args, training_args = parse_arguments(
        [
            str(RECIPE_DIR / "dual_channel_synthetic.yaml"),
            "--data_dir",
            str(radiography_root),
            "--output_dir",
            str(tmp_path),
            "--image_size",
            "32",
            "--per_device_train_batch_size",
            "4",
            "--config_overrides",
            json.dumps(TINY_MODELS["dual_channel"]),
        ]
    )
    speed = measure_trainer_overhead(
        model_args, data_args, training_args, steps=8, warmup_steps=2, repeats=2
    )
    assert len(speed["trainer_runs"]) == len(speed["plain_runs"]) == 2
    assert speed["trainer_samples_per_second"] > 0
    assert speed["plain_samples_per_second"] > 0
    assert speed["overhead"] == pytest.approx(
        1 - speed["trainer_samples_per_second"] / speed["plain_samples_per_second"]
    )
