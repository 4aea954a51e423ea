"""Which floating-point precision the network runs in: ``auto`` resolved per device.

``auto`` picks the fastest precision that passes the accuracy guard (``tests/inference/
test_reduced_precision.py``, ``benchmarks/bench_precision.py``):

- bfloat16 on CPUs with bfloat16 matrix units (AMX-BF16, e.g. Xeon Sapphire Rapids and later) or
  AVX512-BF16 dot products (Cooper Lake, Zen 4 and later): measured on a 2-thread AMX Xeon, bf16 matmul
  runs 3.3 TFLOP/s against 0.38 for float32 (issue 12);
- bfloat16 on CUDA GPUs that support it (Ampere and later);
- float32 everywhere else: without those units bfloat16 is emulated and slower than float32.

``--precision fp32`` reproduces the official fixtures (on CUDA with TF32 switched off while the network
runs, see ``ieee_float32``); ``bf16`` keeps the sampling locations, attention weights and residual
streams of the deformable encoder in float32 (see ``PixelDecoder``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
ResolvedPrecision = Literal["fp32", "bf16", "fp16"]

#: CPU features (``torch.cpu.get_capabilities()`` names) that make bfloat16 faster than float32.
BF16_CPU_FEATURES = ("amx_bf16", "avx512_bf16")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX-BF16 or AVX512-BF16)."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is None:  # older torch: only the private probes
        probes = (
            getattr(torch.cpu, "_is_amx_tile_supported", None),
            getattr(torch.cpu, "_is_avx512_bf16_supported", None),
        )
        return any(probe is not None and bool(probe()) for probe in probes)
    capabilities = get_capabilities()
    return any(bool(capabilities.get(feature, False)) for feature in BF16_CPU_FEATURES)


def resolve_precision(precision: Precision, device: torch.device) -> ResolvedPrecision:
    """The precision to run on ``device``: ``precision`` itself unless it is ``auto``."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        # Compute capability 8 (Ampere) and later multiply bf16 in hardware. Not ``is_bf16_supported()``:
        # it also says yes where bf16 is only emulated (V100, T4), and asks about the current device.
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast_dtype(precision: ResolvedPrecision) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None: plain float32)."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(settings object, attribute, IEEE value) of cuDNN convolutions and CUDA matmuls.

    Newer torch has per-operator settings; once one of them is set, the older boolean getters raise
    ("a mix of the legacy and new APIs"), so those are used only where the new ones do not exist.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(conv, "fp32_precision", "ieee"), (torch.backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False)]


@contextlib.contextmanager
def ieee_float32(device: torch.device) -> Iterator[None]:
    """No TF32 on CUDA inside the block: float32 arithmetic as the parity fixtures were made.

    By default PyTorch lets cuDNN convolutions round their float32 inputs to TF32 (10-bit mantissa) on
    Ampere and later GPUs, about 1e-3 relative per convolution: not what ``--precision fp32`` promises.
    The settings are process-wide, so they are set back on exit. Nothing changes on other devices.
    """
    if device.type != "cuda":
        yield
        return
    switches = _tf32_switches()
    saved = [getattr(owner, name) for owner, name, _ in switches]
    try:
        for owner, name, value in switches:
            setattr(owner, name, value)
        yield
    finally:
        for (owner, name, _), value in zip(switches, saved, strict=True):
            setattr(owner, name, value)


def precision_context(precision: ResolvedPrecision, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Where the network runs in ``precision``: autocast to its dtype, or IEEE float32 for ``fp32``."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return ieee_float32(device)
    return torch.autocast(device_type=device.type, dtype=dtype)
