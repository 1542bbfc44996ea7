"""The ``hf-covid`` command: one subcommand per command-line entry point of the toolkit.

Research software, not a diagnostic device.

This module lies beside the ``hf_covid`` package, not in it, and imports nothing but the standard
library: importing any ``hf_covid.x`` first runs ``hf_covid/__init__.py``, which registers every
model family with the transformers Auto classes (and so imports torch and transformers' model
code). Here, ``hf-covid --help`` and the choice of a subcommand cost nothing; only the chosen
subcommand's module is imported, and a command's ``main`` parses its arguments before it imports
the code that does the work, so ``hf-covid train --help`` loads the training arguments only.

Each subcommand is one row of :data:`SUBCOMMANDS`, naming the ``module:function`` that implements
it; that function takes the remaining arguments and returns the exit status, and it is the same
function that the matching ``scripts/*.py`` wrapper calls, so ``hf-covid train --help`` and
``python scripts/train.py --help`` print the same options::

    hf-covid --help
    hf-covid synth --output outputs/demo/data --images-per-class 50
    hf-covid train cnn_lstm_synthetic --data_dir outputs/demo/data/radiography
    hf-covid evaluate outputs/demo/checkpoints/cnn_lstm --data_dir outputs/demo/data/radiography
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["PROGRAM", "SUBCOMMANDS", "Subcommand", "UnavailableCommandError", "format_help", "main"]

PROGRAM = "hf-covid"
"""The console script's name (``[project.scripts]`` in ``pyproject.toml``)."""


@dataclass(frozen=True)
class Subcommand:
    """One ``hf-covid`` subcommand.

    Attributes:
        target: ``"module:function"``; the function takes the arguments after the subcommand
            (a list of strings) and returns the exit status.
        summary: One line for ``hf-covid --help``.
        extra: The ``hf_covid[...]`` extra its optional dependencies come with, or None.
    """

    target: str
    summary: str
    extra: str | None = None

    @property
    def module(self) -> str:
        """The module that defines the entry point."""
        return self.target.partition(":")[0]

    @property
    def function(self) -> str:
        """The entry point's name inside :attr:`module`."""
        return self.target.partition(":")[2]


SUBCOMMANDS: Mapping[str, Subcommand] = MappingProxyType(
    {
        "train": Subcommand(
            "hf_covid.training.command:main", "train a model from a recipe and/or options"
        ),
        "evaluate": Subcommand(
            "hf_covid.evaluation.run:main",
            "evaluate a checkpoint: metrics with bootstrap intervals, report, figures",
        ),
        "explain": Subcommand(
            "hf_covid.explain.visualize:main",
            "CAM overlays and feature maps of a checkpoint; explanation quality on phantoms",
        ),
        "synth": Subcommand(
            "hf_covid.data.synthetic.run:main", "write synthetic chest phantom datasets"
        ),
        "bench": Subcommand(
            "hf_covid.benchmarks.run:main", "benchmark every case against its baseline"
        ),
        "serve": Subcommand("hf_covid.app:main", "serve the Gradio app", extra="app"),
        "prepare": Subcommand(
            "hf_covid.data.public.prepare:main",
            "write the Radiography and X-ray + CT layouts from public image collections",
        ),
        "download": Subcommand(
            "hf_covid.data.public.download:main",
            "download public collections and lay them out as the builders expect",
        ),
        "study": Subcommand(
            "hf_covid.study.run:main",
            "the real-data study: an ablation of shortcut mitigations on the public collections, "
            "tested on an unseen hospital's films, with the confounds measured",
        ),
        "export-data": Subcommand(
            "hf_covid.data.parquet:main",
            "write a data set as local Parquet or an imagefolder tree",
        ),
        "export": Subcommand(
            "hf_covid.export:main",
            "export a checkpoint to ONNX and check it under onnxruntime",
            extra="onnx",
        ),
    }
)
"""Subcommand name -> its entry point, in the order ``hf-covid --help`` lists them."""


def format_help() -> str:
    """The text of ``hf-covid --help``: usage and one line per subcommand."""
    width = max(len(name) for name in SUBCOMMANDS)
    rows = "\n".join(
        f"  {name:<{width}}  {command.summary}" for name, command in SUBCOMMANDS.items()
    )
    return (
        f"usage: {PROGRAM} <command> [options]\n\n"
        "Train, evaluate, explain, publish and serve COVID-19 chest X-ray and CT models\n"
        "(research software, not a diagnostic device).\n\n"
        f"commands:\n{rows}\n\n"
        f"Run '{PROGRAM} <command> --help' for the options of a command."
    )


class UnavailableCommandError(RuntimeError):
    """A subcommand's module or entry point is missing, or an optional dependency of it."""


def _entry_point(name: str, command: Subcommand) -> Callable[[list[str]], int | None]:
    """Import the subcommand's module and return its entry point.

    Raises:
        UnavailableCommandError: the module or function does not exist in this installation, or
            an optional dependency of the subcommand is missing (the message names the extra).
    """
    # Imported here on purpose: a subcommand's module, and with it torch, datasets, gradio or
    # onnx, loads only when chosen.
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if command.module == missing or command.module.startswith(f"{missing}."):
            raise UnavailableCommandError(
                f"{PROGRAM} {name}: {command.module} is not part of this installation"
            ) from None
        if command.extra is None or missing.startswith("hf_covid"):
            raise
        raise UnavailableCommandError(
            f"{PROGRAM} {name} needs the '{command.extra}' extra (missing module {missing!r}): "
            f"pip install 'hf_covid[{command.extra}]'"
        ) from None
    function = getattr(module, command.function, None)
    if not callable(function):
        raise UnavailableCommandError(
            f"{PROGRAM} {name}: {command.module} has no entry point {command.function}()"
        )
    return function


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hf-covid <command> [options]``.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: the subcommand's; 0 for ``--help``; 1 when the subcommand is not
        available here (see :class:`UnavailableCommandError`); 2 for a missing or unknown command.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(format_help(), file=sys.stdout if arguments else sys.stderr)
        return 0 if arguments else 2
    name, rest = arguments[0], arguments[1:]
    command = SUBCOMMANDS.get(name)
    if command is None:
        print(
            f"{PROGRAM}: unknown command {name!r}; choose one of {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    try:
        entry_point = _entry_point(name, command)
    except UnavailableCommandError as error:
        print(error, file=sys.stderr)
        return 1
    # Parsers name themselves after sys.argv[0]: make usage lines read "hf-covid train ...".
    program, sys.argv[0] = sys.argv[0], f"{PROGRAM} {name}"
    try:
        status = entry_point(rest)
    finally:
        sys.argv[0] = program
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
