"""`hf-covid`: the subcommand table, help, dispatch to the scripts' entry points, clear errors."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

import hf_covid_cli as cli
from hf_covid.data.synthetic import run as synthetic_run

AVAILABLE = tuple(cli.SUBCOMMANDS)


def test_help_lists_every_subcommand_with_its_summary(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name, command in cli.SUBCOMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(command.summary)}$", text, re.MULTILINE)


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "commands:" in capsys.readouterr().err


def test_unknown_command_names_the_known_ones(capsys):
    assert cli.main(["fit"]) == 2
    error = capsys.readouterr().err
    assert "unknown command 'fit'" in error and "train, evaluate" in error


def test_every_target_is_module_colon_function():
    for command in cli.SUBCOMMANDS.values():
        assert re.fullmatch(r"hf_covid(\.\w+)*:\w+", command.target), command.target


@pytest.mark.parametrize("name", AVAILABLE)
def test_available_subcommands_resolve_to_an_entry_point(name):
    command = cli.SUBCOMMANDS[name]
    module = importlib.import_module(command.module)
    assert callable(getattr(module, command.function))


def test_subcommand_help_is_the_script_help_under_the_subcommand_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["synth", "--help"])
    assert exit_info.value.code == 0
    through_cli = capsys.readouterr().out
    assert through_cli.startswith("usage: hf-covid synth ")
    with pytest.raises(SystemExit):
        synthetic_run.main(["--help"])
    direct = capsys.readouterr().out
    # The same parser: everything after the usage lines (whose wrapping follows the name) agrees.
    assert through_cli.split("\n\n", 1)[1] == direct.split("\n\n", 1)[1]
    assert not sys.argv[0].startswith("hf-covid")  # restored after the subcommand ran


def test_train_help_is_the_training_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: hf-covid train ")
    assert "--model_type" in text and "--data_dir" in text and "--num_train_epochs" in text


@pytest.mark.parametrize(
    ("name", "option"),
    [("prepare", "--class-map"), ("study", "--recipe"), ("export-data", "--format")],
)
def test_subcommand_help_prints_its_options(name, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    usage = text.splitlines()[0]
    assert usage.startswith("usage: ") and f"{name} [-h]" in usage and option in text


def test_prepare_refuses_a_folder_without_collections_with_exit_status_2(tmp_path, capsys):
    assert cli.main(["prepare", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_synth_writes_a_layout_and_returns_the_exit_status(tmp_path, capsys):
    arguments = ["--output", str(tmp_path), "--layout", "radiography", "--images-per-class", "1",
                 "--image-size", "48", "--mask-size", "32", "--no-progress"]  # fmt: skip
    assert cli.main(["synth", *arguments]) == 0
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/images/COVID-1.png")] == [
        "COVID/images/COVID-1.png"
    ]
    assert str(tmp_path.resolve()) in capsys.readouterr().out
    assert cli.main(["synth", *arguments]) == 2  # the folder is not empty: refused
    assert "not empty" in capsys.readouterr().err


def test_a_missing_module_or_function_is_reported(monkeypatch, capsys):
    monkeypatch.setattr(
        cli,
        "SUBCOMMANDS",
        MappingProxyType(
            {
                "gone": cli.Subcommand("hf_covid.no_such_module:main", "a module not installed"),
                "nofunction": cli.Subcommand("hf_covid.registry:no_such_function", "no function"),
            }
        ),
    )
    assert cli.main(["gone"]) == 1
    assert "hf_covid.no_such_module is not part of this installation" in capsys.readouterr().err
    assert cli.main(["nofunction"]) == 1
    assert "has no entry point no_such_function()" in capsys.readouterr().err


def test_a_missing_optional_dependency_names_the_extra(monkeypatch, capsys, tmp_path):
    target = tmp_path / "needs_gradio_target.py"
    target.write_text("import gradio_is_not_installed_here\n\ndef main(argv):\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    command = cli.Subcommand("needs_gradio_target:main", "needs gradio", extra="app")
    monkeypatch.setattr(cli, "SUBCOMMANDS", MappingProxyType({"serve": command}))
    assert cli.main(["serve"]) == 1
    error = capsys.readouterr().err
    assert "needs the 'app' extra" in error and "pip install 'hf_covid[app]'" in error
    assert "gradio_is_not_installed_here" in error


def test_no_script_shadows_a_package_it_could_import():
    """``python scripts/x.py`` puts ``scripts/`` first on ``sys.path``: a script named like an
    installed or standard module (``evaluate.py``) would be imported instead of it."""
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    taken = set(importlib.metadata.packages_distributions()) | set(sys.stdlib_module_names)
    assert {"evaluate", "datasets", "json"} <= taken
    assert sorted(path.name for path in scripts.glob("*.py") if path.stem in taken) == []


def _imported_by(arguments: list[str]) -> dict[str, list[str]]:
    """What a fresh process has imported after ``hf-covid ARGUMENTS`` (help exits)."""
    script = (
        "import contextlib, io, json, sys, hf_covid_cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        hf_covid_cli.main({arguments!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps({'hf_covid': sorted(m for m in sys.modules if m.startswith('hf_covid')),"
        " 'top': sorted({m.split('.')[0] for m in sys.modules}),"
        " 'trainer': 'transformers.trainer' in sys.modules}))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.splitlines()[-1])


def test_the_command_and_its_help_import_no_model_code():
    imported = _imported_by(["--help"])
    assert imported["hf_covid"] == ["hf_covid_cli"]
    assert not {"torch", "transformers", "numpy"} & set(imported["top"])


def test_train_help_imports_the_training_arguments_and_not_the_training_stack():
    imported = _imported_by(["train", "--help"])
    assert "hf_covid.training.arguments" in imported["hf_covid"]
    allowed = ("hf_covid.models", "hf_covid.registry", "hf_covid.recipes", "hf_covid._lazy")
    others = {"hf_covid", "hf_covid_cli", "hf_covid.training", "hf_covid.training.command"}
    assert [
        name
        for name in imported["hf_covid"]
        if not name.startswith(allowed) and name not in {*others, "hf_covid.training.arguments"}
    ] == []
    assert not {"datasets", "evaluate", "matplotlib", "gradio"} & set(imported["top"])
    assert imported["trainer"] is False
