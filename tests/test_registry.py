"""The model registry: one record per family, read by training, evaluation, serving and the cards."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoConfig

import hf_covid
from hf_covid.registry import (
    example_inputs,
    get_dataset_kind,
    get_model_family,
    list_models,
    model_families,
    register_model_family,
)


def test_list_models_names_the_five_families():
    assert list_models() == ["dual_input", "cnn_lstm", "dual_channel", "resnet", "lung_unet"]
    assert hf_covid.list_models() == list_models()


def test_family_is_found_by_key_and_by_model_type():
    assert get_model_family("cnn_lstm") is get_model_family("covid_cnn_lstm")
    assert get_model_family("resnet").model_type == "resnet"


def test_unknown_family_error_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown model 'vit'.*cnn_lstm \(covid_cnn_lstm\)"):
        get_model_family("vit")


def test_unknown_dataset_kind_error_lists_the_known_ones():
    with pytest.raises(KeyError, match="radiography, xray_ct"):
        get_dataset_kind("ct_only")


def test_a_clashing_family_is_refused():
    clash = dataclasses.replace(get_model_family("cnn_lstm"), key="other_lstm")
    with pytest.raises(ValueError, match="clashes with the registered 'cnn_lstm'"):
        register_model_family(clash)


def test_registering_the_same_record_twice_is_a_no_op():
    family = get_model_family("dual_channel")
    assert register_model_family(family) is family
    assert list_models().count("dual_channel") == 1


@pytest.mark.parametrize("family", model_families(), ids=lambda family: family.key)
def test_tiny_model_saves_and_reloads_through_its_auto_class(family, tmp_path):
    model = family.tiny_model()
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == family.model_type
    reloaded = family.auto_model_class.from_pretrained(tmp_path).eval()
    assert type(reloaded) is family.model_class
    inputs = example_inputs(model.config, batch_size=2, image_size=32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model.eval()(**inputs).logits)


@pytest.mark.parametrize("family", model_families(), ids=lambda family: family.key)
def test_classifiers_take_the_labels_of_their_dataset(family):
    model = family.tiny_model()
    if family.task == "segmentation":
        assert tuple(model.config.id2label.values()) == ("background", "lung")
    else:
        assert tuple(model.config.id2label[i] for i in range(model.config.num_labels)) == (
            family.dataset.labels
        )


def test_pretrained_options_need_a_custom_builder():
    with pytest.raises(ValueError, match="do not apply to 'cnn_lstm'.*resnet"):
        get_model_family("cnn_lstm").build_model(pretrained="microsoft/resnet-50")
