"""Memory / speed presets for :class:`~steadydancer.pipeline.SteadyDancerPipeline`.

A preset is two things: how the weights sit in memory (dtype, fp8 storage, offloading, VAE tiling,
guidance passes batched or one by one) and, for ``fast``, different sampling settings with a
step-distillation LoRA. Everything is done with diffusers' own mechanisms:

* ``quality`` -- bf16 transformer and text encoder, ``enable_model_cpu_offload`` (one model on the
  GPU at a time), guidance passes batched; official sampling (40 UniPC steps, CFG 5, condition
  CFG 1.0 in the 0.1-0.4 window).
* ``balanced`` -- as quality, with the transformer's weights stored in float8_e4m3fn and upcast to
  bf16 layer by layer (``enable_layerwise_casting``); official sampling.
* ``low_vram`` -- bf16; group offloading of every model (leaf level; on CUDA, streams prefetch the
  next layer during compute), VAE tiling, guidance passes one at a time; official sampling.
* ``fast`` -- as quality, plus the lightx2v Wan2.1-I2V 4-step distillation LoRA fused into the
  transformer; 4 ``lcm`` steps, CFG 1, no condition pass (4 transformer passes instead of 91).
* ``small_gpu`` -- for a 12-16 GB GPU in a 32 GB PC: a GGUF transformer file (its linear weights
  stay quantized in RAM and on the GPU, dequantized layer by layer), group offloading of every
  model (the text encoder is never resident on the GPU: it streams through layer by layer, as the
  transformer does), VAE tiling, guidance passes one at a time; official sampling. Peaks at
  480p / 81 frames: :mod:`steadydancer.memory_model`.

GPU memory while denoising 81 frames at 1024x576 (cost model, ``benchmarks/flops_memory.py``):
quality ~49 GB (32.8 GB bf16 transformer + 3 batched passes of ~5.4 GB activations), balanced
~33 GB (16.6 GB fp8), low_vram ~7 GB (about two blocks resident, one pass at a time), fast ~38 GB.
At 480p subtract ~5-11 GB; at 720p add ~9 GB (quality). Text encoder, CLIP and VAE are off the GPU
while the transformer runs (model / group offloading).

Options on top of any preset: ``attention_backend`` (diffusers' dispatcher: ``"flash"``,
``"_flash_3"``, ``"sage"``, ``"xformers"``, ``"native"`` ...) and ``first_block_cache`` (diffusers'
First-Block Cache: when the first block's residual changes by less than the threshold between two
steps, the other blocks are skipped and their cached residual reused; 0.05-0.1 is a typical range,
it trades detail for speed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .errors import MissingWeightsError, SteadyDancerInputError
from .settings import PRESET, PRESET_SAMPLING

#: The Wan2.1 I2V 14B step-distillation LoRA (lightx2v, rank 64, official key names) of the fast preset.
FAST_LORA_REPO = "lightx2v/Wan2.1-Distill-Loras"
FAST_LORA_FILE = "wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors"
#: A local file (or repo::file) overriding the default fast LoRA.
FAST_LORA_ENV = "STEADYDANCER_FAST_LORA"


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA to fuse into the transformer: a local ``.safetensors`` file, or ``repo`` + ``weight_name``
    on the Hub (fetched once, into the Hugging Face cache)."""

    repo_or_path: str
    weight_name: str | None = None
    scale: float = 1.0


@dataclass(frozen=True)
class Preset:
    """How to hold the weights, and (for ``fast``) how to sample."""

    name: str
    summary: str
    transformer_dtype: torch.dtype = torch.bfloat16
    text_encoder_dtype: torch.dtype = torch.bfloat16
    #: Store the transformer's weights in float8_e4m3fn, compute in ``transformer_dtype``.
    fp8_storage: bool = False
    #: ``"none"`` (everything on the device), ``"model"`` (one model at a time) or ``"group"``.
    offload: str = "model"
    vae_tiling: bool = False
    batch_guidance_passes: bool = True
    lora: LoraSpec | None = None
    #: The transformer must come from a GGUF file (``--model x.gguf``).
    needs_gguf: bool = False
    #: Overrides of the pipeline call (num_inference_steps, guidance_scale, condition_guidance_scale,
    #: solver, shift).
    sampling: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "quality": Preset(
        name="quality",
        summary="bf16 weights, one model on the GPU at a time; official sampling (40 steps, 3 passes in "
        "the condition window).",
    ),
    "balanced": Preset(
        name="balanced",
        summary="transformer weights stored in fp8 (computed in bf16): half the weight memory, "
        "close to quality.",
        fp8_storage=True,
    ),
    "low_vram": Preset(
        name="low_vram",
        summary="group offloading of every model, VAE tiling, guidance passes one by one: runs in a "
        "few GB of GPU memory, slower.",
        offload="group",
        vae_tiling=True,
        batch_guidance_passes=False,
    ),
    "fast": Preset(
        name="fast",
        summary="lightx2v 4-step distillation LoRA: 4 steps, one pass per step (no CFG, no condition "
        "guidance); about 20x fewer transformer passes, lower fidelity.",
        lora=LoraSpec(FAST_LORA_REPO, FAST_LORA_FILE),
        sampling=PRESET_SAMPLING["fast"],
    ),
    "small_gpu": Preset(
        name="small_gpu",
        summary="for 12-16 GB GPUs and 32 GB of RAM: a GGUF transformer file (e.g. Q4_K), group offloading "
        "of every model, VAE tiling, guidance passes one by one; official sampling, slower.",
        offload="group",
        vae_tiling=True,
        batch_guidance_passes=False,
        needs_gguf=True,
    ),
}
assert set(PRESETS) == set(PRESET.choices), "steadydancer.settings.PRESET lists the presets"


#: What to tell a user who picked small_gpu without a GGUF file.
SMALL_GPU_NEEDS_GGUF = (
    "The small_gpu preset runs a GGUF transformer file: pass --model /path/to/SteadyDancer-14B-<type>.gguf "
    "(or repo::file.gguf; which type fits your GPU and RAM is in the README's table, Q4_K for a 12 GB GPU "
    "with 32 GB of RAM) and --encoders for the Wan2.1 VAE / UMT5 / CLIP. With the full bf16 weights use "
    "low_vram (about 51 GB of RAM at 480p)."
)


def is_gguf_transformer(transformer) -> bool:
    """True when ``transformer`` was loaded from a GGUF file (diffusers' GGUF quantizer attached)."""
    quantizer = getattr(transformer, "hf_quantizer", None)
    return quantizer is not None and type(quantizer).__name__ == "GGUFQuantizer"


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name`` (``low-vram`` accepted); a user error lists the choices."""
    if isinstance(name, Preset):
        return name
    return PRESETS[PRESET.check(name)]


def fast_lora_spec() -> LoraSpec:
    """The fast preset's LoRA, or the one ``STEADYDANCER_FAST_LORA`` names (a file, or ``repo::file``)."""
    override = os.environ.get(FAST_LORA_ENV)
    if not override:
        return PRESETS["fast"].lora
    if "::" in override:
        repo, weight_name = override.split("::", 1)
        return LoraSpec(repo, weight_name)
    return LoraSpec(override)


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def resolve_lora_file(spec: LoraSpec, offline: bool | None = None) -> str:
    """A local path for ``spec`` (downloading the one file when allowed)."""
    path = os.path.expanduser(spec.repo_or_path)
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        if spec.weight_name and os.path.isfile(os.path.join(path, spec.weight_name)):
            return os.path.join(path, spec.weight_name)
        raise MissingWeightsError(f"LoRA folder {path} has no {spec.weight_name or 'weight_name given'}.")
    if spec.weight_name is None:
        raise MissingWeightsError(f"LoRA {spec.repo_or_path!r} is neither a file nor a repo with a weight_name.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from .weights import is_offline

    offline = is_offline(offline)
    try:
        return hf_hub_download(spec.repo_or_path, spec.weight_name, local_files_only=offline)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise MissingWeightsError(
            f"The LoRA {spec.repo_or_path}/{spec.weight_name} is not available"
            f"{' offline (HF_HUB_OFFLINE=1)' if offline else ''}: {type(error).__name__}.\n"
            f"Download it once:  hf download {spec.repo_or_path} {spec.weight_name}\n"
            f"or set {FAST_LORA_ENV}=/path/to/{spec.weight_name}."
        ) from error


def load_lora(pipe, spec: LoraSpec | str, *, fuse: bool = True, adapter_name: str = "distill", offline=None) -> None:
    """Load a Wan LoRA (official ``diffusion_model.blocks.N.self_attn.q.lora_A/B`` / ``lora_down/up``
    keys with optional ``alpha`` and ``diff_b``, musubi, or diffusers keys) into the transformer through
    diffusers' Wan LoRA loader. ``fuse`` bakes it into the weights (``scale``) and drops the adapter, so
    sampling pays nothing for it and fp8 casting can follow."""
    if isinstance(spec, str):
        spec = LoraSpec(spec)
    path = resolve_lora_file(spec, offline)
    folder, name = os.path.split(path)
    pipe.load_lora_weights(folder or ".", weight_name=name, adapter_name=adapter_name)
    if fuse:
        pipe.fuse_lora(components=["transformer"], lora_scale=spec.scale, adapter_names=[adapter_name])
        pipe.unload_lora_weights()
    else:
        pipe.set_adapters([adapter_name], [spec.scale])


def set_attention_backend(pipe, backend: str | None) -> None:
    """Use diffusers' attention ``backend`` in every transformer attention (``None``: leave as is)."""
    if backend is None:
        return
    from diffusers.models.attention_dispatch import AttentionBackendName

    names = [b.value for b in AttentionBackendName]
    if backend not in names:
        raise SteadyDancerInputError(f"Unknown attention backend {backend!r}: choose one of {', '.join(names)}.")
    pipe.transformer.set_attention_backend(backend)


def enable_first_block_cache(pipe, threshold: float | None) -> None:
    """diffusers' First-Block Cache on the transformer blocks (``None`` or 0: off)."""
    if not threshold:
        return
    from diffusers.hooks import FirstBlockCacheConfig

    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=float(threshold)))


def _is_accelerator(device: torch.device) -> bool:
    return device.type not in ("cpu", "meta")


def apply_preset(
    pipe,
    preset: str | Preset,
    device: str | torch.device = "cuda",
    *,
    attention_backend: str | None = None,
    first_block_cache: float | None = None,
    lora: LoraSpec | str | None = None,
    offline: bool | None = None,
):
    """Put ``pipe`` in the memory layout of ``preset`` on ``device`` and return it.

    Order matters and is: LoRA (fused into the bf16/float weights) -> fp8 layerwise casting ->
    attention backend / cache hooks -> placement (offloading or ``.to(device)``). Load the pipeline
    with ``preset.transformer_dtype`` first (:func:`steadydancer.generation.load_pipeline` does).
    On a CPU ``device`` model offloading is meaningless and skipped; group offloading still runs
    (onload device = CPU), which is how the tests exercise it.
    """
    preset = get_preset(preset)
    device = torch.device(device)
    gguf = is_gguf_transformer(pipe.transformer)
    if preset.needs_gguf and not gguf:
        raise SteadyDancerInputError(SMALL_GPU_NEEDS_GGUF)

    # 1. LoRA (the preset's, unless one is given).
    lora = lora if lora is not None else (fast_lora_spec() if preset.name == "fast" else preset.lora)
    if gguf and (lora is not None or preset.fp8_storage):
        what = "a LoRA cannot be fused into" if lora is not None else "fp8 storage cannot be applied to"
        raise SteadyDancerInputError(
            f"The {preset.name} preset needs float transformer weights: {what} a GGUF-quantized transformer. "
            "With a GGUF file use quality (everything on a 24 GB+ GPU) or small_gpu; for fast / balanced load the "
            "official weights."
        )
    if lora is not None:
        load_lora(pipe, lora, offline=offline)

    # 2. fp8 storage of the transformer's big matrices (norms, embeddings, pose modules stay as loaded).
    if preset.fp8_storage:
        pipe.transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=preset.transformer_dtype
        )

    # 3. Kernels and caches.
    set_attention_backend(pipe, attention_backend)
    enable_first_block_cache(pipe, first_block_cache)

    # 4. Placement.
    pipe.batch_guidance_passes = preset.batch_guidance_passes
    if preset.vae_tiling:
        pipe.vae.enable_tiling()
    if preset.offload == "group":
        accelerator = _is_accelerator(device)
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=accelerator,
            record_stream=accelerator,
            non_blocking=accelerator,
            # Pin on the fly: pre-pinning every weight needs ~45 GB of page-locked RAM, which a machine
            # short of GPU memory rarely has to spare.
            low_cpu_mem_usage=accelerator,
        )
    elif preset.offload == "model" and _is_accelerator(device):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.register_to_config(preset=preset.name)  # where diffusers records a pipeline's configuration
    return pipe


def sampling_kwargs(preset: str | Preset) -> dict[str, Any]:
    """The pipeline-call settings the preset imposes (empty for the official-sampling presets)."""
    return dict(get_preset(preset).sampling)


def with_overrides(preset: str | Preset, **changes) -> Preset:
    """A copy of ``preset`` with fields changed (e.g. ``offload="none"`` on a big GPU)."""
    return replace(get_preset(preset), **changes)
