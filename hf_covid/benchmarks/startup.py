"""Start-up of the commands, each against the import it cannot avoid, in fresh processes.

``hf-covid --help`` should cost a fraction of ``import torch`` (the console script imports the
standard library only); ``hf-covid train --help`` and ``python scripts/train.py --help`` import
the training arguments, so they are set against ``from transformers import TrainingArguments``;
``import hf_covid`` registers the model families, so it is set against importing transformers'
model code. Every command runs in a new Python process, in rounds (each round runs every command
once, in turn), so that a change in the machine's load touches all of them alike; the median of
the rounds is the result, and the ratios are what the numbers mean.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["STARTUP_RATIOS", "TRAIN_SCRIPT", "measure_startup", "startup_commands"]

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train.py"
"""``scripts/train.py`` of the source checkout this package lies in."""

STARTUP_RATIOS: Mapping[str, tuple[str, str, float | None]] = {
    "hf-covid --help / import torch": ("hf-covid --help", "import torch", 0.5),
    "hf-covid train --help / TrainingArguments": (
        "hf-covid train --help",
        "from transformers import TrainingArguments",
        1.3,
    ),
    "scripts/train.py --help / TrainingArguments": (
        "scripts/train.py --help",
        "from transformers import TrainingArguments",
        1.3,
    ),
    "import hf_covid / import torch, transformers": (
        "import hf_covid",
        "import torch, transformers",
        None,
    ),
    "import hf_covid / PreTrainedModel": (
        "import hf_covid",
        "from transformers import PreTrainedModel",
        None,
    ),
}
"""Ratio name -> (command, baseline, target or None): the command's median over the baseline's."""


def startup_commands(train_script: Path = TRAIN_SCRIPT) -> dict[str, list[str]]:
    """Command name -> its arguments after the Python executable (``scripts/train.py`` only in
    a source checkout). ``hf-covid`` runs as ``python -m hf_covid_cli``, which is what the
    console script does."""
    imports = (
        "import torch",
        "import torch, transformers",
        "from transformers import TrainingArguments",
        "from transformers import PreTrainedModel",
        "import hf_covid",
    )
    commands = {statement: ["-c", statement] for statement in imports}
    commands["hf-covid --help"] = ["-m", "hf_covid_cli", "--help"]
    commands["hf-covid train --help"] = ["-m", "hf_covid_cli", "train", "--help"]
    if train_script.is_file():
        commands["scripts/train.py --help"] = [str(train_script), "--help"]
    return commands


def measure_startup(
    commands: Mapping[str, Sequence[str]],
    *,
    repeats: int = 5,
    ratios: Mapping[str, tuple[str, str, float | None]] = STARTUP_RATIOS,
) -> dict[str, Any]:
    """Time each command in a fresh process, ``repeats`` rounds interleaved.

    Args:
        commands: Name -> arguments after the Python executable (:func:`startup_commands`).
        repeats: Rounds; each runs every command once, in turn.
        ratios: The ratios to report (those whose two commands were both timed).

    Returns:
        ``seconds`` (median per command), ``runs_s`` (every run), ``ratios`` (name ->
        ``value``, ``command``, ``baseline``, ``target``), ``repeats``, and ``load_average`` /
        ``load_average_after`` (``/proc/loadavg``'s three numbers before and after).

    Raises:
        subprocess.CalledProcessError: a command failed.
    """
    runs: dict[str, list[float]] = {name: [] for name in commands}
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="hf_covid_startup_") as neutral:  # no local imports
        for _ in range(repeats):
            for name, arguments in commands.items():
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, *arguments],
                    cwd=neutral,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    check=True,
                )
                runs[name].append(time.perf_counter() - started)
    seconds = {name: statistics.median(times) for name, times in runs.items()}
    return {
        "repeats": repeats,
        "load_average": load_before,
        "load_average_after": list(os.getloadavg()),
        "seconds": seconds,
        "runs_s": runs,
        "ratios": {
            name: {
                "value": seconds[command] / seconds[baseline],
                "command": command,
                "baseline": baseline,
                "target": target,
            }
            for name, (command, baseline, target) in ratios.items()
            if command in seconds and baseline in seconds
        },
    }
