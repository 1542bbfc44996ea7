"""Recipes: packaged ones by name, a user's own YAML by path, and the registry naming which
recipe each family runs for what."""

from __future__ import annotations

import dataclasses

import pytest

from hf_covid.recipes import RECIPE_DIR, RecipeError, load_recipe, recipe_names, recipe_path
from hf_covid.registry import RECIPE_PURPOSES, get_model_family, model_families
from hf_covid.training import ConfigurationError, parse_arguments


def test_every_recipe_a_family_names_exists_and_trains_that_family():
    assert get_model_family("cnn_lstm").recipes["demo"] == "cnn_lstm_synthetic"
    for family in model_families():
        assert set(family.recipes) <= set(RECIPE_PURPOSES), family.key
        for purpose, recipe in family.recipes.items():
            model_args, _, _ = parse_arguments([recipe, "--output_dir", "out"])
            assert get_model_family(model_args.model_type) is family, (family.key, purpose)


def test_every_packaged_recipe_names_a_registered_family():
    assert len(recipe_names()) >= 15
    for name in recipe_names():
        get_model_family(load_recipe(name)["model_type"])


def test_a_recipe_is_found_by_name_or_by_path(tmp_path):
    assert recipe_path("cnn_lstm_synthetic") == RECIPE_DIR / "cnn_lstm_synthetic.yaml"
    own = tmp_path / "my_cnn_lstm.yaml"
    own.write_text("model_type: cnn_lstm\nimage_size: 40\n")
    assert recipe_path(own) == own and recipe_path(str(own)) == own
    assert load_recipe(own) == {"model_type": "cnn_lstm", "image_size": 40}
    no_suffix = tmp_path / "recipe_without_suffix"
    no_suffix.write_text("model_type: resnet\n")
    assert load_recipe(no_suffix) == {"model_type": "resnet"}


def test_an_unknown_recipe_name_lists_the_packaged_ones():
    with pytest.raises(RecipeError, match=r"no recipe named 'cnn_lstm_tiny'.*cnn_lstm_synthetic"):
        recipe_path("cnn_lstm_tiny")
    with pytest.raises(RecipeError, match="missing.yaml: file not found"):
        recipe_path("missing.yaml")


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- model_type\n- cnn_lstm\n")
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(listed)


def test_the_command_line_takes_a_recipe_by_name_or_path_and_names_a_bad_one(tmp_path):
    by_name = parse_arguments(["dual_input_synthetic", "--output_dir", str(tmp_path)])
    own = tmp_path / "own.yaml"
    own.write_text((RECIPE_DIR / "dual_input_synthetic.yaml").read_text())
    by_path = parse_arguments(["--config", str(own), "--output_dir", str(tmp_path)])
    assert by_name[0] == by_path[0] and by_name[1] == by_path[1]
    with pytest.raises(ConfigurationError, match="no recipe named 'dual_inputt'"):
        parse_arguments(["dual_inputt"])
    own.write_text("model_type: cnn_lstm\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigurationError, match=r"own.yaml: unknown key 'learning_rat'"):
        parse_arguments([str(own)])


def test_a_family_naming_a_missing_recipe_or_an_unknown_purpose_is_refused():
    family = get_model_family("cnn_lstm")
    with pytest.raises(RecipeError, match="no recipe named 'cnn_lstm_gone'"):
        dataclasses.replace(family, recipes={"demo": "cnn_lstm_gone"})
    with pytest.raises(ValueError, match=r"recipe purposes \['ablation'\]"):
        dataclasses.replace(family, recipes={"ablation": "cnn_lstm_public"})
