"""``--precision fp32`` on CUDA runs without TF32, and leaves PyTorch's settings as it found them.

The settings are plain process-wide flags, so they can be read and set without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from ovformer_core.inference.precision import precision_context

CUDA = torch.device("cuda")


def tf32_state() -> tuple[object, object]:
    """(cuDNN convolutions, CUDA matmuls) as the per-operator settings, or the older booleans."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


IEEE = ("ieee", "ieee") if isinstance(tf32_state()[0], str) else (False, False)


def test_fp32_on_cuda_turns_tf32_off_inside_and_restores_it():
    before = tf32_state()
    assert before != IEEE  # PyTorch's default lets cuDNN use TF32: the switch has something to do
    with precision_context("fp32", CUDA):
        assert tf32_state() == IEEE
    assert tf32_state() == before
    assert torch.backends.cudnn.allow_tf32 is True  # the older getter reads again (it raises inside)


def test_fp32_restores_a_user_choice_even_when_the_block_fails():
    torch.set_float32_matmul_precision("high")  # a user's TF32 matmuls
    try:
        chosen = tf32_state()
        with pytest.raises(RuntimeError, match="boom"), precision_context("fp32", CUDA):
            assert tf32_state() == IEEE
            raise RuntimeError("boom")
        assert tf32_state() == chosen
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision("highest")
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_cpu_and_reduced_precisions_leave_tf32_alone():
    before = tf32_state()
    with precision_context("fp32", torch.device("cpu")):
        assert tf32_state() == before
    with precision_context("bf16", torch.device("cpu")):
        assert tf32_state() == before
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
