"""The GPU side of the app: the pipeline (loaded once per process, on first use), what is missing
when generation cannot run, the GPU-time estimate, and :func:`run_generation` -- the one function
decorated with ``@spaces.GPU`` (a no-op off ZeroGPU), with a duration computed from the work.

torch / diffusers are imported inside the functions: the first page is served before they load.
"""

from __future__ import annotations

import math
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import spaces

from steadydancer.errors import MissingWeightsError
from steadydancer.generation import GenerationJob

from .config import CPU_MAX_TRANSFORMER_BYTES, AppConfig, zero_gpu_size
from .errors import GenerationCancelled, user_errors
from .inputs import GenerationRequest

_PIPELINES: dict[tuple, Any] = {}
_PIPELINE_LOCK = threading.Lock()
#: Free generation slots of this process: one per device of ``config.devices`` (else one). A
#: generation takes a slot for its whole run, whatever the queue settings.
_SLOTS: "queue.Queue[int] | None" = None
_SLOTS_LOCK = threading.Lock()
_CURRENT = threading.local()


def _slot_pool(config: AppConfig) -> "queue.Queue[int]":
    global _SLOTS
    with _SLOTS_LOCK:
        if _SLOTS is None or _SLOTS.maxsize != config.generation_slots:
            _SLOTS = queue.Queue(maxsize=config.generation_slots)
            for slot in range(config.generation_slots):
                _SLOTS.put(slot)
        return _SLOTS


def progress_adapter(progress, start: float = 0.0, end: float = 1.0) -> Callable[[float, str], None]:
    """(fraction, message) -> gr.Progress, mapped into [start, end] of the bar."""

    def call(fraction: float, message: str) -> None:
        if progress is not None:
            progress(start + (end - start) * min(max(float(fraction), 0.0), 1.0), desc=message)

    return call


def device_for(config: AppConfig, slot: int | None = None) -> str:
    """The device generation runs on: slot ``slot`` of ``config.devices``, else ``config.device``,
    else cuda when there is one. Without ``slot``, in a generation's thread: the device it took."""
    if slot is None:
        slot = getattr(_CURRENT, "slot", None)
    if config.devices and not config.zero_gpu:
        return config.devices[(slot or 0) % len(config.devices)]
    if config.device:
        return config.device
    if config.zero_gpu:
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def noise_device_for(config: AppConfig, noise_device: str) -> str:
    """The device of the generator that draws the noise (the GPU's in auto mode on CUDA)."""
    from steadydancer.noise import resolve_noise_device

    return resolve_noise_device(noise_device, device_for(config))


def get_pipeline(config: AppConfig, preset: str, slot: int = 0):
    """The pipeline of generation slot ``slot`` for (model, preset, device), loaded on first use and
    kept; another combination replaces it (one pipeline per slot in memory at a time). On ZeroGPU the
    start-up preset is always used, and everything stays on the GPU (no offloading hooks: ZeroGPU
    moves the weights onto the GPU it attaches for each call)."""
    from steadydancer.generation import load_pipeline
    from steadydancer.presets import with_overrides

    if config.zero_gpu:
        preset = config.preset
    device = device_for(config, slot)
    key = (slot, config.model, config.encoders, preset, device, config.offline)
    with _PIPELINE_LOCK:
        pipe = _PIPELINES.get(key)
        if pipe is None:
            for old in [k for k in _PIPELINES if k[0] == slot]:  # free this slot's previous one first
                del _PIPELINES[old]
            layout = with_overrides(preset, offload="none") if config.zero_gpu else preset
            pipe = load_pipeline(config.model, preset=layout, device=device, offline=config.offline,
                                 encoders=config.encoders)
            _PIPELINES[key] = pipe
        return pipe


def _local_transformer_bytes(config: AppConfig) -> Optional[int]:
    """Size of the transformer weights when they are on this machine (None if not, e.g. a repo id
    not downloaded yet)."""
    from steadydancer.weights import default_encoders, resolve_weights

    try:
        location = resolve_weights(config.model, config.encoders or default_encoders(), offline=True)
    except MissingWeightsError:
        return None
    if location.transformer_file is not None:
        return location.transformer_file.stat().st_size
    folder = location.transformer_dir or Path(location.pipeline_dir) / "transformer"
    return sum(f.stat().st_size for f in Path(folder).glob("diffusion_pytorch_model*.safetensors"))


def check_runtime(config: AppConfig) -> None:
    """Raise MissingWeightsError saying what is missing (weights, a GPU) -- before any work, and
    without downloading anything."""
    from steadydancer.generation import check_model

    device = device_for(config)
    check_model(config.model, device=device, offline=config.offline, encoders=config.encoders)
    if device == "cpu" and not config.device:  # chosen because there is no CUDA here
        size = _local_transformer_bytes(config)
        if size is None or size > CPU_MAX_TRANSFORMER_BYTES:
            what = f"its transformer weights are {size / 1024**3:.0f} GB" if size else "it is not downloaded"
            raise MissingWeightsError(
                f"No CUDA GPU was found on this machine, and the model {config.model} cannot run on the CPU "
                f"({what}). Run the app on a machine with an NVIDIA GPU (12 GB with a GGUF file and the "
                "small_gpu preset, 40+ GB for quality) or on a ZeroGPU Space. Preview poses works without a GPU. To try the "
                "generation path on the CPU, start the app with a small model folder (--model).")


def estimate_seconds(config: AppConfig, request: GenerationRequest, width: int, height: int) -> float:
    """GPU seconds this generation needs (the cost model, scaled to the GPU slice)."""
    from steadydancer.costs import H200_TRANSFORMER_TFLOPS, H200_VAE_TFLOPS, estimate_gpu_seconds

    s = request.sampling
    scale = config.gpu_throughput_scale
    return float(estimate_gpu_seconds(
        request.num_frames, s.num_inference_steps, height, width, guidance_scale=s.guidance_scale,
        condition_guidance_scale=s.condition_guidance_scale, condition_window=s.condition_window,
        preset=request.preset, transformer_tflops=H200_TRANSFORMER_TFLOPS * scale,
        vae_tflops=H200_VAE_TFLOPS * scale,
    ))


def duration_for(config: AppConfig, request: GenerationRequest, width: int, height: int) -> int:
    """Seconds of GPU to ask ZeroGPU for: the estimate plus 25% and 20 s (loading, decoding)."""
    return int(math.ceil(estimate_seconds(config, request, width, height) * 1.25 + 20))


def _gpu_duration(job: GenerationJob, request: GenerationRequest, config: AppConfig, progress=None,
                  cancel=None) -> int:
    """ZeroGPU's dynamic duration: called with run_generation's own arguments."""
    return min(duration_for(config, request, job.width, job.height), config.zero_gpu_max_seconds)


@spaces.GPU(duration=_gpu_duration, size=zero_gpu_size())
@user_errors  # inside the GPU worker too: ZeroGPU forwards a gr.Error's message, not other exceptions
def run_generation(job: GenerationJob, request: GenerationRequest, config: AppConfig, progress=None,
                   cancel: Optional[threading.Event] = None) -> list[np.ndarray]:
    """The GPU part: encode, denoise, decode. Inputs are plain data (a job of PIL image + uint8 frames,
    frozen dataclasses) so ZeroGPU can hand them to its GPU worker; ``progress`` is the event's
    gr.Progress (ZeroGPU forwards its updates)."""
    from steadydancer.generation import run_job

    bar = progress_adapter(progress, 0.15, 0.95)

    def on_progress(fraction: float, message: str) -> None:
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled()
        bar(fraction, message)

    slots = _slot_pool(config)
    slot = slots.get()  # waits for a free GPU (the queue lets at most generation_slots events in)
    _CURRENT.slot = slot
    try:
        bar(0.0, "Loading the model" if config.generation_slots == 1 else f"Loading the model ({device_for(config)})")
        pipe = get_pipeline(config, request.preset, slot)
        return run_job(pipe, job, request.sampling, prompt=request.prompt,
                       negative_prompt=request.negative_prompt or None, seed=request.seed, progress=on_progress,
                       noise_device=request.noise_device)
    finally:
        slots.put(slot)


def preload(config: AppConfig) -> None:
    """ZeroGPU: load the weights at start-up and move them to "cuda" -- ZeroGPU records the move and
    places the weights on the GPU it attaches to each call. A Space without weights still serves the
    preview; Generate then says what is missing."""
    import logging

    from steadydancer.errors import SteadyDancerInputError

    try:
        get_pipeline(config, config.preset)
    except (MissingWeightsError, SteadyDancerInputError) as exc:
        logging.getLogger("steadydancer.app").error("SteadyDancer weights could not be loaded: %s", exc)
