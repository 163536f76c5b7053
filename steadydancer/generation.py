"""The one workflow the command line and the app both run: poses -> conditions -> pipeline -> video.

    poses = run_pose_path(image, video, options)               # CPU (steadydancer.pose.path)
    job   = prepare_job(poses, max_area=..., num_frames=...)   # length and size decided once, conditions
                                                               # made as options.conditioning says,
                                                               # at the photo's size (the official hand-over)
    pipe  = load_pipeline(model, preset, device)               # weights -> memory layout of the preset
    frames = run_job(pipe, job, sampling, prompt=..., seed=...)
    write_result(path, frames, job)                            # H.264 at the motion's rate (+ audio rule)

Each decision has one home: the length (:func:`steadydancer.settings.frames_to_generate`: requested,
clipped to the motion, rounded down to 4n + 1), the size (:func:`generation_size`: the official rule on
the character photo's own size), the output rate and the audio rule (:func:`output_fps`,
:func:`audio_source`). The CLI and the app keep only their own input and output.

torch / diffusers load inside the functions that need them: importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .constants import DEFAULT_MAX_AREA, MODEL_FPS, size_for_area
from .errors import MissingWeightsError, SteadyDancerInputError
from .settings import WINDOW_FRAMES, WINDOW_OVERLAP, SamplingSettings, env_flag, frames_to_generate
from .weights import default_encoders, default_model, is_gguf_path, is_offline, resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from .pose.path import PoseOptions, PosePathResult

ProgressFn = Callable[[float, str], None]


# =============================================================================================
# Loading
# =============================================================================================


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

    ``model``: a diffusers-format folder/repo, the complete official checkpoint folder (its T5 / CLIP /
    VAE ``.pth`` files are loaded as-is, nothing downloaded), or the SteadyDancer transformer
    folder/repo (default ``$STEADYDANCER_MODEL`` or ``MCG-NJU/SteadyDancer-14B``), or a ``.gguf``
    transformer file / ``repo::file.gguf`` (quantized); ``encoders``: a Wan2.1-I2V diffusers
    folder/repo for the VAE / UMT5 / CLIP when the model has none (default ``$STEADYDANCER_ENCODERS``
    or ``Wan-AI/Wan2.1-I2V-14B-720P-Diffusers``). ``preset``: ``quality | balanced | low_vram |
    fast | small_gpu`` (see :mod:`steadydancer.presets`), recorded in ``pipe.config.preset``. ``offline`` defaults
    to ``HF_HUB_OFFLINE``. Raises :class:`~steadydancer.errors.MissingWeightsError` saying exactly
    what to download or set.
    """
    from .pipeline import SteadyDancerPipeline
    from .presets import apply_preset, get_preset

    preset_obj = get_preset(preset)
    device = device or _default_device()
    _check_preset_weights(preset_obj, model or default_model())  # before loading tens of GB
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


def _check_preset_weights(preset, model) -> None:
    from .presets import SMALL_GPU_NEEDS_GGUF, get_preset

    if get_preset(preset).needs_gguf and not is_gguf_path(model):
        raise SteadyDancerInputError(SMALL_GPU_NEEDS_GGUF)


def check_model(
    model: str | os.PathLike | None = None,
    device: str | None = None,
    offline: bool | None = None,
    *,
    encoders: str | os.PathLike | None = None,
    preset: str | None = None,
) -> None:
    """Raise :class:`MissingWeightsError` now if generating cannot work: weights absent (offline, or
    a local folder that lacks files) or a CUDA device asked for where there is none. Online, weights
    not yet downloaded are fine (loading downloads them); nothing big is fetched here. With
    ``preset``, also a :class:`SteadyDancerInputError` when it needs a GGUF file and ``model`` is none."""
    if preset is not None:
        _check_preset_weights(preset, model or default_model())
    if device is not None and str(device).startswith("cuda") and not env_flag("SPACES_ZERO_GPU"):
        import torch  # ZeroGPU attaches the GPU inside the call: no CUDA before it

        if not torch.cuda.is_available():
            raise MissingWeightsError(
                "No CUDA GPU is available here. SteadyDancer needs a GPU (12 GB with a GGUF file and the small_gpu "
                "preset, 40+ GB for quality); run on a GPU machine, or choose device 'cpu' for a (very slow) test run."
            )
    model = model or default_model()
    encoders = encoders or default_encoders()
    local = os.path.exists(os.path.expanduser(str(model)))
    if local or is_offline(offline):
        resolve_weights(model, encoders, offline=True)


def pipeline_preset(pipe) -> str | None:
    """The preset ``pipe`` was laid out with (recorded in its config by ``apply_preset``)."""
    config = getattr(pipe, "config", None)
    return config.get("preset") if config is not None else None


# =============================================================================================
# One job: decided once, rendered once
# =============================================================================================


def generation_size(image_size: tuple[int, int], max_area: int = DEFAULT_MAX_AREA, split: int = 1) -> tuple[int, int]:
    """(W, H) of the video for a character photo of ``image_size`` (its own pixels, never an already
    rounded size): the official rule, :func:`steadydancer.constants.size_for_area`. ``split > 1``
    (context parallelism over that many GPUs): a size whose token grid splits into equal shares,
    :func:`steadydancer.parallel.parallel_size_for_area`."""
    if split > 1:
        from .parallel import parallel_size_for_area

        return parallel_size_for_area(int(image_size[0]), int(image_size[1]), int(max_area), int(split))
    return size_for_area(int(image_size[0]), int(image_size[1]), int(max_area))


def output_fps(options: "PoseOptions") -> float:
    """The rate the result plays at: the motion's rate (16 fps by default, so the motion keeps its
    real speed); with ``fps=0`` (every source frame kept) the model's 16 fps, as the official code."""
    return float(options.fps) if options.fps > 0 else float(MODEL_FPS)


def frame_rate_note(poses: "PosePathResult") -> str:
    """One line saying which frame-rate behaviour is used (``frame_rate``) and what it does to the
    motion's speed (the result's rate over the rate the driving poses were read at)."""
    out = output_fps(poses.options)
    source = float(poses.driving.poses.fps)
    speed = out / source if source > 0 else 1.0
    pace = f"{speed:.2f}x speed" + (", slow motion" if speed < 0.99 else ", fast motion" if speed > 1.01 else "")
    if poses.options.frame_rate == "official":
        return f"Frame rate: official -- every native frame of the {source:g} fps clip, played at {out:g} fps ({pace})."
    if poses.options.fps <= 0:
        return f"Frame rate: every frame of the {source:g} fps clip, played at {out:g} fps ({pace})."
    return f"Frame rate: real time -- the motion resampled to {out:g} fps ({pace})."


def audio_source(poses: "PosePathResult") -> Path | None:
    """The driving clip whose sound fits the result, or ``None``: only when the video starts with the
    clip (no lead-in) and plays it in real time (not the source frames at 16 fps)."""
    if poses.aligned.lead_in_frames or poses.options.fps <= 0:
        return None
    return poses.driving.video


@dataclass(frozen=True)
class GenerationJob:
    """What the GPU part needs, as plain data (ZeroGPU pickles it to its worker): the character, the
    positive / negative condition frames (at the character photo's own size -- or the official canvas
    for a photo larger than it -- as the official generator hands them over; the pipeline resizes them
    to ``width x height``), the video size and the length."""

    reference_image: "Image.Image"
    positive: list
    negative: list | None
    width: int
    height: int
    num_frames: int
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def prepare_job(poses: "PosePathResult", *, max_area: int = DEFAULT_MAX_AREA, num_frames: int | None = None,
                negative: bool = True, split: int = 1) -> GenerationJob:
    """Decide the length (``num_frames``: default the whole motion; clipped to it, rounded down to 4n+1)
    and the size (:func:`generation_size` of the photo; ``split``: GPUs sharing the sequence) once, and
    make the conditions of only the frames that will be generated, as ``poses.options.conditioning`` says
    (:mod:`steadydancer.pose.conditioning`: ``official`` = through the official video / JPEG chain,
    ``clean`` = without it), handed over as the official generator hands them to its model code: at the
    photo's own size (:func:`~steadydancer.pose.conditioning.handover_size`); the pipeline resizes them to
    the video size."""
    from .pose.conditioning import condition_videos

    count = frames_to_generate(num_frames, len(poses.aligned.positive))
    width, height = generation_size(poses.reference.image.size, max_area, split)
    aligned = dataclasses.replace(poses.aligned, positive=poses.aligned.positive[:count],
                                  negative=poses.aligned.negative[:count])
    positive, negative_frames = condition_videos(poses.reference, aligned, poses.options)
    return GenerationJob(reference_image=poses.reference.image, positive=positive,
                         negative=negative_frames if negative else None, width=width, height=height,
                         num_frames=count, fps=output_fps(poses.options))


def run_job(pipe, job: GenerationJob, sampling: SamplingSettings | None = None, *, prompt: str = "",
            negative_prompt: str | None = None, seed: int = 0, progress: ProgressFn | None = None,
            window_frames: int = WINDOW_FRAMES.default, window_overlap: int = WINDOW_OVERLAP.default,
            noise_device: str | None = None) -> list[np.ndarray]:
    """The GPU part of a job: the pipeline at exactly the job's size and length (``noise_device``: see
    :func:`generate_video`)."""
    sampling = sampling or SamplingSettings.resolve(pipeline_preset(pipe))
    return generate_video(
        pipe, job.reference_image, job.positive, job.negative, prompt=prompt, negative_prompt=negative_prompt,
        num_frames=job.num_frames, num_inference_steps=sampling.num_inference_steps,
        guidance_scale=sampling.guidance_scale, condition_guidance_scale=sampling.condition_guidance_scale,
        condition_window=sampling.condition_window, shift=sampling.shift, solver=sampling.solver, seed=seed,
        height=job.height, width=job.width, progress=progress, window_frames=window_frames,
        window_overlap=window_overlap, noise_device=noise_device,
    )


def write_result(path: str | os.PathLike, frames: Sequence[np.ndarray], job: GenerationJob,
                 poses: "PosePathResult | None" = None, *, audio: bool = True) -> Path:
    """Write ``frames`` as H.264 at the job's rate, with the driving clip's sound when it fits."""
    from .video import write_video

    audio_from = audio_source(poses) if (audio and poses is not None) else None
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_video(out, frames, job.fps, audio_from=audio_from)


# =============================================================================================
# The pipeline call
# =============================================================================================


def generate_video(
    pipe,
    reference_image,
    positive_frames: Sequence[np.ndarray],
    negative_frames: Sequence[np.ndarray] | None,
    *,
    prompt: str = "",
    negative_prompt: str | None = None,
    num_frames: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    condition_guidance_scale: float | None = None,
    condition_window: Sequence[float] | None = None,
    shift: float | None = None,
    solver: str | None = None,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    max_area: int = DEFAULT_MAX_AREA,
    progress: ProgressFn | None = None,
    window_frames: int = WINDOW_FRAMES.default,
    window_overlap: int = WINDOW_OVERLAP.default,
    noise_device: str | None = None,
) -> list[np.ndarray]:
    """Animate ``reference_image`` (PIL image or uint8 H x W x 3) with ``positive_frames`` (uint8
    H x W x 3 pose frames aligned to it; resized to the video size) and the negative pose frames
    (``None``: no condition guidance). Returns the video as uint8 H x W x 3 frames.

    ``num_frames``: default all frames; clipped and rounded down to ``4n + 1``. Unset sampling
    arguments come from the pipeline's preset (``pipe.config.preset``; ``fast``: 4 steps, CFG 1, no
    condition pass), then the official defaults (:mod:`steadydancer.settings`). ``height``/``width``:
    default the official size rule within ``max_area``. An empty ``negative_prompt`` means the official
    one. Longer than ``window_frames`` -> consecutive windows blended over ``window_overlap`` frames.
    ``progress(fraction, message)`` is called at each stage and step; an exception it raises (e.g.
    cancel) stops the generation at that step. ``noise_device``: ``auto`` (default: the GPU's generator
    when the pipeline runs on CUDA, which gives the official noise of ``seed``), ``cuda`` or ``cpu``
    (see :mod:`steadydancer.noise`).
    """
    from .noise import noise_generator
    from .plan import plan_windows

    report = progress or (lambda fraction, message: None)
    available = len(positive_frames) if negative_frames is None else min(len(positive_frames), len(negative_frames))
    if available < 1:
        raise SteadyDancerInputError("There are no pose frames to animate with.")
    num_frames = frames_to_generate(num_frames, available, minimum=1)
    settings = SamplingSettings.resolve(
        pipeline_preset(pipe), num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
        condition_guidance_scale=condition_guidance_scale, condition_window=condition_window, shift=shift,
        solver=solver,
    )
    num_windows = len(plan_windows(num_frames, window_frames, window_overlap))
    steps = settings.num_inference_steps
    total_steps = steps * num_windows

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        done = pipeline.current_window * steps + step + 1
        window = f"window {pipeline.current_window + 1}/{num_windows}, " if num_windows > 1 else ""
        report(0.05 + 0.9 * done / total_steps, f"Denoising: {window}step {step + 1}/{steps}")
        if step + 1 == steps:  # the VAE decode of this window comes next
            report(0.05 + 0.9 * done / total_steps, f"Decoding{' ' + window.rstrip(', ') if window else ''}")
        return {}

    report(0.0, f"Encoding the inputs ({num_frames} frames)")
    generator = noise_generator(seed, pipe._execution_device, noise_device)
    output = pipe(
        image=reference_image,
        pose_video=list(positive_frames[:num_frames]),
        negative_pose_video=list(negative_frames[:num_frames]) if negative_frames is not None else None,
        prompt=prompt or "",
        negative_prompt=negative_prompt or None,
        height=height,
        width=width,
        max_area=max_area,
        num_frames=num_frames,
        num_inference_steps=steps,
        guidance_scale=settings.guidance_scale,
        condition_guidance_scale=settings.condition_guidance_scale,
        condition_window=settings.condition_window,
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
