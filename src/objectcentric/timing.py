"""Timing training steps and inference the same way everywhere (Chapters 6 and 7's speed numbers)."""

from __future__ import annotations

import statistics
import time

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a clock reading means something."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_training(step, batches, device, warmup: int, steps: int, repeats: int) -> float:
    """Images per second of ``step(*batch)``: the median over ``repeats`` blocks of ``steps`` steps,
    after ``warmup`` steps; ``batches`` are cycled."""
    batch = len(batches[0][0])
    for i in range(warmup):
        step(*batches[i % len(batches)])
    rates = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for i in range(steps):
            step(*batches[i % len(batches)])
        sync(device)
        rates.append(steps * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def time_inference(infer, images, device, repeats: int) -> float:
    """Milliseconds per image of ``infer(images)`` under no_grad (one warm-up call, median of ``repeats``)."""
    with torch.no_grad():
        infer(images)
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            infer(images)
            sync(device)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(images)
