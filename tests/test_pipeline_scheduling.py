"""Unit tests of the sampling pieces: schedules, the guidance rule and formula, long-video windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steadydancer.errors import SteadyDancerInputError
from steadydancer.scheduling import (
    COND,
    OFFICIAL_SIGMA_MAX,
    UNCOND_CONDITION,
    UNCOND_CONTEXT,
    DenoisingInputs,
    base_sigmas,
    build_scheduler,
    combine_guidance,
    condition_guidance_active,
    count_transformer_passes,
    crossfade_weights,
    passes_for_step,
    plan_windows,
    set_schedule,
)


def test_official_base_sigmas_start_at_float32_0999():
    sigmas = base_sigmas(40)
    assert sigmas[0] == OFFICIAL_SIGMA_MAX == float(np.float32(0.999))
    assert len(sigmas) == 40 and sigmas[-1] > 0


def test_unipc_schedule_for_40_steps_matches_the_official_formula():
    scheduler = build_scheduler("unipc", 5.0)
    timesteps = set_schedule(scheduler, 40)
    base = np.linspace(float(np.float32(0.999)), 0.0, 41)[:-1]
    shifted = 5.0 * base / (1 + 4.0 * base)
    assert timesteps.tolist() == (shifted * 1000).astype(np.int64).tolist()
    assert scheduler.sigmas[-1] == 0


def test_lcm_schedule_with_4_steps_is_the_distillation_schedule():
    scheduler = build_scheduler("lcm", 5.0)
    timesteps = set_schedule(scheduler, 4, "lcm")
    torch.testing.assert_close(timesteps, torch.tensor([1000.0, 937.5, 833.3333, 625.0]), atol=1e-3, rtol=0)
    assert scheduler.config.stochastic_sampling


def test_scheduler_keeps_the_template_config_but_sets_the_shift():
    template = build_scheduler("unipc", 5.0)
    template.register_to_config(solver_order=3)
    scheduler = build_scheduler("unipc", 3.0, template=template)
    assert scheduler is not template
    assert scheduler.config.flow_shift == 3.0 and scheduler.config.solver_order == 3
    assert template.config.flow_shift == 5.0


def test_unknown_solver_is_refused():
    with pytest.raises(ValueError, match="solver"):
        build_scheduler("ddim")


@pytest.mark.parametrize(
    "steps, window, expected",
    [
        (10, (0.1, 0.4), [2, 3]),  # 0.1 and 0.4 themselves are excluded
        (40, (0.1, 0.4), list(range(5, 16))),
        (40, (0.1, 0.5), list(range(5, 20))),
        (10, (0.0, 1.0), list(range(1, 10))),
        (4, (0.3, 0.3), []),
    ],
)
def test_condition_window_uses_strict_comparisons(steps, window, expected):
    assert [i for i in range(steps) if condition_guidance_active(i, steps, window)] == expected


def test_passes_per_step():
    window = (0.1, 0.4)
    assert passes_for_step(0, 10, 5.0, 1.0, window) == (COND, UNCOND_CONTEXT)
    assert passes_for_step(2, 10, 5.0, 1.0, window) == (COND, UNCOND_CONTEXT, UNCOND_CONDITION)
    assert passes_for_step(2, 10, 5.0, 0.0, window) == (COND, UNCOND_CONTEXT)
    assert passes_for_step(2, 10, 5.0, 1.0, window, has_negative_condition=False) == (COND, UNCOND_CONTEXT)
    assert passes_for_step(2, 10, 1.0, 1.0, window) == (COND, UNCOND_CONDITION)
    assert passes_for_step(2, 10, 1.0, 0.0, window) == (COND,)
    assert count_transformer_passes(40, 5.0, 1.0, window) == 2 * 40 + 11
    assert count_transformer_passes(4, 1.0, 0.0, window) == 4


def test_combine_guidance_is_the_official_formula():
    g = torch.Generator().manual_seed(0)
    cond, uc, ucc = (torch.randn(1, 16, 3, 4, 4, generator=g) for _ in range(3))
    two = combine_guidance({COND: cond, UNCOND_CONTEXT: uc}, 5.0, 1.5)
    torch.testing.assert_close(two, uc + 5.0 * (cond - uc))
    three = combine_guidance({COND: cond, UNCOND_CONTEXT: uc, UNCOND_CONDITION: ucc}, 5.0, 1.5)
    torch.testing.assert_close(three, uc + 5.0 * (cond - uc) + 1.5 * (cond - ucc))
    assert torch.equal(combine_guidance({COND: cond}, 1.0, 0.0), cond)


def test_batched_inputs_pad_texts_of_different_lengths_with_zeros():
    text, negative = torch.randn(1, 11, 8), torch.randn(1, 6, 8)
    pose, negative_pose = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 2, 4, 4)
    inputs = DenoisingInputs(
        prompt_embeds=text, negative_prompt_embeds=negative, image_embeds=torch.randn(1, 5, 4),
        pose_image_embeds=torch.randn(1, 5, 4), image_condition=torch.randn(1, 20, 2, 4, 4), pose_latents=pose,
        negative_pose_latents=negative_pose, ref_image_latents=torch.randn(1, 36, 1, 4, 4),
        ref_pose_latents=torch.randn(1, 36, 1, 4, 4),
    )
    kwargs = inputs.for_passes((COND, UNCOND_CONTEXT, UNCOND_CONDITION))
    texts = kwargs["encoder_hidden_states"]
    assert texts.shape == (3, 11, 8)
    assert torch.equal(texts[0], text[0]) and torch.equal(texts[2], text[0])
    assert torch.equal(texts[1, :6], negative[0]) and not texts[1, 6:].any()
    assert torch.equal(kwargs["pose_latents"][0], pose[0]) and torch.equal(kwargs["pose_latents"][1], pose[0])
    assert torch.equal(kwargs["pose_latents"][2], negative_pose[0])
    assert kwargs["image_condition"].shape[0] == 3
    assert inputs.for_passes((COND, UNCOND_CONTEXT, UNCOND_CONDITION)) is kwargs  # built once


@pytest.mark.parametrize("num_frames", [1, 5, 81, 85, 161, 165, 241, 401])
@pytest.mark.parametrize("window, overlap", [(81, 5), (81, 1), (33, 9), (9, 1)])
def test_windows_cover_the_clip_with_valid_lengths_and_exact_overlaps(num_frames, window, overlap):
    windows = plan_windows(num_frames, window, overlap)
    assert windows[0][0] == 0
    assert windows[-1][0] + windows[-1][1] == num_frames
    for start, length in windows:
        assert (length - 1) % 4 == 0 and 1 <= length <= window
    for (s0, l0), (s1, l1) in zip(windows, windows[1:]):
        assert s1 == s0 + l0 - overlap  # the next window starts on the previous one's last `overlap` frames
        assert l1 > overlap  # and adds new frames
    if num_frames <= window:
        assert windows == [(0, num_frames)]


def test_windows_reject_invalid_counts():
    with pytest.raises(SteadyDancerInputError, match="4n"):
        plan_windows(80)
    with pytest.raises(SteadyDancerInputError, match="window_overlap"):
        plan_windows(161, 81, 4)
    with pytest.raises(SteadyDancerInputError, match="twice"):
        plan_windows(161, 9, 5)


def test_crossfade_goes_from_the_shared_frame_to_the_new_window():
    weights = crossfade_weights(5)
    assert weights[0] == 0 and weights[-1] == 1
    assert torch.all(weights[1:] > weights[:-1])
    assert crossfade_weights(1).tolist() == [0.0]


def test_windows_are_balanced_not_a_short_tail():
    assert plan_windows(161) == [(0, 57), (52, 57), (104, 57)]  # not 81 + 81 + 9
    assert plan_windows(85) == [(0, 45), (40, 45)]
    lengths = [length for _, length in plan_windows(401)]
    assert max(lengths) - min(lengths) <= 4 and len(lengths) == 6
