"""The analytic cost model of the real 14B configuration: FLOPs, weight and activation bytes, GPU time.

It counts the FLOPs of every transformer pass (tokens, matmuls, attention) and of the VAE, the weight
bytes per precision and the peak activations. ``benchmarks/flops_memory.py`` prints its tables;
``tests/test_pipeline_costs.py`` checks the counts against torch's FLOP counter and the parameter count
of the real class built on the meta device. The app uses :func:`estimate_gpu_seconds` for the estimate
under the Generate button and for ZeroGPU's ``duration``. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .constants import VAE_SPATIAL_STRIDE, latent_frame_count, nearest_valid_frame_count
from .plan import count_transformer_passes, plan_windows
from .settings import NUM_FRAMES, PRESET, WINDOW_FRAMES, WINDOW_OVERLAP, SamplingSettings


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
#: Context parallelism (several GPUs, one video): assumed bandwidth of one GPU's share of an all-to-all
#: or all-gather over NVLink 4 (H100/H200 SXM: 450 GB/s per direction, ~2/3 of it achieved by NCCL), and
#: over PCIe 4 x16 without NVLink. diffusers' Ulysses and ring (all-gather) attention do not overlap
#: their collectives with compute, so the model adds the two.
NVLINK_GBPS = 300.0
PCIE_GBPS = 20.0


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


def context_parallel_pass(num_frames: int, height: int, width: int, ring_degree: int = 1, ulysses_degree: int = 1,
                          shape: TransformerShape = REAL_14B) -> dict:
    """Per-GPU cost of one transformer pass (batch 1) split over ``P = ring_degree * ulysses_degree``
    GPUs by context parallelism (:mod:`steadydancer.parallel`), bf16:

    * ``flops``: the 40 blocks' work on N / P tokens (attention: N / P queries against all N keys),
      plus what every GPU computes whole -- the embeddings, the pose branch (not counted, < 0.01%) and
      the cross-attention's context keys / values;
    * ``comm_bytes``: bytes each GPU sends per pass. Ulysses (degree U): per block four all-to-alls
      (q, k, v to head shards, the output back) of its ``(N / P) x D`` share, of which ``(U - 1) / U``
      leaves the GPU. Ring (degree R, all-gather): per block the K and V of the ``N / R`` tokens of
      its Ulysses head group (``D / U`` wide) go to the R - 1 others. Plus the output gather;
    * ``activation_bytes``: :func:`activation_bytes` of N / P tokens, plus (ring) the gathered K and V
      of the R ring ranks (``4 (N / P) R D`` bytes);
    * ``tokens``: N / P.
    """
    p = ring_degree * ulysses_degree
    full = transformer_pass_flops(num_frames, height, width, shape)
    n, d = full["tokens"], shape.dim
    context_kv = shape.num_layers * 4 * (shape.text_len + shape.image_tokens) * d * d
    blocks = (full["self_attention_projections"] + full["self_attention_scores"] + full["cross_attention"]
              + full["ffn"] - context_kv)
    local = n / p
    per_block = 0.0
    if ulysses_degree > 1:
        per_block += 4 * local * d * 2 * (ulysses_degree - 1) / ulysses_degree
    if ring_degree > 1:
        # after Ulysses, a GPU holds the N / R tokens of its group at D / U width: K and V = 4 (N / P) D bytes
        per_block += 2 * local * d * 2 * (ring_degree - 1)
    gather = local * shape.out_channels * math.prod(shape.patch_size) * 2 * (p - 1)
    activations = activation_bytes(num_frames, height, width, 1, shape) / p
    if ring_degree > 1:
        activations += 4 * local * ring_degree * d
    return {
        "flops": blocks / p + context_kv + full["embeddings_and_head"],
        "comm_bytes": shape.num_layers * per_block + gather if p > 1 else 0.0,
        "activation_bytes": activations,
        "tokens": local,
    }


def vae_flops(num_frames: int, height: int, width: int, encoded_videos: int = 3, decoded_videos: int = 1) -> float:
    """VAE FLOPs of one window: ``y``, pose and negative pose encoded, the result decoded."""
    pixels = num_frames * height * width
    return pixels * (encoded_videos * VAE_ENCODE_FLOPS_PER_PIXEL + decoded_videos * VAE_DECODE_FLOPS_PER_PIXEL)


def estimate_gpu_seconds(
    num_frames: int = NUM_FRAMES.default,
    num_inference_steps: int | None = None,
    height: int = 576,
    width: int = 1024,
    *,
    guidance_scale: float | None = None,
    condition_guidance_scale: float | None = None,
    condition_window: Sequence[float] | None = None,
    preset: str | None = "quality",
    window_frames: int = WINDOW_FRAMES.default,
    window_overlap: int = WINDOW_OVERLAP.default,
    has_negative_condition: bool = True,
    transformer_tflops: float = H200_TRANSFORMER_TFLOPS,
    vae_tflops: float = H200_VAE_TFLOPS,
    context_parallel: tuple[int, int] = (1, 1),
    interconnect_gbps: float = NVLINK_GBPS,
) -> float:
    """GPU seconds a generation needs on an H200-class GPU (see the throughput constants above):
    transformer FLOPs of every pass of every window / ``transformer_tflops`` + VAE FLOPs /
    ``vae_tflops`` + fixed costs; ``low_vram`` x1.15. Unset sampling arguments resolve as in
    :func:`steadydancer.generation.generate_video` (preset, then official defaults). Pass a lower ``transformer_tflops`` for
    a GPU slice smaller than a full H200. ``context_parallel = (ring_degree, ulysses_degree)``: the
    wall time of one video on that many GPUs (:func:`context_parallel_pass` per pass, its collectives at
    ``interconnect_gbps``; the VAE and the fixed costs are not split)."""
    settings = SamplingSettings.resolve(preset, num_inference_steps=num_inference_steps,
                                        guidance_scale=guidance_scale,
                                        condition_guidance_scale=condition_guidance_scale,
                                        condition_window=condition_window)
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
        if context_parallel == (1, 1):
            seconds += passes * transformer_pass_flops(length, height, width)["total"] / (transformer_tflops * 1e12)
        else:
            split = context_parallel_pass(length, height, width, *context_parallel)
            seconds += passes * (split["flops"] / (transformer_tflops * 1e12)
                                 + split["comm_bytes"] / (interconnect_gbps * 1e9))
        encoded = 3 if has_negative_condition and settings.condition_guidance_scale != 0 else 2
        seconds += vae_flops(length, height, width, encoded_videos=encoded) / (vae_tflops * 1e12)
    if preset is not None and PRESET.check(preset) in ("low_vram", "small_gpu"):
        seconds *= LOW_VRAM_SLOWDOWN
    return seconds
