"""ONNX export: every model family's tiny config under onnxruntime equals PyTorch within 1e-4."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_covid.export import (
    EXPORT_INFO_FILE_NAME,
    OnnxExport,
    default_exporter,
    export_onnx,
    main,
    onnx_inputs,
    onnx_session,
    verify_onnx,
)
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.registry import example_inputs, get_model_family, list_models

ATOL = 1e-4
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[torch.nn.Module, object]]:
    """Each family's tiny model and its exported graph (exported once for the module)."""
    folder = tmp_path_factory.mktemp("onnx")
    graphs = {}
    for key in list_models():
        model = get_model_family(key).tiny_model().eval()
        graphs[key] = (model, export_onnx(model, folder / key, image_size=IMAGE_SIZE))
    return graphs


@pytest.mark.parametrize("key", list_models())
def test_every_model_under_onnxruntime_equals_pytorch(exported, key):
    model, onnx_path = exported[key]
    record = OnnxExport.from_json_file(onnx_path.parent / EXPORT_INFO_FILE_NAME)
    assert record.model_type == model.config.model_type
    assert record.exporter == default_exporter(model.config.model_type)
    assert record.max_abs_difference["logits"] <= ATOL  # measured by export_onnx itself
    assert json.loads((onnx_path.parent / "config.json").read_text())["model_type"] == (
        model.config.model_type
    )
    # A batch size and inputs that the export never saw: the batch axis is dynamic.
    torch.manual_seed(1)
    inputs = example_inputs(model.config, batch_size=5, image_size=IMAGE_SIZE)
    differences = verify_onnx(model, onnx_path, inputs, atol=ATOL)
    assert set(differences) == set(record.output_names)
    session = onnx_session(onnx_path)
    logits = session.run(["logits"], onnx_inputs(inputs, session))[0]
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, atol=ATOL, rtol=0)


def test_dual_input_graph_takes_an_xray_or_a_ct_alone(exported):
    model, onnx_path = exported["dual_input"]
    full = example_inputs(model.config, batch_size=3, image_size=IMAGE_SIZE)
    for name in ("pixel_values", "ct_pixel_values"):
        alone = {name: full[name]}
        differences = verify_onnx(model, onnx_path, alone, atol=ATOL)
        assert differences["logits"] <= ATOL
        feed = onnx_inputs(alone, onnx_path)
        assert feed["xray_available"].tolist() == [name == "pixel_values"] * 3
        assert feed["ct_available"].tolist() == [name == "ct_pixel_values"] * 3
    with pytest.raises(ValueError, match="needs at least one image"):
        onnx_inputs({}, onnx_path)


def test_feed_with_an_input_the_graph_does_not_take_is_rejected(exported):
    model, onnx_path = exported["cnn_lstm"]
    inputs = example_inputs(model.config, batch_size=1, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"not \['lung_mask'\]"):
        onnx_inputs({**inputs, "lung_mask": torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)}, onnx_path)


def test_command_line_exports_a_checkpoint_folder_with_its_processor(tmp_path, capsys):
    family = get_model_family("dual_channel")
    checkpoint = tmp_path / "checkpoint"
    family.tiny_model().save_pretrained(checkpoint)
    ChestImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(
        checkpoint
    )
    assert main([str(checkpoint), str(tmp_path / "exported")]) == 0
    assert "onnxruntime vs PyTorch max |difference|: logits" in capsys.readouterr().out
    record = OnnxExport.from_json_file(tmp_path / "exported" / EXPORT_INFO_FILE_NAME)
    assert record.input_shapes["pixel_values"][-2:] == [IMAGE_SIZE, IMAGE_SIZE]
    assert record.input_names == ["pixel_values", "lung_mask"]
    saved = ChestImageProcessor.from_pretrained(tmp_path / "exported")
    assert saved.size["height"] == IMAGE_SIZE


def test_export_of_a_folder_that_does_not_exist_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_checkpoint' is not a local folder"):
        export_onnx(tmp_path / "missing_checkpoint", tmp_path / "out")
