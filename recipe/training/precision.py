"""`--precision auto | fp32 | fp16 | bf16`: what a run computes in, agreed with `--fp16` / `--bf16`.

`auto` is bf16 on a GPU that has it, else fp16 on a GPU, and fp32 on a CPU. (bf16 on a CPU with native bf16 units
runs the MMS-size step faster, but left a one-minute voice quieter than fp32 did, outside fp32's seed spread:
`docs/results.md`, "bf16 against fp32"; so `auto` stays fp32 there.) fp16 runs on a CPU too (`recipe.training.fp16`).
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def requested_precision(precision: str, fp16: bool, bf16: bool) -> str:
    """`--precision` (lower-cased), with an explicit `--fp16` / `--bf16` in place of `auto`.

    Raises:
        `ValueError`: an unknown value, both flags, or a flag that contradicts `--precision`.
    """
    precision = precision.lower()
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be auto, fp32, fp16 or bf16, not {precision!r}")
    if fp16 and bf16:
        raise ValueError("--fp16 and --bf16 are exclusive")
    requested = "fp16" if fp16 else "bf16" if bf16 else None
    if requested is not None and precision not in {"auto", requested}:
        raise ValueError(f"--{requested} contradicts --precision {precision}")
    # an explicit --fp16 / --bf16 wins over auto: a flag that is silently ignored is worse than none
    return requested or precision


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX tiles), as PyTorch's CPU feature
    checks report it. Without them oneDNN emulates bf16, which is slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def resolved_precision(precision: str, use_cpu: bool) -> str:
    """`precision` made concrete for the device the run uses (`use_cpu` settled): `auto` becomes fp32, fp16 or bf16."""
    if precision != "auto":
        return precision
    if use_cpu or not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def cpu_bf16_hint(precision: str, use_cpu: bool) -> str | None:
    """A line for the log when a run computes in fp32 on a CPU that has native bf16 units, saying what bf16 would
    give there; `None` otherwise."""
    if precision != "fp32" or not (use_cpu or not torch.cuda.is_available()) or not cpu_has_native_bf16():
        return None
    return (
        "Computing in fp32 on a CPU with native bf16 units: --precision bf16 ran the MMS-size training step 1.6-1.9x "
        "faster on such a CPU, and kept CER and MCD but left a one-minute voice 3-7 points quieter than fp32 "
        "(docs/results.md, 'bf16 against fp32'); --precision auto keeps fp32 on a CPU for that reason"
    )
