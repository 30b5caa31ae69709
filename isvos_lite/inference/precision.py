"""The precision policy of inference: bfloat16 autocast by default on a CPU that computes bf16 natively (AVX512-BF16
or AMX), float32 everywhere else (CUDA included, where ``amp=True`` gives fp16 autocast).

The paper does not discuss precision; XMem and Cutie evaluate in fp32 on a GPU. Why bf16 is the CPU default, and
what stays fp32 under it: docs/DESIGN_NOTES.md §5.
"""

from __future__ import annotations

import torch

__all__ = ["native_bf16_cpu", "default_amp", "amp_dtype", "precision_name", "precision_note"]


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 dot products natively (AVX512-BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")     # torch >= 2.3; absent -> fp32
    return any(bool(getattr(cpu, probe, lambda: False)()) for probe in probes)


def default_amp(device: str | torch.device) -> bool:
    """The default of ``amp``: bfloat16 autocast on a CPU that computes bf16 natively, fp32 everywhere else.

    The pixel decoder stays in fp32 under autocast; the CPU top-k read's similarity is bf16 (see their modules).
    On CPUs without native bf16 autocast would be emulated and slower; on CUDA, pass ``amp=True`` yourself (fp16).
    What it costs in J&F and gains in speed on the shipped checkpoints: docs/PERFORMANCE.md, "Precision"."""
    return torch.device(device).type == "cpu" and native_bf16_cpu()


def amp_dtype(device: str | torch.device) -> torch.dtype:
    """The autocast dtype of ``amp=True``: float16 on CUDA, bfloat16 on a CPU."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def precision_name(amp: bool, device: str | torch.device) -> str:
    """"fp32", "bf16 autocast" or "fp16 autocast"."""
    return ("fp16" if amp_dtype(device) == torch.float16 else "bf16") + " autocast" if amp else "fp32"


def precision_note(amp: bool | None, device: str | torch.device = "cpu") -> str:
    """One line for a command's output: which precision inference runs in, and why (``amp`` as the user gave it)."""
    used = default_amp(device) if amp is None else amp
    if amp is None:
        why = "the default on a CPU with native bf16; --no-amp for fp32" if used else "the default here"
    else:
        why = "--amp" if amp else "--no-amp"
    return f"precision: {precision_name(used, device)} ({why})"
