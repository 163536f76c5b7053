"""High-level entry points shared by the command line and the app.

* :func:`load_pipeline` -- find/download the weights, load, apply a memory preset;
* :func:`check_model` -- fail early, with instructions, when weights (or a GPU) are missing;
* :func:`generate_video` -- reference image + positive/negative pose frames -> uint8 frames;
* :func:`estimate_gpu_seconds` -- the GPU time a generation needs, from the analytic cost model
  below (used for ZeroGPU's ``duration``).

The cost model counts the FLOPs of the real 14B configuration (tokens, matmuls, attention), the
weight bytes per precision and the peak activations; ``benchmarks/flops_memory.py`` prints its
tables and ``tests/test_pipeline_costs.py`` checks the counts against torch's FLOP counter and the
parameter count of the real class built on the meta device.

This module imports torch / diffusers only inside the functions that need them, so the estimate is
cheap to import.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .constants import DEFAULT_MAX_AREA, VAE_SPATIAL_STRIDE, latent_frame_count, nearest_valid_frame_count
from .errors import MissingWeightsError, SteadyDancerInputError

#: Environment variables naming the weights (the CLI's --model overrides the first).
MODEL_ENV = "STEADYDANCER_MODEL"
ENCODERS_ENV = "STEADYDANCER_ENCODERS"

ProgressFn = Callable[[float, str], None]


# =============================================================================================
# Loading
# =============================================================================================


def default_model() -> str:
    from .pipeline import DEFAULT_MODEL_ID

    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL_ID


def default_encoders() -> str:
    from .pipeline import DEFAULT_ENCODERS_ID

    return os.environ.get(ENCODERS_ENV) or DEFAULT_ENCODERS_ID


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(
    model: str | os.PathLike | None = None,
    preset: str = "quality",
    device: str | None = None,
    offline: bool | None = None,
    *,
    encoders: str | os.PathLike | None = None,
    attention_backend: str | None = None,
    first_block_cache: float | None = None,
    lora: str | None = None,
):
    """Load SteadyDancer and lay it out in memory as ``preset`` says, on ``device``.

    ``model``: a diffusers-format folder/repo, or the SteadyDancer transformer folder/repo (default
    ``$STEADYDANCER_MODEL`` or ``MCG-NJU/SteadyDancer-14B``); ``encoders``: a Wan2.1-I2V diffusers
    folder/repo for the VAE / UMT5 / CLIP when the model has none (default ``$STEADYDANCER_ENCODERS``
    or ``Wan-AI/Wan2.1-I2V-14B-720P-Diffusers``). ``preset``: ``quality | balanced | low_vram |
    fast`` (see :mod:`steadydancer.presets`). ``offline`` defaults to ``HF_HUB_OFFLINE``. Raises
    :class:`~steadydancer.errors.MissingWeightsError` saying exactly what to download or set.
    """
    from .pipeline import SteadyDancerPipeline
    from .presets import apply_preset, get_preset

    preset_obj = get_preset(preset)
    device = device or _default_device()
    pipe = SteadyDancerPipeline.from_checkpoint(
        model or default_model(),
        encoders or default_encoders(),
        torch_dtype=preset_obj.transformer_dtype,
        offline=offline,
    )
    pipe.set_progress_bar_config(leave=False)
    return apply_preset(
        pipe,
        preset_obj,
        device,
        attention_backend=attention_backend,
        first_block_cache=first_block_cache,
        lora=lora,
        offline=offline,
    )


def check_model(
    model: str | os.PathLike | None = None,
    device: str | None = None,
    offline: bool | None = None,
    *,
    encoders: str | os.PathLike | None = None,
) -> None:
    """Raise :class:`MissingWeightsError` now if generating cannot work: weights absent (offline, or
    a local folder that lacks files) or a CUDA device asked for where there is none. Online, weights
    not yet downloaded are fine (loading downloads them); nothing big is fetched here."""
    import torch

    from .pipeline import _is_offline, resolve_weights

    if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
        if not os.environ.get("SPACES_ZERO_GPU"):  # ZeroGPU attaches the GPU inside the call
            raise MissingWeightsError(
                "No CUDA GPU is available here. SteadyDancer needs a GPU (about 24 GB with the low_vram preset, "
                "40+ GB for quality); run on a GPU machine, or choose device 'cpu' for a (very slow) test run."
            )
    model = model or default_model()
    encoders = encoders or default_encoders()
    local = os.path.isdir(os.path.expanduser(str(model)))
    if local or _is_offline(offline):
        resolve_weights(model, encoders, offline=True)


# =============================================================================================
# Generating
# =============================================================================================


@dataclass(frozen=True)
class SamplingSettings:
    """What a generation will actually run (explicit arguments > the preset's > official defaults)."""

    num_inference_steps: int
    guidance_scale: float
    condition_guidance_scale: float
    condition_window: tuple[float, float]
    solver: str
    shift: float | None


def resolve_sampling(
    preset: str | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    condition_guidance_scale: float | None = None,
    condition_window: Sequence[float] | None = None,
    shift: float | None = None,
    solver: str | None = None,
) -> SamplingSettings:
    """Fill the unset sampling arguments from the preset, then from the official defaults."""
    from .scheduling import SOLVERS

    defaults = {
        "num_inference_steps": 40,
        "guidance_scale": 5.0,
        "condition_guidance_scale": 1.0,
        "solver": "unipc",
        "shift": None,
    }
    if preset is not None:
        from .presets import sampling_kwargs

        defaults.update(sampling_kwargs(preset))
    settings = SamplingSettings(
        num_inference_steps=int(steps if steps is not None else defaults["num_inference_steps"]),
        guidance_scale=float(guidance_scale if guidance_scale is not None else defaults["guidance_scale"]),
        condition_guidance_scale=float(
            condition_guidance_scale if condition_guidance_scale is not None else defaults["condition_guidance_scale"]
        ),
        condition_window=tuple(condition_window) if condition_window is not None else (0.1, 0.4),
        solver=solver or defaults["solver"],
        shift=shift if shift is not None else defaults["shift"],
    )
    if settings.num_inference_steps < 1:
        raise SteadyDancerInputError(f"steps must be at least 1, got {settings.num_inference_steps}.")
    if settings.solver not in SOLVERS:
        raise SteadyDancerInputError(f"solver must be one of {', '.join(SOLVERS)}, got {settings.solver!r}.")
    start, end = settings.condition_window
    if not 0.0 <= start <= end <= 1.0:
        raise SteadyDancerInputError(f"The condition window must satisfy 0 <= start <= end <= 1, got {start}-{end}.")
    return settings


def generate_video(
    pipe,
    reference_image,
    positive_frames: Sequence[np.ndarray],
    negative_frames: Sequence[np.ndarray] | None,
    *,
    prompt: str = "",
    negative_prompt: str | None = None,
    num_frames: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    condition_guidance_scale: float | None = None,
    condition_window: Sequence[float] | None = None,
    shift: float | None = None,
    seed: int = 0,
    max_area: int = DEFAULT_MAX_AREA,
    progress: ProgressFn | None = None,
    window_frames: int = 81,
    window_overlap: int = 5,
    solver: str | None = None,
) -> list[np.ndarray]:
    """Animate ``reference_image`` (PIL image or uint8 H x W x 3) with ``positive_frames`` (uint8
    H x W x 3 pose frames aligned to it; any size, resized to the video size) and the negative
    pose frames (``None``: no condition guidance). Returns the video as uint8 H x W x 3 frames.

    ``num_frames``: default all frames; rounded down to ``4n + 1``. Unset sampling arguments come
    from the pipeline's preset (``fast``: 4 steps, CFG 1, no condition pass), then the official
    defaults (40 steps, CFG 5, condition CFG 1.0, window 0.1-0.4, shift 5 -- 3 at 480p). An empty
    ``negative_prompt`` means the official one. Longer than ``window_frames`` -> consecutive windows
    blended over ``window_overlap`` frames. ``progress(fraction, message)`` is called at each stage
    and step; an exception it raises (e.g. cancel) stops the generation at that step.
    """
    import torch

    report = progress or (lambda fraction, message: None)
    available = len(positive_frames) if negative_frames is None else min(len(positive_frames), len(negative_frames))
    if available < 1:
        raise SteadyDancerInputError("There are no pose frames to animate with.")
    num_frames = available if num_frames is None else min(int(num_frames), available)
    num_frames = nearest_valid_frame_count(num_frames)
    settings = resolve_sampling(
        getattr(pipe, "_steadydancer_preset", None), steps, guidance_scale, condition_guidance_scale,
        condition_window, shift, solver,
    )
    from .scheduling import plan_windows

    num_windows = len(plan_windows(num_frames, window_frames, window_overlap))
    total_steps = settings.num_inference_steps * num_windows

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        done = pipeline.current_window * settings.num_inference_steps + step + 1
        window = f"window {pipeline.current_window + 1}/{num_windows}, " if num_windows > 1 else ""
        report(0.05 + 0.9 * done / total_steps, f"Denoising: {window}step {step + 1}/{settings.num_inference_steps}")
        if step + 1 == settings.num_inference_steps:  # the VAE decode of this window comes next
            report(0.05 + 0.9 * done / total_steps, f"Decoding{' ' + window.rstrip(', ') if window else ''}")
        return {}

    report(0.0, f"Encoding the inputs ({num_frames} frames)")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    output = pipe(
        image=reference_image,
        pose_video=list(positive_frames[:num_frames]),
        negative_pose_video=list(negative_frames[:num_frames]) if negative_frames is not None else None,
        prompt=prompt or "",
        negative_prompt=negative_prompt or None,
        max_area=max_area,
        num_frames=num_frames,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        condition_guidance_scale=settings.condition_guidance_scale,
        condition_guidance_window=settings.condition_window,
        shift=settings.shift,
        solver=settings.solver,
        window_frames=window_frames,
        window_overlap=window_overlap,
        generator=generator,
        output_type="pil",
        callback_on_step_end=on_step_end,
        callback_on_step_end_tensor_inputs=[],
    )
    frames = [np.asarray(image, dtype=np.uint8) for image in output.frames[0]]
    report(1.0, f"Done: {len(frames)} frames")
    return frames


# =============================================================================================
# Cost model (analytic) of the real 14B configuration
# =============================================================================================


@dataclass(frozen=True)
class TransformerShape:
    """The sizes the cost model needs (defaults: the released SteadyDancer-14B / Wan2.1-I2V-14B)."""

    dim: int = 5120
    ffn_dim: int = 13824
    num_layers: int = 40
    num_heads: int = 40
    text_dim: int = 4096
    text_len: int = 512
    image_dim: int = 1280
    image_tokens: int = 257
    freq_dim: int = 256
    in_channels: int = 36
    pose_channels: int = 16
    out_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)

    @classmethod
    def from_config(cls, config, image_tokens: int = 257) -> "TransformerShape":
        return cls(
            dim=config.num_attention_heads * config.attention_head_dim,
            ffn_dim=config.ffn_dim,
            num_layers=config.num_layers,
            num_heads=config.num_attention_heads,
            text_dim=config.text_dim,
            text_len=config.text_len,
            image_dim=config.image_dim,
            image_tokens=image_tokens,
            freq_dim=config.freq_dim,
            in_channels=config.in_channels,
            pose_channels=config.pose_channels,
            out_channels=config.out_channels,
            patch_size=tuple(config.patch_size),
        )


REAL_14B = TransformerShape()

#: Parameters of the other models (measured once on the meta device from their configs:
#: UMT5-XXL encoder, open-clip ViT-H/14 vision tower, Wan2.1 VAE).
TEXT_ENCODER_PARAMS = 5_680_910_336
IMAGE_ENCODER_PARAMS = 630_766_080
VAE_PARAMS = 126_892_531
#: Wan2.1 VAE FLOPs per pixel and frame (torch FlopCounterMode on the real config, 64x64 clips,
#: asymptotic per-frame slope; see benchmarks/flops_memory.py --measure-vae).
VAE_ENCODE_FLOPS_PER_PIXEL = 5.0e6
VAE_DECODE_FLOPS_PER_PIXEL = 8.45e6

#: Assumed sustained throughput of an H200-class GPU on this workload: 989 TFLOP/s dense bf16 peak,
#: taken at ~40% (SDPA / FlashAttention-2 attention at 35k-83k tokens, bf16 GEMMs) -> 400 TFLOP/s.
#: The VAE's 3-D convolutions run far less efficiently (float32 weights, TF32 cuDNN kernels): 100.
H200_TRANSFORMER_TFLOPS = 400.0
H200_VAE_TFLOPS = 100.0
#: Fixed costs per generation: moving the models onto the GPU (model offload), the text and image
#: encoders, Python (assumed).
FIXED_SECONDS = 10.0
#: Group offloading streams the weights over PCIe behind the compute: assumed 15% slower.
LOW_VRAM_SLOWDOWN = 1.15


def transformer_tokens(num_frames: int, height: int, width: int, shape: TransformerShape = REAL_14B) -> int:
    """Sequence length of one pass: ``(f + 2) * (H/16) * (W/16)`` -- the video's latent frames plus
    the two reference frames."""
    p_t, p_h, p_w = shape.patch_size
    f = latent_frame_count(num_frames)
    h = height // VAE_SPATIAL_STRIDE // p_h
    w = width // VAE_SPATIAL_STRIDE // p_w
    return (f // p_t + 2) * h * w


def transformer_pass_flops(num_frames: int, height: int, width: int, shape: TransformerShape = REAL_14B) -> dict:
    """FLOPs (2 per multiply-add) of one transformer pass (batch 1), by part.

    Per block, with N tokens, D = dim, F = ffn_dim, C = text_len + image tokens:
    self-attention projections 8ND^2, scores + values 4N^2 D, cross-attention 4ND^2 (q, o) +
    4CD^2 (text and image k, v) + 4NCD, FFN 4NDF. Outside the blocks: patch embeddings, head,
    text / image / time embedders. The pose modules (convolutions and the per-pixel frame attention
    at latent resolution, < 0.01% of the total) are not counted.
    """
    p_t, p_h, p_w = shape.patch_size
    f = latent_frame_count(num_frames) // p_t
    hw = (height // VAE_SPATIAL_STRIDE // p_h) * (width // VAE_SPATIAL_STRIDE // p_w)
    n = (f + 2) * hw
    d, ffn, c = shape.dim, shape.ffn_dim, shape.text_len + shape.image_tokens
    patch = p_t * p_h * p_w
    parts = {
        "self_attention_projections": shape.num_layers * 8 * n * d * d,
        "self_attention_scores": shape.num_layers * 4 * n * n * d,
        "cross_attention": shape.num_layers * (4 * n * d * d + 4 * c * d * d + 4 * n * c * d),
        "ffn": shape.num_layers * 4 * n * d * ffn,
        "embeddings_and_head": (
            2 * f * hw * (shape.in_channels + 2 * shape.pose_channels) * patch * d  # fused video patches
            + 2 * hw * (shape.in_channels + shape.pose_channels) * patch * d  # ref_x and ref_c patches
            + 2 * n * d * shape.out_channels * patch  # head
            + 2 * shape.text_len * (shape.text_dim * d + d * d)  # text embedding
            + 2 * 2 * shape.image_tokens * (shape.image_dim**2 + shape.image_dim * d)  # two CLIP inputs
            + 2 * (shape.freq_dim * d + d * d + d * 6 * d)  # time embedding and projection
        ),
    }
    parts["total"] = sum(parts.values())
    parts["tokens"] = n
    return parts


def transformer_param_count(shape: TransformerShape = REAL_14B) -> int:
    """Parameters of the transformer (the pose modules' ~0.1 M excepted)."""
    d, ffn, p = shape.dim, shape.ffn_dim, math.prod(shape.patch_size)
    block = 10 * d * d + 2 * d * ffn + ffn + 24 * d
    embedder = (
        shape.freq_dim * d + d + d * d + d  # time embedding
        + d * 6 * d + 6 * d  # time projection
        + shape.text_dim * d + d + d * d + d  # text embedding
        + 2 * shape.image_dim + shape.image_dim * shape.image_dim + shape.image_dim  # image: norm1, fc1
        + shape.image_dim * d + d + 2 * d  # image: fc2, norm2
    )
    patches = (
        (shape.in_channels + 2 * shape.pose_channels) * p * d + d
        + shape.in_channels * p * d + d
        + shape.pose_channels * p * d + d
    )
    head = d * shape.out_channels * p + shape.out_channels * p + 2 * d
    return shape.num_layers * block + embedder + patches + head


BYTES_PER_PRECISION = {"fp32": 4, "bf16": 2, "fp8": 1}


def weights_bytes(shape: TransformerShape = REAL_14B) -> dict:
    """Bytes of each model's weights per precision (``fp8`` only applies to the transformer's big
    matrices; its embeddings, norms and pose modules stay bf16 under layerwise casting)."""
    transformer = transformer_param_count(shape)
    small = transformer - shape.num_layers * (10 * shape.dim**2 + 2 * shape.dim * shape.ffn_dim)
    return {
        "transformer": {
            "fp32": 4 * transformer,
            "bf16": 2 * transformer,
            "fp8": (transformer - small) + 2 * small,
        },
        "text_encoder": {k: b * TEXT_ENCODER_PARAMS for k, b in BYTES_PER_PRECISION.items() if k != "fp8"},
        "image_encoder": {k: b * IMAGE_ENCODER_PARAMS for k, b in BYTES_PER_PRECISION.items() if k != "fp8"},
        "vae": {k: b * VAE_PARAMS for k, b in BYTES_PER_PRECISION.items() if k != "fp8"},
    }


def activation_bytes(num_frames: int, height: int, width: int, batch: int = 1, shape: TransformerShape = REAL_14B) -> int:
    """Peak activation bytes of a bf16 pass with a fused (flash / memory-efficient) attention kernel:
    about ``20 N D`` bytes per sample -- the block input and its norm, q, k, v and the attention
    output in bf16, and the float32 copies of q and k the rotary embedding makes. (Attention
    without a fused kernel would add ``2 N^2 heads`` bytes: never use the math backend here.)"""
    n = transformer_tokens(num_frames, height, width, shape)
    return 20 * n * shape.dim * batch


def vae_flops(num_frames: int, height: int, width: int, encoded_videos: int = 3, decoded_videos: int = 1) -> float:
    """VAE FLOPs of one window: ``y``, pose and negative pose encoded, the result decoded."""
    pixels = num_frames * height * width
    return pixels * (encoded_videos * VAE_ENCODE_FLOPS_PER_PIXEL + decoded_videos * VAE_DECODE_FLOPS_PER_PIXEL)


def estimate_gpu_seconds(
    num_frames: int = 81,
    steps: int | None = None,
    height: int = 576,
    width: int = 1024,
    *,
    guidance_scale: float | None = None,
    condition_guidance_scale: float | None = None,
    condition_window: Sequence[float] | None = None,
    preset: str | None = "quality",
    window_frames: int = 81,
    window_overlap: int = 5,
    has_negative_condition: bool = True,
    transformer_tflops: float = H200_TRANSFORMER_TFLOPS,
    vae_tflops: float = H200_VAE_TFLOPS,
) -> float:
    """GPU seconds a generation needs on an H200-class GPU (see the throughput constants above):
    transformer FLOPs of every pass of every window / ``transformer_tflops`` + VAE FLOPs /
    ``vae_tflops`` + fixed costs; ``low_vram`` x1.15. Unset sampling arguments resolve as in
    :func:`generate_video` (preset, then official defaults). Pass a lower ``transformer_tflops`` for
    a GPU slice smaller than a full H200."""
    from .scheduling import plan_windows
    from .scheduling import count_transformer_passes

    settings = resolve_sampling(preset, steps, guidance_scale, condition_guidance_scale, condition_window)
    num_frames = nearest_valid_frame_count(max(1, int(num_frames)))
    seconds = FIXED_SECONDS
    for _, length in plan_windows(num_frames, window_frames, window_overlap):
        passes = count_transformer_passes(
            settings.num_inference_steps,
            settings.guidance_scale,
            settings.condition_guidance_scale,
            settings.condition_window,
            has_negative_condition,
        )
        flops = passes * transformer_pass_flops(length, height, width)["total"]
        seconds += flops / (transformer_tflops * 1e12)
        encoded = 3 if has_negative_condition and settings.condition_guidance_scale != 0 else 2
        seconds += vae_flops(length, height, width, encoded_videos=encoded) / (vae_tflops * 1e12)
    if preset is not None and preset.replace("-", "_") == "low_vram":
        seconds *= LOW_VRAM_SLOWDOWN
    return seconds
