"""What a generation will run, before anything runs (torch-free): the long-video windows and the
transformer passes of each step. The denoising loop (:mod:`steadydancer.scheduling`), the pipeline and
the cost model (:mod:`steadydancer.costs`) all read these rules from here.
"""

from __future__ import annotations

from typing import Sequence

from .constants import is_valid_frame_count
from .errors import SteadyDancerInputError

#: Names of the model passes of one step.
COND = "cond"  # (text, pose)
UNCOND_CONTEXT = "uncond_context"  # (negative text, pose)
UNCOND_CONDITION = "uncond_condition"  # (text, negative pose)




def plan_windows(
    num_frames: int, window_frames: int = 81, overlap: int = 5
) -> list[tuple[int, int]]:
    """``(start, length)`` of each generation window covering ``num_frames`` pixel frames.

    Every length is ``4n + 1`` (the VAE's rule) and at most ``window_frames``; window ``k + 1``
    starts at the first of the last ``overlap`` frames of window ``k``. The fewest windows that
    fit are used, with lengths as equal as possible: 161 frames in windows of 81 overlapping by 5
    are 3 x 57, not 81 + 81 + 9 (a 9-frame tail window costs as many steps as a full one and has
    almost no motion context of its own).
    """
    for value, label in ((num_frames, "num_frames"), (window_frames, "window_frames"), (overlap, "window_overlap")):
        if not is_valid_frame_count(value):
            raise SteadyDancerInputError(f"`{label}` must be 4n + 1 (1, 5, 9, ...), got {value}.")
    if num_frames <= window_frames:
        return [(0, num_frames)]
    if window_frames <= 2 * overlap:
        raise SteadyDancerInputError(
            f"`window_frames` ({window_frames}) must be more than twice `window_overlap` ({overlap})."
        )
    # Each window adds `stride = length - overlap` new frames (the first also its `overlap` ones);
    # strides are multiples of 4 because lengths and overlap are 4n + 1. Split the (num_frames -
    # overlap) / 4 units of stride as evenly as the fewest windows allow, longer windows first.
    units, max_units = (num_frames - overlap) // 4, (window_frames - overlap) // 4
    count = -(-units // max_units)
    base, extra = divmod(units, count)
    windows, start = [], 0
    for k in range(count):
        length = 4 * (base + (k < extra)) + overlap
        windows.append((start, length))
        start += length - overlap
    return windows


def condition_guidance_active(step_index: int, num_steps: int, window: Sequence[float]) -> bool:
    """The official rule: the three-pass branch runs iff ``st < idx / N < end``, both strict and in
    float division (N=10, window (0.1, 0.4) -> steps 2 and 3 only)."""
    start, end = window
    ratio = step_index / num_steps
    return ratio > start and ratio < end


def passes_for_step(
    step_index: int,
    num_steps: int,
    guidance_scale: float,
    condition_guidance_scale: float,
    condition_window: Sequence[float],
    has_negative_condition: bool = True,
) -> tuple[str, ...]:
    """The model passes one step needs, in batch order.

    The official code always runs the text-unconditional pass; with ``guidance_scale == 1`` its
    contribution ``uc + 1 * (cond - uc)`` is ``cond`` up to rounding, so it is skipped (the
    distilled "fast" setting: one pass per step). The condition pass runs inside the window when
    its scale is non-zero and a negative pose video was given.
    """
    passes = [COND]
    if guidance_scale != 1.0:
        passes.append(UNCOND_CONTEXT)
    if (
        has_negative_condition
        and condition_guidance_scale != 0.0
        and condition_guidance_active(step_index, num_steps, condition_window)
    ):
        passes.append(UNCOND_CONDITION)
    return tuple(passes)


def count_transformer_passes(
    num_steps: int,
    guidance_scale: float,
    condition_guidance_scale: float,
    condition_window: Sequence[float],
    has_negative_condition: bool = True,
) -> int:
    """Transformer passes (one per sample per step and guidance branch) for one window."""
    return sum(
        len(passes_for_step(i, num_steps, guidance_scale, condition_guidance_scale, condition_window,
                            has_negative_condition))
        for i in range(num_steps)
    )
