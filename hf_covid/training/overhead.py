"""Speed: the Trainer against a plain PyTorch loop on the same model, data and optimizer."""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from .arguments import ChestTrainingArguments, DataArguments, ModelArguments
from .trainer import build_trainer, optimizer_class_and_kwargs

__all__ = ["measure_trainer_overhead"]


class _StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def _steady_samples_per_second(times: list[float], batch_size: int, warmup: int) -> float:
    """Throughput between the end of step ``warmup`` and the end of the last step."""
    timed = times[warmup - 1 :]
    return (len(timed) - 1) * batch_size / (timed[-1] - timed[0])


def measure_trainer_overhead(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ChestTrainingArguments,
    *,
    steps: int = 40,
    warmup_steps: int = 5,
    repeats: int = 3,
) -> dict[str, Any]:
    """Training throughput of the Trainer against a plain PyTorch loop, same model and data.

    Both start from the same weights and use the same collator (with augmentation), DataLoader
    settings, batch size, optimizer and gradient clipping; steady-state samples/s is timed from
    the end of step ``warmup_steps`` to the end of step ``steps``, without evaluation or saving.
    The two loops alternate ``repeats`` times and the medians are compared, so that a burst of
    load from other processes does not land on one side only.

    Returns:
        ``trainer_samples_per_second`` and ``plain_samples_per_second`` (medians), ``overhead``
        (``1 - trainer / plain``: 0.05 means the Trainer is 5 % slower), every repeat's rates,
        ``steps`` and ``batch_size``.
    """
    if steps <= warmup_steps + 1:
        raise ValueError(f"steps ({steps}) must exceed warmup_steps + 1 ({warmup_steps + 1})")
    args = copy.copy(training_args)
    with tempfile.TemporaryDirectory() as scratch:
        args.output_dir = scratch
        args.max_steps = steps
        args.eval_strategy = args.save_strategy = "no"
        args.load_best_model_at_end = False
        args.early_stopping_patience = 0
        args.push_to_hub = False
        args.metric_for_best_model = "loss"
        args.disable_tqdm = True
        trainer, data, _ = build_trainer(model_args, data_args, args)
        model = trainer.accelerator.unwrap_model(trainer.model)
        initial_state = copy.deepcopy(model.state_dict())
        timer = _StepTimer()
        trainer.add_callback(timer)
        trainer_rates, plain_rates = [], []
        for _ in range(repeats):
            model.load_state_dict(initial_state)
            timer.times.clear()
            trainer.train()
            trainer_rates.append(
                _steady_samples_per_second(
                    timer.times, args.per_device_train_batch_size, warmup_steps
                )
            )
            model.load_state_dict(initial_state)
            plain_rates.append(
                _plain_loop_samples_per_second(
                    model, data.splits["train"], trainer.data_collator, args, steps, warmup_steps
                )
            )
    trainer_rate, plain_rate = float(np.median(trainer_rates)), float(np.median(plain_rates))
    return {
        "trainer_samples_per_second": trainer_rate,
        "plain_samples_per_second": plain_rate,
        "overhead": 1.0 - trainer_rate / plain_rate,
        "trainer_runs": trainer_rates,
        "plain_runs": plain_rates,
        "steps": steps,
        "batch_size": args.per_device_train_batch_size,
    }


def _plain_loop_samples_per_second(
    model: torch.nn.Module,
    dataset,
    collator: Callable,
    args: ChestTrainingArguments,
    steps: int,
    warmup_steps: int,
) -> float:
    device = args.device
    model.to(device).train()
    optimizer_class, optimizer_kwargs = optimizer_class_and_kwargs(args, model)
    optimizer = optimizer_class(model.parameters(), **optimizer_kwargs)
    workers = args.dataloader_num_workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=collator,
        num_workers=workers,
        pin_memory=args.dataloader_pin_memory,
        drop_last=True,
        # The Trainer's worker settings, so that both loops pay the same per-epoch start-up.
        persistent_workers=args.dataloader_persistent_workers and workers > 0,
        prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None,
    )
    times: list[float] = []
    while len(times) < steps:
        for batch in loader:
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            if args.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter())
            if len(times) == steps:
                break
    return _steady_samples_per_second(times, args.per_device_train_batch_size, warmup_steps)
