"""The training precision that fits this machine: `precision: auto` resolved to one of Lightning's precisions.

On a GPU with bf16 support, bf16-mixed. On a CPU, bf16-mixed only where it has bf16 matrix units (Intel AMX,
AVX512-BF16) and a short matmul probe measures bf16 clearly faster there; float32 otherwise (e.g. an AMD EPYC
without them, where bf16 autocast runs slower than float32). The probe runs once per process.
"""

from __future__ import annotations

import platform
import time
from functools import cache
from typing import Any

import torch

from lit_codellama.provenance import cpuinfo

AUTO = "auto"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# A bf16 matmul must beat float32 by this factor: autocast's casts and the float32 elementwise work eat part of it
# (a 8.9x matmul gain gave 1.66x on a whole cl-10m training step).
MIN_PROBE_SPEEDUP = 1.5


@cache
def cpu_info() -> dict[str, Any]:
    """This CPU's model name, its bf16 matrix-unit flags (from /proc/cpuinfo) and torch's vector capability."""
    fields = cpuinfo()
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "bf16_flags": [flag for flag in BF16_CPU_FLAGS if flag in flags],
        "capability": torch.backends.cpu.get_cpu_capability(),
    }


@cache
def bf16_matmul_speedup(size: int = 512, repeats: int = 8) -> float:
    """float32 time over bf16 time of one size x size matmul on the CPU, best of `repeats` each (~0.1 s). Its random
    operands come from a generator of its own: the global one is seeded for the run about to start, and drawing
    from it here would give the first run of a process another initialisation than the same seed gets later."""
    generator = torch.Generator().manual_seed(0)

    def best_seconds(dtype: torch.dtype) -> float:
        a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
        a @ b  # first call: oneDNN picks and JIT-compiles its kernel
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return min(times)

    return best_seconds(torch.float32) / best_seconds(torch.bfloat16)


def on_gpu(accelerator: str | None) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator in (None, "auto") and torch.cuda.is_available())


def resolve_precision(precision: Any, accelerator: str | None = "cpu") -> Any:
    """Lightning's precision for `precision` (anything but "auto" is returned as given)."""
    if precision != AUTO:
        return precision
    if on_gpu(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if cpu_info()["bf16_flags"] and bf16_matmul_speedup() >= MIN_PROBE_SPEEDUP:
        return "bf16-mixed"
    return "32-true"


def precision_record(precision: Any, accelerator: str | None = "cpu") -> dict[str, Any]:
    """What run.json and study.json record about the choice: requested, resolved, and what it was based on."""
    record: dict[str, Any] = {"requested": precision, "resolved": resolve_precision(precision, accelerator)}
    if on_gpu(accelerator):
        record["gpu"] = torch.cuda.get_device_name()
    else:
        record["cpu"] = cpu_info()
        if precision == AUTO and cpu_info()["bf16_flags"]:
            record["bf16_matmul_speedup"] = round(bf16_matmul_speedup(), 2)
    return record
