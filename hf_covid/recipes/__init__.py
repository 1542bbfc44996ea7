"""The training recipes that ship with hf_covid, and the one way to read a recipe.

A recipe is a YAML file: a flat mapping of training argument names to values
(:mod:`hf_covid.training.arguments`). The recipes of the built-in model families are package data
in this folder, each named by its file stem (``cnn_lstm``, ``cnn_lstm_synthetic``,
``cnn_lstm_public``, ...); a recipe of your own is any YAML file, given by its path. Which recipe
a family uses for what (the demo, the real-data study, full-size training) is written once, in
its registry record (:attr:`hf_covid.registry.ModelFamily.recipes`); the file names mean nothing
by themselves, so a family may have any number of named recipes (e.g. variants for an
ablation)::

    >>> from hf_covid.recipes import load_recipe, recipe_names
    >>> load_recipe("cnn_lstm_synthetic")["model_type"]
    'cnn_lstm'
    >>> load_recipe("my_recipes/cnn_lstm_adults.yaml")   # a file of your own
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "RECIPE_DIR",
    "RECIPE_SUFFIXES",
    "RecipeError",
    "load_recipe",
    "recipe_names",
    "recipe_path",
]

RECIPE_DIR = Path(__file__).resolve().parent
"""The folder of the packaged recipes (``hf_covid/recipes/*.yaml``)."""

RECIPE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")
"""File suffixes of a recipe given by its path."""


class RecipeError(ValueError):
    """A recipe that does not exist or is not a mapping of argument names to values."""


def recipe_names() -> list[str]:
    """The names of the packaged recipes, sorted."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def recipe_path(recipe: str | os.PathLike) -> Path:
    """The file of a recipe given by name (a packaged recipe) or by its path.

    A value that ends in ``.yaml`` / ``.yml`` or names an existing file is a path; any other
    value is the name of a packaged recipe.

    Raises:
        RecipeError: no such file, or no packaged recipe of that name (the message lists them).
    """
    path = Path(recipe).expanduser()
    if path.suffix in RECIPE_SUFFIXES or path.is_file():
        if not path.is_file():
            raise RecipeError(f"recipe {path}: file not found")
        return path
    packaged = RECIPE_DIR / f"{recipe}.yaml"
    if not packaged.is_file():
        raise RecipeError(
            f"no recipe named {str(recipe)!r}; give a YAML file or one of: "
            + ", ".join(recipe_names())
        )
    return packaged


def load_recipe(recipe: str | os.PathLike) -> dict[str, Any]:
    """The values of a recipe given by name or path (see :func:`recipe_path`).

    The keys are not checked here: :func:`hf_covid.training.parse_arguments` checks them against
    the training arguments.

    Raises:
        RecipeError: the recipe does not exist or is not a mapping.
    """
    path = recipe_path(recipe)
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of argument names to values")
    return values
