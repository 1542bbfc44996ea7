"""The models the benchmarks time: every registered family with a demo recipe, built from it.

Speed does not depend on the weights, so the models are randomly initialised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from ..checkpoints import save_model_and_processor
from ..registry import get_model_family, model_families
from ..training import DataArguments, ModelArguments, build_image_processor, checked_recipe

__all__ = ["build_demo_model", "load_demo_recipes", "save_random_checkpoints"]


def load_demo_recipes() -> dict[str, dict[str, Any]]:
    """The demo recipe (``recipes["demo"]`` of its record) of every registered family that has
    one, by family key, in registration order."""
    return {
        family.key: checked_recipe(family.recipes["demo"])
        for family in model_families()
        if "demo" in family.recipes
    }


def build_demo_model(recipe: dict[str, Any]) -> PreTrainedModel:
    """A randomly initialised model of a demo recipe, with its family's default classes."""
    family = get_model_family(recipe["model_type"])
    return family.build_model(
        config_overrides=recipe.get("config_overrides"), pretrained=recipe.get("pretrained")
    )


def save_random_checkpoints(
    recipes: dict[str, dict[str, Any]], folder: str | Path, image_size: int | None = None
) -> dict[str, str]:
    """Save a randomly initialised checkpoint (model + image processor) per recipe.

    Args:
        recipes: Demo recipes by model key (:func:`load_demo_recipes`).
        folder: Where the ``<key>/`` checkpoint folders go.
        image_size: Processor image size (None: each recipe's ``image_size``).

    Returns:
        Model key -> checkpoint folder, as the app's ``AppConfig.checkpoints`` takes it.
    """
    checkpoints = {}
    for key, recipe in recipes.items():
        target = Path(folder) / key
        arguments = ModelArguments(
            model_type=recipe["model_type"],
            config_overrides=recipe.get("config_overrides"),
            pretrained=recipe.get("pretrained"),
        )
        save_model_and_processor(
            build_demo_model(recipe),
            build_image_processor(
                arguments, DataArguments(image_size=image_size or recipe["image_size"])
            ),
            target,
        )
        checkpoints[key] = str(target)
    return checkpoints
