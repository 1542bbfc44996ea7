"""The architecture's promises: a model is one registry record, training and serving feed a model
the same values, and the package's import graph and public surface stay clean.

(a) A throw-away sixth model family, defined here and registered with one
    `register_model_family` call, trains (`hf_covid.train`), evaluates (`evaluate_checkpoint`) and
    serves (`load_predictor`) with no other edit anywhere.
(b) For the same image, the training collator and the saved processor (as `ChestPredictor` uses
    it) give the model the same input, and the model the same probabilities.
(c) No import cycle among hf_covid modules, no function-level import except of an optional
    dependency, `__all__` in every public module naming only what it defines, modules of at most
    about 600 lines, no docstring pointing outside the repository.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from types import MappingProxyType

import datasets
import numpy as np
import pytest
import tomllib
import torch
from huggingface_hub.dataclasses import strict
from PIL import Image
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

import hf_covid
from hf_covid import registry
from hf_covid._layers import LAYERS, Layer
from hf_covid.data import build_radiography_dataset, generate_radiography, preprocess_for_training
from hf_covid.data.pipeline import ChestBatchCollator
from hf_covid.evaluation import evaluate_checkpoint
from hf_covid.models.configuration_common import ChestClassifierConfig
from hf_covid.models.image_processing_chest import ChestImageProcessor
from hf_covid.models.layers import (
    ChestPreTrainedModel,
    ClassifierHead,
    ConvEncoder,
    global_average_pool,
)
from hf_covid.registry import ModelFamily, register_model_family
from hf_covid.serving import ChestPredictor, load_predictor
from hf_covid.training import parse_arguments
from hf_covid_cli import SUBCOMMANDS

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = REPOSITORY / "hf_covid"
PHANTOM_SIZE = 48

# ---- (a) a sixth model family ----------------------------------------------------------------


@strict
class GlobalPoolCNNConfig(ChestClassifierConfig):
    r"""
    Configuration of [`GlobalPoolCNNForImageClassification`]: conv blocks, global average pooling
    and an MLP head; a model that exists only in this test.
    """

    model_type = "covid_architecture_test"


class GlobalPoolCNNForImageClassification(ChestPreTrainedModel):
    """Conv blocks, global average pooling, an MLP head: the smallest hf_covid classifier."""

    config_class = GlobalPoolCNNConfig  # not an annotation: annotations are strings in this file
    gradcam_target_layers = {"image": "encoder.final_feature_map"}

    def __init__(self, config: GlobalPoolCNNConfig):
        super().__init__(config)
        self.encoder = ConvEncoder(config.num_channels, config.widths)
        self.classifier = ClassifierHead(
            config.widths[-1],
            config.classifier_hidden_sizes,
            config.num_labels,
            config.classifier_dropout,
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutputWithNoAttention:
        feature_maps = self.encoder(pixel_values)
        logits = self.classifier(global_average_pool(feature_maps[-1]))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(
            loss=loss, logits=logits, hidden_states=feature_maps if output_hidden_states else None
        )


SIXTH_FAMILY = ModelFamily(
    key="architecture_test",
    model_type=GlobalPoolCNNConfig.model_type,
    display_name="Global-pool CNN (architecture test)",
    config_class=GlobalPoolCNNConfig,
    model_class=GlobalPoolCNNForImageClassification,
    auto_class="AutoModelForImageClassification",
    task="classification",
    dataset_kind="radiography",
    input_names=("pixel_values",),
    target="labels",
    card_summary="Conv blocks, global average pooling and an MLP head (a test model).",
    tiny_config=MappingProxyType({"widths": [4, 8], "classifier_hidden_sizes": [8]}),
)


@pytest.fixture(scope="module")
def sixth_family() -> Iterator[ModelFamily]:
    """The family registered for this module's tests, then the registry as it was."""
    registered = dict(registry._REGISTRY)
    family = register_model_family(SIXTH_FAMILY)
    try:
        yield family
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(registered)


@pytest.fixture(scope="module")
def radiography_root(tmp_path_factory) -> Path:
    return generate_radiography(
        tmp_path_factory.mktemp("radiography"),
        images_per_class=6,
        image_size=PHANTOM_SIZE,
        mask_size=PHANTOM_SIZE,
        progress=False,
    )


@pytest.fixture(scope="module")
def trained_checkpoint(sixth_family, radiography_root, tmp_path_factory) -> Path:
    """The sixth family trained by `hf_covid.train` for one epoch on phantoms."""
    output_dir = tmp_path_factory.mktemp("checkpoints") / sixth_family.key
    recipe = {
        "model_type": sixth_family.key,
        "config_overrides": dict(sixth_family.tiny_config),
        "data_dir": str(radiography_root),
        "output_dir": str(output_dir),
        "image_size": PHANTOM_SIZE,
        "num_train_epochs": 1,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "logging_steps": 1,
        "early_stopping_patience": 0,
        "disable_tqdm": True,
        "report_to": "none",
    }
    results = hf_covid.train(*parse_arguments([], recipe=recipe))
    assert 0.0 <= results["metrics"]["accuracy"] <= 1.0
    return output_dir


def test_the_sixth_family_is_listed_while_registered_only(sixth_family):
    assert hf_covid.list_models()[-1] == "architecture_test"
    assert hf_covid.get_model_family("covid_architecture_test") is sixth_family


def test_a_registered_family_trains_evaluates_and_serves(trained_checkpoint, radiography_root):
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert (trained_checkpoint / name).is_file(), name
    assert "Global-pool CNN (architecture test)" in (trained_checkpoint / "README.md").read_text()

    results = evaluate_checkpoint(
        trained_checkpoint,
        data_dir=radiography_root,
        output_dir=trained_checkpoint / "evaluation",
        n_resamples=20,
        figures=False,
        progress=False,
    )
    assert 0.0 <= results["metrics"]["accuracy"] <= 1.0
    assert (trained_checkpoint / "evaluation" / "eval_results.json").is_file()

    predictor = load_predictor(trained_checkpoint)
    assert isinstance(predictor, ChestPredictor)
    image = next(radiography_root.glob("COVID/images/*.png"))
    prediction = predictor.predict(image, segment_lungs=False)
    assert set(prediction.probabilities) == set(hf_covid.RADIOGRAPHY_LABELS)
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.gradcam["xray"].shape == (PHANTOM_SIZE, PHANTOM_SIZE)


# ---- (b) one preprocessing path --------------------------------------------------------------


def _test_split(root: Path, image_size: int) -> tuple[list[Path], list[dict]]:
    """The test split's image files, and its examples as training preprocesses them."""
    raw = build_radiography_dataset(root)
    files = [
        Path(image["path"])
        for image in raw["test"].cast_column("image", datasets.Image(decode=False))["image"]
    ]
    prepared = preprocess_for_training(raw, image_size=image_size, mask_column=None)["test"]
    return files, [prepared[index] for index in range(len(prepared))]


@pytest.mark.parametrize("family_key", ["architecture_test", "resnet"])
def test_training_input_equals_serving_input_at_the_model_size(
    sixth_family, trained_checkpoint, radiography_root, family_key
):
    """8-bit phantoms at the model's size: the collator and the saved processor agree exactly."""
    if family_key == sixth_family.key:
        processor = ChestImageProcessor.from_pretrained(trained_checkpoint)
    else:  # three channels and ImageNet normalisation
        family = hf_covid.get_model_family(family_key)
        processor = ChestImageProcessor(
            size={"height": PHANTOM_SIZE, "width": PHANTOM_SIZE}, **family.processor_options
        )
    files, examples = _test_split(radiography_root, PHANTOM_SIZE)
    training = ChestBatchCollator(None, processor)(examples)["pixel_values"]
    images = [hf_covid.load_image(path) for path in files]
    serving = processor(images=images, return_tensors="pt")["pixel_values"]
    assert training.shape == serving.shape
    torch.testing.assert_close(training, serving, rtol=0, atol=1e-6)


def test_served_probabilities_equal_the_model_on_the_training_batch(
    trained_checkpoint, radiography_root
):
    predictor = load_predictor(trained_checkpoint)
    files, examples = _test_split(radiography_root, PHANTOM_SIZE)
    collator = ChestBatchCollator(None, predictor.image_processor, input_names=("pixel_values",))
    batch = collator(examples)
    with torch.inference_mode():
        trained = predictor.model(pixel_values=batch["pixel_values"]).logits.softmax(-1)
    labels = [predictor.model.config.id2label[index] for index in range(trained.shape[1])]
    for path, expected in zip(files, trained, strict=True):
        served = predictor.predict(path, explain=False, segment_lungs=False).probabilities
        np.testing.assert_allclose([served[name] for name in labels], expected, atol=1e-6)


def test_resized_training_input_differs_from_serving_by_the_uint8_step_at_most(
    radiography_root,
):
    """Resized images: training stores them as uint8 (the preprocessing cache), serving keeps
    floats; the two differ by at most half a grey level."""
    processor = ChestImageProcessor(size={"height": 32, "width": 32})
    files, examples = _test_split(radiography_root, 32)
    training = ChestBatchCollator(None, processor)(examples)["pixel_values"]
    serving = processor(images=[hf_covid.load_image(path) for path in files], return_tensors="pt")[
        "pixel_values"
    ]
    difference = (training - serving).abs().max().item()
    assert 0 < difference <= 0.5 / 255 + 1e-6
    assert (training * 255 - (training * 255).round()).abs().max() < 1e-4  # training: uint8 levels


# ---- (c) imports and public surface ----------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPOSITORY).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {
    _module_name(path): path
    for path in [*sorted(PACKAGE.rglob("*.py")), REPOSITORY / "hf_covid_cli.py"]
    if "__pycache__" not in path.parts
}
"""Every module of the package, and the console script's module beside it."""
PUBLIC_MODULES = [name for name in MODULES if not any(p.startswith("_") for p in name.split("."))]


def _imported_module(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` statement reads."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join([*package, *([node.module] if node.module else [])])


def _nodes(tree: ast.AST, deferred: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``tree``, with whether it runs only when a function is called."""
    for child in ast.iter_child_nodes(tree):
        inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield child, inner
        yield from _nodes(child, inner)


def _named_modules(value: ast.AST) -> list[str]:
    """The module a string names: ``"hf_covid.x"``, ``"hf_covid.x:main"``, or an f-string's
    constant package prefix (``f"hf_covid.study.{name}"`` -> ``hf_covid.study``)."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return [value.value.partition(":")[0]]
    if isinstance(value, ast.JoinedStr) and isinstance(getattr(value.values[0], "value", 0), str):
        return [value.values[0].value.rpartition(".")[0]]
    return []


def _imports(module: str, source: str) -> dict[str, bool]:
    """Every module that ``module`` imports -> whether it does so only when a function runs.

    Counted: import statements (``from hf_covid.x import y`` counts as ``hf_covid.x.y`` when that
    is a module), and as deferred the names in ``importlib.import_module(...)``, in a lazy
    export table (``_LAZY_EXPORTS``) and in the console script's ``Subcommand(...)`` rows.
    """
    path = MODULES.get(module, Path(f"{module.replace('.', '/')}.py"))
    found: dict[str, bool] = {}

    def add(names: list[str], deferred: bool) -> None:
        for name in names:
            found[name] = found.get(name, True) and deferred

    for node, deferred in _nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            add([alias.name for alias in node.names], deferred)
        elif isinstance(node, ast.ImportFrom):
            target = _imported_module(module, path, node)
            submodules = {f"{target}.{alias.name}" for alias in node.names} & MODULES.keys()
            add([*submodules, *([] if len(submodules) == len(node.names) else [target])], deferred)
        elif isinstance(node, ast.Call) and node.args:
            callee = getattr(node.func, "attr", getattr(node.func, "id", None))
            if callee in ("import_module", "Subcommand"):
                add(_named_modules(node.args[0]), True)
        elif isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(target, "id", None) == "_LAZY_EXPORTS" for target in targets):
                add([name for value in node.value.values for name in _named_modules(value)], True)
    return found


IMPORTS: dict[str, dict[str, bool]] = {
    name: _imports(name, path.read_text(encoding="utf-8")) for name, path in MODULES.items()
}
"""Module -> what it imports -> deferred only (see :func:`_imports`)."""


def _import_edges(module: str, *, deferred: bool) -> set[str]:
    """hf_covid modules that ``module`` imports: when it is imported, or also later."""
    return {name for name, late in IMPORTS[module].items() if deferred or not late} & MODULES.keys()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        for neighbour in graph[node]:
            if neighbour not in index:
                visit(neighbour)
                lowest[node] = min(lowest[node], lowest[neighbour])
            elif neighbour in stack:
                lowest[node] = min(lowest[node], index[neighbour])
        if lowest[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_hf_covid_modules():
    assert _cycles({name: _import_edges(name, deferred=False) for name in MODULES}) == []


def _optional_import_names() -> set[str]:
    """Top-level import names of the distributions in the optional extras (not ``dev``)."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    distributions = {
        re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for extra, requirements in project["optional-dependencies"].items()
        if extra != "dev"
        for requirement in requirements
    }
    return {
        name
        for name, owners in importlib.metadata.packages_distributions().items()
        if any(owner.lower().replace("_", "-") in distributions for owner in owners)
    }


def _modules_needing(optional: set[str]) -> set[str]:
    """hf_covid modules whose import imports an optional dependency (directly or through other
    hf_covid modules), e.g. the app (gradio)."""
    imports = {
        name: {imported for imported, late in found.items() if not late}
        for name, found in IMPORTS.items()
    }
    needing = {
        name for name, names in imports.items() if {n.split(".")[0] for n in names} & optional
    }
    while grown := {name for name, names in imports.items() if names & needing} - needing:
        needing |= grown
    return needing


COMMAND_ENTRY_POINTS = {(command.module, command.function) for command in SUBCOMMANDS.values()}
"""The subcommands' ``(module, function)``: the one place that may import our own code late."""


def test_function_level_imports_are_of_optional_dependencies_only():
    """A function may import an optional dependency, or a module of ours that needs one; a
    subcommand's entry point may also import the code that does the work after it has parsed
    its arguments (``--help`` then costs the parser alone)."""
    optional = _optional_import_names()
    assert {"pydicom", "gradio", "onnxruntime"} <= optional
    allowed = _modules_needing(optional)
    assert "hf_covid.app" in allowed and "hf_covid.registry" not in allowed
    assert ("hf_covid.training.command", "main") in COMMAND_ENTRY_POINTS
    found = set()
    for module, path in MODULES.items():
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            command = (module, function.name) in COMMAND_ENTRY_POINTS
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [_imported_module(module, path, node)]
                else:
                    continue
                found |= {
                    (module, name if name.startswith("hf_covid") else name.split(".")[0])
                    for name in names
                    if name.split(".")[0] not in optional
                    and name not in allowed
                    and not (command and name.startswith("hf_covid"))
                }
    assert not found, sorted(found)


# ---- (d) the layer table ---------------------------------------------------------------------


def _in_row(pattern: str, module: str) -> bool:
    if pattern.endswith(".*"):
        return module == pattern[:-2] or module.startswith(pattern[:-1])
    return module == pattern


def _rows(module: str, layers: Sequence[Layer]) -> list[int]:
    """The rows (indices into ``layers``) whose patterns name ``module``."""
    return [
        index
        for index, layer in enumerate(layers)
        if any(_in_row(pattern, module) for pattern in layer.modules)
    ]


def _upward_imports(edges: Mapping[str, set[str]], layers: Sequence[Layer]) -> list[str]:
    """Every import of a module from a higher row than the importer's, in words."""
    row = {module: _rows(module, layers)[0] for module in {*edges, *chain(*edges.values())}}
    return sorted(
        f"{module} ({layers[row[module]].name}) imports {target} ({layers[row[target]].name})"
        for module, targets in edges.items()
        for target in targets
        if row[target] > row[module]
    )


def test_the_layer_check_finds_an_upward_import_however_it_is_made():
    layers = (Layer("low", ("pkg.low.*",), ""), Layer("high", ("pkg.high",), ""))
    edges = {"pkg.low": {"pkg.low.a"}, "pkg.low.a": {"pkg.high"}, "pkg.high": {"pkg.low.a"}}
    assert _upward_imports(edges, layers) == ["pkg.low.a (low) imports pkg.high (high)"]
    assert _upward_imports({"pkg.high": {"pkg.low", "pkg.low.a"}}, layers) == []
    source = (
        "import importlib\n"
        "_LAZY_EXPORTS = {'name': 'hf_covid.serving'}\n"
        "def build():\n"
        "    from hf_covid.study import run\n"
        "    return importlib.import_module('hf_covid.app'), importlib.import_module(f'hf_covid.demo.{1}')\n"
    )
    found = _imports("hf_covid.data.fake", source)
    assert found == {
        "importlib": False,
        "hf_covid.serving": True,
        "hf_covid.study.run": True,
        "hf_covid.app": True,
        "hf_covid.demo": True,  # the f-string's constant package prefix
    }


def test_every_module_is_in_exactly_one_row_and_every_row_names_a_module():
    assert {module: rows for module in MODULES if len(rows := _rows(module, LAYERS)) != 1} == {}
    patterns = [pattern for layer in LAYERS for pattern in layer.modules]
    assert [p for p in patterns if not any(_in_row(p, module) for module in MODULES)] == []


def test_no_module_imports_from_a_higher_row():
    """At module level, in a function, as a lazy export or through importlib."""
    edges = {module: _import_edges(module, deferred=True) for module in MODULES}
    assert _upward_imports(edges, LAYERS) == []


def _layer_table(layers: Sequence[Layer]) -> str:
    rows = [
        f"| {layer.name} | {', '.join(f'`{pattern}`' for pattern in layer.modules)} | "
        f"{layer.summary} |"
        for layer in layers
    ]
    return "\n".join(["| layer | modules | what they do |", "|---|---|---|", *rows])


def test_the_documented_layer_table_is_the_layers_table():
    table = _layer_table(LAYERS)
    documented = (REPOSITORY / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert table in documented, f"docs/architecture.md must show hf_covid._layers.LAYERS:\n{table}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_module_all_names_resolve(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__"
    assert len(names) == len(set(names)), f"{module_name}.__all__ repeats a name"
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what it does not have: {missing}"


def test_importing_hf_covid_loads_the_registry_and_models_only():
    script = (
        "import sys, hf_covid, hf_covid.data; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'datasets', 'matplotlib', "
        "'gradio', 'evaluate', 'onnx', 'pydicom'})); "
        "print(sorted(m for m in sys.modules if m.startswith('hf_covid.') "
        "and not m.startswith(('hf_covid.models', 'hf_covid.registry', 'hf_covid.recipes', 'hf_covid._lazy'))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert output == ["[]", "['hf_covid.data']"]


def test_lazy_packages_list_their_exports_and_import_them_on_first_use():
    for package in (hf_covid, hf_covid.data):
        assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'not_an_export'"):
        _ = hf_covid.not_an_export
    assert hf_covid.data.load_image is hf_covid.load_image


MAX_MODULE_LINES = 650


def test_no_module_is_much_over_600_lines():
    long = {
        name
        for name, path in MODULES.items()
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_MODULE_LINES
    }
    assert not long, sorted(long)


def test_no_docstring_points_outside_the_repository():
    outside = re.compile(r"\.\./shared|/work/")
    found = {name for name, path in MODULES.items() if outside.search(path.read_text("utf-8"))}
    scripts = [path.name for path in (REPOSITORY / "scripts").glob("*.py")]
    found |= {
        f"scripts/{name}"
        for name in scripts
        if outside.search((REPOSITORY / "scripts" / name).read_text("utf-8"))
    }
    assert not found, sorted(found)


def test_phantoms_written_here_are_8_bit_at_the_model_size(radiography_root):
    with Image.open(next(radiography_root.glob("Normal/images/*.png"))) as image:
        assert image.mode == "L" and image.size == (PHANTOM_SIZE, PHANTOM_SIZE)
