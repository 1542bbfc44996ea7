"""The wheel holds the whole library: every package and every data file the code reads."""

from __future__ import annotations

from pathlib import Path

import tomllib

import hf_covid

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(hf_covid.__file__).parent


def _setuptools_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]


def test_every_package_on_disk_is_listed_for_the_wheel():
    on_disk = {
        ".".join(("hf_covid", *init.parent.relative_to(PACKAGE_DIR).parts))
        for init in PACKAGE_DIR.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    listed = set(_setuptools_table()["packages"])
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - on_disk == {"hf_covid.model_cards"}  # mapped from model_cards/ by package-dir


def test_every_non_python_file_of_the_library_is_package_data():
    package_data = _setuptools_table()["package-data"]
    missing = []
    for path in PACKAGE_DIR.rglob("*"):
        if not path.is_file() or path.suffix == ".pyc" or "__pycache__" in path.parts:
            continue
        if path.suffix == ".py" and (path.parent / "__init__.py").is_file():
            continue  # a module of a listed package
        owner = path.parent
        while not (owner / "__init__.py").is_file():
            owner = owner.parent
        package = ".".join(("hf_covid", *owner.relative_to(PACKAGE_DIR).parts))
        relative = path.relative_to(owner)
        patterns = package_data.get(package, [])
        if not any(relative.match(pattern) for pattern in patterns):
            missing.append(f"{package}: {relative}")
    assert missing == []


def test_the_console_script_module_beside_the_package_is_in_the_wheel():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    module = project["scripts"]["hf-covid"].partition(":")[0]
    assert _setuptools_table()["py-modules"] == [module]
    assert (ROOT / f"{module}.py").is_file()
