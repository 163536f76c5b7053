"""SteadyDancer's sampling: the noise schedule, the guidance passes and the denoising loop.

Kept apart from :mod:`steadydancer.pipeline` so that the exact loop the pipeline runs can be fed the
latent-level tensors of the reference fixtures (``tests/test_pipeline_reference.py``) without a VAE
or encoders: the pipeline builds the inputs, :func:`denoise` does every step.

What the official sampler does (fixture README items 15 and 16), and how it is reproduced here:

* **Schedule.** Base sigmas ``linspace(float32(0.999), 0, N + 1)[:-1]``, shifted
  ``s' = shift * s / (1 + (shift - 1) * s)``, final 0 appended, timesteps ``int64(s' * 1000)``
  (truncated). diffusers' ``UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift)`` fed
  those base sigmas explicitly gives the same sigmas and timesteps bit for bit (its own default,
  ``linspace(1, 0.001)``, does not).
* **Guidance.** Text CFG at every step (two passes); inside the step window
  ``st < idx / N < end`` (both strict) a third pass with the negative pose condition:
  ``pred = uc + g (cond - uc) + cg (cond - ucc)``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import SteadyDancerInputError
from .plan import (  # noqa: F401  (re-exported: the loop's vocabulary)
    COND,
    UNCOND_CONDITION,
    UNCOND_CONTEXT,
    condition_guidance_active,
    count_transformer_passes,
    passes_for_step,
    plan_windows,
)
from .settings import SOLVERS  # noqa: F401

#: The official sampler's first base sigma: ``float(np.float32(0.999))`` (0.99900001287...).
OFFICIAL_SIGMA_MAX = float(np.float32(0.999))

#: ``unipc`` is the official solver. ``euler`` is the deterministic flow-matching Euler step.
#: ``lcm`` is Euler with the noise re-drawn at every step (x0 prediction, then re-noised to the next
#: sigma), the sampler that step-distilled Wan LoRAs (lightx2v, 4 steps) were trained for.
#: (The list lives in :mod:`steadydancer.settings`; windows and passes in :mod:`steadydancer.plan`.)

# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------


def base_sigmas(num_steps: int, solver: str = "unipc") -> np.ndarray:
    """Unshifted sigmas of ``num_steps`` steps (float64, without the final 0).

    ``unipc`` uses the official ``linspace(float32(0.999), 0, N + 1)[:-1]``; the Euler solvers
    start from pure noise, ``linspace(1, 0, N + 1)[:-1]`` -- with N=4 and shift 5 that is exactly
    the 1000/750/500/250 schedule the 4-step distilled LoRAs were trained on.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    start = OFFICIAL_SIGMA_MAX if solver == "unipc" else 1.0
    return np.linspace(start, 0.0, num_steps + 1)[:-1]


def build_scheduler(solver: str = "unipc", shift: float = 5.0, template=None, num_train_timesteps: int = 1000):
    """A fresh scheduler for one sampling run (never the pipeline's own object, so a call cannot
    leave state behind). ``template`` (the pipeline's registered scheduler) contributes its config
    when it is of the same family, so a user-saved ``solver_order`` etc. is honoured."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if solver == "unipc":
        overrides = dict(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=float(shift),
            use_dynamic_shifting=False,
        )
        if isinstance(template, UniPCMultistepScheduler):
            return UniPCMultistepScheduler.from_config(template.config, **overrides)
        return UniPCMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            solver_order=2,
            solver_type="bh2",
            predict_x0=True,
            lower_order_final=True,
            final_sigmas_type="zero",
            **overrides,
        )
    if solver in ("euler", "lcm"):
        return FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=num_train_timesteps,
            shift=float(shift),
            use_dynamic_shifting=False,
            stochastic_sampling=solver == "lcm",
        )
    raise ValueError(f"Unknown solver {solver!r}; choose one of {SOLVERS}")


def set_schedule(scheduler, num_steps: int, solver: str = "unipc", device=None) -> torch.Tensor:
    """Set ``num_steps`` steps on ``scheduler`` with the explicit base sigmas; returns timesteps."""
    scheduler.set_timesteps(sigmas=base_sigmas(num_steps, solver), device=device)
    return scheduler.timesteps


# --------------------------------------------------------------------------------------------
# Long videos: windows
# --------------------------------------------------------------------------------------------


def crossfade_weights(overlap: int) -> torch.Tensor:
    """Weight of the *new* window on each overlapping frame: a raised cosine from 0 (the shared
    first frame, which the new window was conditioned on) to 1."""
    if overlap == 1:
        return torch.zeros(1, dtype=torch.float32)
    j = torch.arange(overlap, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(math.pi * j / (overlap - 1))).float()


# --------------------------------------------------------------------------------------------
# Guidance
# --------------------------------------------------------------------------------------------


def combine_guidance(
    predictions: dict[str, torch.Tensor], guidance_scale: float, condition_guidance_scale: float
) -> torch.Tensor:
    """Item 16's formula: ``uc + g (cond - uc)`` (+ ``cg (cond - ucc)`` in the window). The condition
    term is measured from ``cond`` and added on top, not nested."""
    cond = predictions[COND]
    if UNCOND_CONTEXT in predictions:
        uncond = predictions[UNCOND_CONTEXT]
        pred = uncond + guidance_scale * (cond - uncond)
    else:
        pred = cond
    if UNCOND_CONDITION in predictions:
        pred = pred + condition_guidance_scale * (cond - predictions[UNCOND_CONDITION])
    return pred


# --------------------------------------------------------------------------------------------
# Model inputs of one window
# --------------------------------------------------------------------------------------------


@dataclass
class DenoisingInputs:
    """Everything the transformer sees besides the noisy latent and the timestep (batch B).

    ``negative_*`` may be ``None`` when the corresponding pass never runs.
    """

    prompt_embeds: torch.Tensor  # [B, L, text_dim]
    image_embeds: torch.Tensor  # [B, 257, 1280] CLIP(reference image)       (clip_fea_x)
    pose_image_embeds: torch.Tensor  # [B, 257, 1280] CLIP(first pose frame)  (clip_fea_c)
    image_condition: torch.Tensor  # [B, 20, F, h, w] y
    pose_latents: torch.Tensor  # [B, 16, F, h, w] condition
    ref_image_latents: torch.Tensor  # [B, 36, 1, h, w] ref_x
    ref_pose_latents: torch.Tensor  # [B, 36, 1, h, w] ref_c
    negative_prompt_embeds: torch.Tensor | None = None  # [B, L', text_dim]
    negative_pose_latents: torch.Tensor | None = None  # [B, 16, F, h, w] condition_null
    _batched: dict = field(default_factory=dict, repr=False, compare=False)

    def to(self, device=None, dtype=None) -> "DenoisingInputs":
        moved = {}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            moved[f.name] = None if value is None else value.to(device=device, dtype=dtype)
        return replace(self, **moved, _batched={})

    def for_passes(self, passes: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Transformer keyword arguments for ``passes`` stacked on the batch axis (pass-major).

        Built once per distinct pass set and reused at every step. Texts of different lengths are
        zero-padded to a common length: the model zero-pads to ``text_len`` anyway and uses no
        text mask, so this changes nothing.
        """
        if passes in self._batched:
            return self._batched[passes]
        texts, poses = [], []
        for name in passes:
            if name == COND:
                texts.append(self.prompt_embeds)
                poses.append(self.pose_latents)
            elif name == UNCOND_CONTEXT:
                if self.negative_prompt_embeds is None:
                    raise ValueError("text guidance needs negative prompt embeddings")
                texts.append(self.negative_prompt_embeds)
                poses.append(self.pose_latents)
            elif name == UNCOND_CONDITION:
                if self.negative_pose_latents is None:
                    raise ValueError("condition guidance needs negative pose latents")
                texts.append(self.prompt_embeds)
                poses.append(self.negative_pose_latents)
            else:
                raise ValueError(f"unknown pass {name!r}")
        n = len(passes)
        kwargs = {
            "encoder_hidden_states": _cat_padded(texts),
            "encoder_hidden_states_image": _repeat(self.image_embeds, n),
            "encoder_hidden_states_image_pose": _repeat(self.pose_image_embeds, n),
            "image_condition": _repeat(self.image_condition, n),
            "pose_latents": torch.cat(poses) if n > 1 else poses[0],
            "ref_image_latents": _repeat(self.ref_image_latents, n),
            "ref_pose_latents": _repeat(self.ref_pose_latents, n),
        }
        self._batched[passes] = kwargs
        return kwargs


def _repeat(t: torch.Tensor, n: int) -> torch.Tensor:
    return t if n == 1 else torch.cat([t] * n)


def _cat_padded(texts: list[torch.Tensor]) -> torch.Tensor:
    if len(texts) == 1:
        return texts[0]
    length = max(t.shape[1] for t in texts)
    padded = [
        t if t.shape[1] == length else torch.nn.functional.pad(t, (0, 0, 0, length - t.shape[1]))
        for t in texts
    ]
    return torch.cat(padded)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _cache_context(model, name: str):
    """diffusers' ``CacheMixin.cache_context`` (keeps cache hooks' state per pass set) if present."""
    ctx = getattr(model, "cache_context", None)
    if ctx is None:
        from contextlib import nullcontext

        return nullcontext()
    return ctx(name)


def predict_noise(
    transformer,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    inputs: DenoisingInputs,
    passes: tuple[str, ...],
    *,
    batch_passes: bool = True,
    attention_kwargs: dict | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Run the transformer for ``passes`` at ``timestep``; returns float32 predictions by pass.

    ``batch_passes`` stacks the passes into one call (the transformer is exact per sample); off, it
    runs them one after another (less activation memory, same numbers up to kernel rounding).
    ``dtype``: the transformer's compute dtype (looked up when not given; the lookup walks every
    submodule, so the loop passes it).
    """
    batch = latents.shape[0]
    dtype = dtype or transformer.dtype
    if batch_passes and len(passes) > 1:
        groups = [passes]
    else:
        groups = [(p,) for p in passes]
    predictions: dict[str, torch.Tensor] = {}
    for group in groups:
        n = len(group)
        hidden = _repeat(latents, n).to(dtype)
        t = timestep.reshape(-1)
        t = t.expand(batch * n) if t.numel() == 1 else _repeat(t, n)
        kwargs = inputs.for_passes(group)
        with _cache_context(transformer, "+".join(group)):
            out = transformer(
                hidden_states=hidden,
                timestep=t,
                attention_kwargs=attention_kwargs,
                return_dict=False,
                **kwargs,
            )[0]
        out = out.float()
        for i, name in enumerate(group):
            predictions[name] = out[i * batch : (i + 1) * batch]
    return predictions


def _step_accepts_generator(scheduler) -> bool:
    return "generator" in inspect.signature(scheduler.step).parameters


def denoise(
    transformer,
    scheduler,
    latents: torch.Tensor,
    inputs: DenoisingInputs,
    *,
    guidance_scale: float = 5.0,
    condition_guidance_scale: float = 1.0,
    condition_window: Sequence[float] = (0.1, 0.4),
    generator: torch.Generator | None = None,
    batch_passes: bool = True,
    attention_kwargs: dict | None = None,
    on_step_end: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The denoising loop of one window, exactly as the official sampler (float32 latents).

    ``scheduler`` must already have its timesteps set (:func:`set_schedule`). ``inputs`` must be on
    the transformer's execution device and dtype. ``generator`` is handed to every scheduler step
    that takes one (UniPC draws nothing; ``lcm`` re-noises with it). ``on_step_end(i, t, latents)``
    may return replacement latents (diffusers' ``callback_on_step_end``). ``dtype``: the
    transformer's compute dtype if the caller knows it (saves a walk over its modules).
    """
    timesteps = scheduler.timesteps
    num_steps = len(timesteps)
    latents = latents.float()
    step_kwargs = {"generator": generator} if _step_accepts_generator(scheduler) else {}
    dtype = dtype or transformer.dtype
    has_negative_condition = inputs.negative_pose_latents is not None
    for i, t in enumerate(timesteps):
        if should_stop is not None and should_stop():
            break
        passes = passes_for_step(
            i, num_steps, guidance_scale, condition_guidance_scale, condition_window, has_negative_condition
        )
        predictions = predict_noise(
            transformer, latents, t, inputs, passes, batch_passes=batch_passes, attention_kwargs=attention_kwargs,
            dtype=dtype,
        )
        noise_pred = combine_guidance(predictions, guidance_scale, condition_guidance_scale)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False, **step_kwargs)[0].float()
        if on_step_end is not None:
            replacement = on_step_end(i, t, latents)
            if replacement is not None:
                latents = replacement
    return latents
