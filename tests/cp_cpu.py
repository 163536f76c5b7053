"""Test-only: let diffusers' context parallelism run in CPU processes (gloo), as the tests need.

Two things stop it on a CPU-only torch, and only there:

1. diffusers places rank ``r`` on accelerator ``r % torch.accelerator.device_count()``, which is
   ``0`` without an accelerator (a ZeroDivisionError while resolving the parallel config): the
   count is reported as 1 (every rank then runs on "the" CPU).
2. ring attention merges partial softmaxes with their log-sum-exp; the ``_native_flash`` backend's
   context-parallel op asks PyTorch's CUDA flash kernel for it. On the CPU the same kernel exists as
   ``aten._scaled_dot_product_flash_attention_for_cpu`` (same outputs, same layout): it is used
   instead. Everything else -- the plan's hooks, Ulysses all-to-alls, the ring's all-gather and
   merge -- is diffusers' own code, unchanged.

:func:`apply` refuses to run where CUDA is available, so nothing here can change a GPU run.
"""

from __future__ import annotations

import torch


def _cpu_flash_forward_op(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                          enable_gqa=False, return_lse=False, _save_ctx=True, _parallel_config=None):
    # diffusers' layout is (B, S, H, D); the kernel's is (B, H, S, D). lse comes back as (B, H, S).
    q, k, v = (x.transpose(1, 2).contiguous() for x in (query, key, value))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, scale=scale)
    out = out.transpose(1, 2).contiguous()
    lse = lse.transpose(1, 2).contiguous()
    return (out, lse) if return_lse else out


def apply() -> None:
    """Patch this process (a CPU-only test worker) as described in the module docstring."""
    if torch.cuda.is_available():
        raise RuntimeError("cp_cpu.apply() is for CPU-only test processes; with CUDA, run the real thing.")
    import diffusers.models.attention_dispatch as dispatch

    torch.accelerator.device_count = lambda: 1
    dispatch._native_flash_attention_forward_op = _cpu_flash_forward_op
