"""GPU and CPU-RAM peaks per preset and per GGUF file, and which file + preset fits a machine.

An extension of the analytic cost model of :mod:`steadydancer.costs` (weights per precision,
activations of one pass); torch-free, instant. Every number is computed, nothing measured on a GPU:

* **GGUF file sizes** -- the community layout quantizes the 2-D matrices (every transformer block's
  attention and FFN matrices, the text / time / CLIP embedders, the head) and keeps the rest (norms,
  biases, modulation tables, Conv3d patch embeddings, pose modules: 8.1 M values) in F32; a file
  is ``matrices x bits-per-weight / 8 + rest x 4`` bytes (:func:`gguf_file_bytes`). Mixed files
  (``_K_M`` / ``_K_S``) hold some matrices in a larger type and are somewhat larger than the
  uniform size computed here.
* **GPU peak while denoising** (:func:`gpu_peak_bytes`) -- the weights resident on the GPU plus
  the activations of the widest transformer call; with group offloading (``low_vram``,
  ``small_gpu``) two blocks' weights are resident; GGUF layers add the dequantized copy of the
  largest matrix (float16 result, then its compute-dtype cast: 4 bytes per value).
* **CPU RAM peak** (:func:`cpu_peak_bytes`) -- every model is loaded into RAM before it is placed,
  so the peak is the sum of all weights as loaded (a GGUF file is memory-mapped: its pages are
  that RAM), the condition / output videos in float32, and a fixed runtime share.

Fixed shares are assumptions, named here: :data:`RUNTIME_RAM_BYTES` (Python, PyTorch, CUDA
runtime on the host), :data:`SYSTEM_RAM_RESERVE` (the operating system and desktop: a machine
"with 32 GB" leaves the rest to us), :data:`GPU_RESERVE` (CUDA context, allocator slack).
"""

from __future__ import annotations

from dataclasses import dataclass

from .costs import (
    IMAGE_ENCODER_PARAMS,
    REAL_14B,
    TEXT_ENCODER_PARAMS,
    VAE_PARAMS,
    TransformerShape,
    activation_bytes,
    transformer_param_count,
    weights_bytes,
)

#: Bits per weight of the GGUF types (``gguf.GGML_QUANT_SIZES``: 8 x bytes per block / values per block).
GGUF_BITS_PER_WEIGHT = {
    "F16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.5625,
    "Q5_K": 5.5,
    "Q5_0": 5.5,
    "Q4_K": 4.5,
    "Q4_0": 4.5,
    "Q3_K": 3.4375,
    "Q2_K": 2.625,
}
#: The types the tables show, best first.
GGUF_TYPES = ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K")
#: Parameters of the real SteadyDancer-14B transformer (meta device, ``benchmarks/transformer_size.py``):
#: the cost formula's count plus the pose modules' 0.11 M.
REAL_14B_PARAMS = 16_396_718_736

#: Assumed host memory of the runtime (Python, PyTorch, CUDA runtime, libraries).
RUNTIME_RAM_BYTES = 3.0e9
#: Assumed RAM the operating system and desktop keep for themselves.
SYSTEM_RAM_RESERVE = 4.0e9
#: Assumed GPU memory outside the model's tensors (CUDA context, allocator fragmentation).
GPU_RESERVE = 1.0e9
#: Presets the model knows; ``small_gpu`` needs a GGUF file, ``balanced`` / ``fast`` cannot take one.
PRESETS = ("quality", "balanced", "low_vram", "fast", "small_gpu")


def quantized_param_count(shape: TransformerShape = REAL_14B) -> int:
    """Values in the 2-D matrices a community GGUF converter quantizes."""
    d, p = shape.dim, shape.patch_size[0] * shape.patch_size[1] * shape.patch_size[2]
    blocks = shape.num_layers * (10 * d * d + 2 * d * shape.ffn_dim)
    embedders = (
        shape.text_dim * d + d * d  # text embedding
        + shape.freq_dim * d + d * d + d * 6 * d  # time embedding and projection
        + shape.image_dim**2 + shape.image_dim * d  # CLIP embedder
    )
    return blocks + embedders + d * shape.out_channels * p  # + head


def gguf_file_bytes(gguf_type: str, shape: TransformerShape = REAL_14B, total_params: int | None = None) -> int:
    """Size of a transformer GGUF file quantized uniformly with ``gguf_type`` (computed, see module doc)."""
    if gguf_type not in GGUF_BITS_PER_WEIGHT:
        raise ValueError(f"Unknown GGUF type {gguf_type!r}: one of {', '.join(GGUF_BITS_PER_WEIGHT)}.")
    total = total_params if total_params is not None else (
        REAL_14B_PARAMS if shape == REAL_14B else transformer_param_count(shape))
    matrices = quantized_param_count(shape)
    return int(matrices * GGUF_BITS_PER_WEIGHT[gguf_type] / 8 + (total - matrices) * 4)


def _block_params(shape: TransformerShape) -> int:
    return 10 * shape.dim**2 + 2 * shape.dim * shape.ffn_dim


def _widest_call(preset: str) -> int:
    # Passes batched in one transformer call while denoising (official sampling: 3 in the condition window).
    if preset in ("low_vram", "small_gpu"):
        return 1
    if preset == "fast":
        return 1
    return 3


def _check(preset: str, gguf_type: str | None) -> None:
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}: one of {', '.join(PRESETS)}.")
    if preset == "small_gpu" and gguf_type is None:
        raise ValueError("small_gpu runs a GGUF transformer: give gguf_type.")
    if gguf_type is not None and preset in ("balanced", "fast"):
        raise ValueError(f"{preset} cannot run a GGUF transformer (fp8 casting / LoRA fusing need float weights).")


def gpu_peak_bytes(preset: str, num_frames: int = 81, height: int = 480, width: int = 832,
                   gguf_type: str | None = None, shape: TransformerShape = REAL_14B) -> int:
    """GPU bytes while denoising: resident transformer weights + activations of the widest call
    (+ one dequantized matrix for GGUF). Text encoder, CLIP and VAE are off the GPU meanwhile."""
    _check(preset, gguf_type)
    activations = activation_bytes(num_frames, height, width, _widest_call(preset), shape)
    dequantized = 4 * shape.dim * shape.ffn_dim if gguf_type is not None else 0
    if preset in ("low_vram", "small_gpu"):  # group offloading: ~2 blocks resident
        bits = GGUF_BITS_PER_WEIGHT[gguf_type] if gguf_type is not None else 16
        return int(2 * _block_params(shape) * bits / 8 + dequantized + activations)
    if gguf_type is not None:
        return gguf_file_bytes(gguf_type, shape) + dequantized + activations
    weights = weights_bytes(shape)["transformer"]["fp8" if preset == "balanced" else "bf16"]
    return weights + activations


def cpu_peak_bytes(preset: str, num_frames: int = 81, height: int = 480, width: int = 832,
                   gguf_type: str | None = None, shape: TransformerShape = REAL_14B) -> int:
    """Host RAM at the peak (everything loaded, before placement): transformer as loaded (bf16, or
    the GGUF file), UMT5 in bf16, CLIP and VAE in float32, three float32 videos, the runtime."""
    _check(preset, gguf_type)
    if gguf_type is not None:
        transformer = gguf_file_bytes(gguf_type, shape)
    else:
        transformer = weights_bytes(shape)["transformer"]["bf16"]
    encoders = 2 * TEXT_ENCODER_PARAMS + 4 * IMAGE_ENCODER_PARAMS + 4 * VAE_PARAMS
    videos = 3 * num_frames * height * width * 3 * 4
    return int(transformer + encoders + videos + RUNTIME_RAM_BYTES)


@dataclass(frozen=True)
class Recommendation:
    preset: str
    gguf_type: str | None
    gpu_bytes: int
    cpu_bytes: int

    @property
    def file(self) -> str:
        return "official bf16 weights" if self.gguf_type is None else f"{self.gguf_type} GGUF"


#: Choices from best weights / fastest to smallest: full weights, then GGUF types; for each, all on
#: the GPU before group offloading.
_CANDIDATES = (
    ("quality", None), ("low_vram", None), ("quality", "Q8_0"), ("small_gpu", "Q8_0"), ("balanced", None),
    *((preset, t) for t in GGUF_TYPES[1:] for preset in ("quality", "small_gpu")),
)


def recommend(gpu_bytes: float, ram_bytes: float, num_frames: int = 81, height: int = 480,
              width: int = 832) -> Recommendation | None:
    """The best (weights, preset) whose GPU peak fits ``gpu_bytes - GPU_RESERVE`` and whose RAM peak
    fits ``ram_bytes - SYSTEM_RAM_RESERVE``; ``None`` when nothing does."""
    for preset, gguf_type in _CANDIDATES:
        gpu = gpu_peak_bytes(preset, num_frames, height, width, gguf_type)
        cpu = cpu_peak_bytes(preset, num_frames, height, width, gguf_type)
        if gpu <= gpu_bytes - GPU_RESERVE and cpu <= ram_bytes - SYSTEM_RAM_RESERVE:
            return Recommendation(preset, gguf_type, gpu, cpu)
    return None
