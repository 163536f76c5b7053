"""The analytic cost model (steadydancer.costs) against torch's own counts: FLOPs of a real
forward (tiny configuration, FlopCounterMode) and parameters of the real 14B class on the meta device."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from steadydancer.costs import (
    REAL_14B,
    TransformerShape,
    activation_bytes,
    estimate_gpu_seconds,
    transformer_param_count,
    transformer_pass_flops,
    transformer_tokens,
    weights_bytes,
)
from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel
from tests.tiny_pipeline import build_tiny_components, tiny_transformer_inputs

POSE_MODULES = ("condition_embedding_temporal", "condition_embedding_spatial", "condition_embedding_align")


def test_parameter_count_of_the_real_14b_configuration():
    with torch.device("meta"):
        model = SteadyDancerTransformer3DModel()  # defaults are the released 14B model
    pose = sum(p.numel() for name, p in model.named_parameters() if name.startswith(POSE_MODULES))
    total = sum(p.numel() for p in model.parameters())
    assert transformer_param_count(REAL_14B) == total - pose
    assert TransformerShape.from_config(model.config) == REAL_14B
    assert 16.3e9 < total < 16.5e9
    weights = weights_bytes()["transformer"]
    assert weights["bf16"] == 2 * transformer_param_count() and weights["fp8"] < 0.52 * weights["bf16"]


@pytest.mark.parametrize("num_frames", [1, 9])
def test_flops_match_torch_flop_counter_on_a_real_forward(num_frames):
    model = build_tiny_components()["transformer"]
    model.set_attention_backend("_native_math")  # explicit matmuls, so the attention FLOPs are counted
    height = width = 32
    f, h, w = (num_frames - 1) // 4 + 1, height // 8, width // 8
    inputs = tiny_transformer_inputs(f, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    prefix = "SteadyDancerTransformer3DModel."
    pose = sum(counts[prefix + name] for name in POSE_MODULES)
    blocks = sum(counts[f"{prefix}blocks.{i}"] for i in range(model.config.num_layers))

    analytic = transformer_pass_flops(num_frames, height, width, TransformerShape.from_config(model.config, 17))
    assert analytic["tokens"] == (f + 2) * (h // 2) * (w // 2)
    block_parts = ("self_attention_projections", "self_attention_scores", "cross_attention", "ffn")
    assert sum(analytic[p] for p in block_parts) == blocks
    assert analytic["total"] == counter.get_total_flops() - pose


def test_real_config_sizes():
    assert transformer_tokens(81, 480, 832) == 23 * 30 * 52
    assert transformer_tokens(81, 720, 1280) == 23 * 45 * 80
    flops_480 = transformer_pass_flops(81, 480, 832)["total"]
    flops_720 = transformer_pass_flops(81, 720, 1280)["total"]
    assert 1.5e15 < flops_480 < 2.5e15 and 3 * flops_480 < flops_720
    assert activation_bytes(81, 720, 1280, batch=3) == 3 * activation_bytes(81, 720, 1280)


def test_gpu_time_estimate_follows_the_work():
    quality = estimate_gpu_seconds(81, 40, 480, 832, preset="quality")
    assert quality > estimate_gpu_seconds(81, 40, 480, 832, condition_guidance_scale=0.0, preset="quality")
    assert estimate_gpu_seconds(81, None, 480, 832, preset="fast") < quality / 8
    assert estimate_gpu_seconds(81, 40, 480, 832, preset="low_vram") > quality
    assert estimate_gpu_seconds(81, 40, 720, 1280) > 3 * quality
    two_windows = estimate_gpu_seconds(157, 40, 480, 832)  # windows (0, 81) and (76, 81)
    assert 1.9 * quality < two_windows < 2.1 * quality
    assert estimate_gpu_seconds(17, 40, 480, 832) < quality / 3
