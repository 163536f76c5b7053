"""Every default, limit and choice of the product, in one torch-free table.

The pipeline's signature, the generation entry points, the command line's help and the app's
controls (ranges, steps, defaults, choices) are all read from here, and each setting keeps one name
from the slider to the kernel (``num_inference_steps``, ``condition_window``, ``window_overlap``,
``lead_in_frames`` ...). A user value is checked once, by :meth:`Range.check` / :meth:`Choice.check`
or :meth:`SamplingSettings.resolve`, and a mistake is a :class:`~steadydancer.errors.SteadyDancerInputError`
that names the parameter and says what to do.

Sources of the official values: the official generator and README of MCG-NJU/SteadyDancer (40 UniPC
steps, text guidance 5.0, condition guidance 1.0 in the README example -- 1.5 in its CLI --, window
0.1-0.4, shift 5.0 at 1024*576 and 3.0 at 480p, the Wan negative prompt prefixed with "camera shake").
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Sequence

from .constants import DEFAULT_MAX_AREA, MODEL_FPS, VAE_TEMPORAL_STRIDE, nearest_valid_frame_count
from .errors import SteadyDancerInputError

# =============================================================================================
# Environment flags: the one parser
# =============================================================================================

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def env_flag(name: str, default: bool = False) -> bool:
    """``True`` for 1/true/yes/on, ``False`` for 0/false/no/off/empty, ``default`` when unset.
    Any other value is a configuration mistake and says so (never silently "on")."""
    value = os.environ.get(name)
    if value is None:
        return default
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SteadyDancerInputError(f"Environment variable {name}={value!r} is not a flag: use 1/0, true/false, yes/no or on/off.")


# =============================================================================================
# The two kinds of setting
# =============================================================================================


@dataclass(frozen=True)
class Range:
    """A number the user sets: its parameter name, default, limits and UI step."""

    name: str  #: the parameter name, the same in the pipeline, the CLI (``--name-with-dashes``) and the API
    label: str  #: what the UI and error messages call it
    default: float | int | None
    minimum: float | int
    maximum: float | int
    step: float | int
    integer: bool = False
    help: str = ""

    def check(self, value: Any) -> float | int:
        """``value`` as a number inside the limits, or a user error naming the parameter."""
        if isinstance(value, bool) or value is None:
            raise SteadyDancerInputError(f"{self.name} ({self.label}) must be a number, got {value!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SteadyDancerInputError(f"{self.name} ({self.label}) must be a number, got {value!r}.") from None
        if not math.isfinite(number):
            raise SteadyDancerInputError(f"{self.name} ({self.label}) must be a finite number, got {value!r}.")
        if self.integer:
            if number != int(number):
                raise SteadyDancerInputError(f"{self.name} ({self.label}) must be a whole number, got {value!r}.")
            number = int(number)
        if not self.minimum <= number <= self.maximum:
            raise SteadyDancerInputError(
                f"{self.name} ({self.label}) must be between {self.minimum} and {self.maximum}, got {value}.")
        return number

    def with_limits(self, minimum=None, maximum=None) -> "Range":
        return replace(self, minimum=self.minimum if minimum is None else minimum,
                       maximum=self.maximum if maximum is None else maximum)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values, with labels for the UI and accepted aliases."""

    name: str
    label: str
    default: str
    choices: Mapping[str, str]  #: value -> label
    aliases: Mapping[str, str] = None  # type: ignore[assignment]
    help: str = ""

    def check(self, value: Any) -> str:
        key = str(value).strip().lower() if value is not None else ""
        key = (self.aliases or {}).get(key, key)
        if key not in self.choices:
            raise SteadyDancerInputError(
                f"{self.name} ({self.label}) must be one of {', '.join(self.choices)}, got {value!r}.")
        return key


def check_flag(name: str, value: Any) -> bool:
    """A yes/no parameter from the UI or the API: real booleans (and 0/1, "true"/"false"), nothing else
    -- ``"no"`` is not read as True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | (_FALSE - {""}):
        return value.strip().lower() in _TRUE
    raise SteadyDancerInputError(f"{name} must be true or false, got {value!r}.")


# =============================================================================================
# Text
# =============================================================================================

#: The prompt used when the user gives none: it describes what every SteadyDancer video is.
DEFAULT_PROMPT = (
    "A person dancing with natural, fluid movements, consistent appearance and clothing, "
    "steady camera, sharp details, high quality."
)
#: The official negative prompt: Wan2.1's ``sample_neg_prompt`` prefixed with "镜头晃动，" (camera shake).
#: An empty negative prompt anywhere in the product means this one.
DEFAULT_NEGATIVE_PROMPT = (
    "镜头晃动，色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
    "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
MAX_PROMPT_CHARS = 2000

# =============================================================================================
# Video size and length
# =============================================================================================

#: Resolution classes: name -> max area (the official 1024*576 "720p" class, Wan's 832*480).
RESOLUTION_AREAS = {"720p": DEFAULT_MAX_AREA, "480p": 832 * 480}
RESOLUTION = Choice("resolution", "Resolution", "720p",
                    {"720p": "720p class: 1024×576 area (official)", "480p": "480p: 832×480 area"},
                    help="max area class: 720p = 1024*576 (official), 480p = 832*480")

#: Flow shift: 5.0 (official) above 480p area, 3.0 at 480p area and below (the authors' advice).
SHIFT_DEFAULT = 5.0
SHIFT_480P = 3.0
AREA_480P = RESOLUTION_AREAS["480p"]


def recommended_shift(height: int, width: int) -> float:
    """Flow shift for a video size: 3.0 up to 480p area, else 5.0."""
    return SHIFT_480P if height * width <= AREA_480P else SHIFT_DEFAULT


#: Frames to generate (4n + 1 at 16 fps). The default is the official clip length; longer clips run
#: in consecutive windows. The app offers up to 161 (10 s); the CLI goes to 1601 (100 s).
NUM_FRAMES = Range("num_frames", "Length (frames, 4n+1)", 81, 5, 1601, VAE_TEMPORAL_STRIDE, integer=True,
                   help="frames to generate, 4n+1 (default: the whole clip, up to 81 per window)")
APP_MAX_FRAMES = 161
#: Long videos: window length and overlap (both 4n + 1).
WINDOW_FRAMES = Range("window_frames", "Window length", 81, 9, 81, VAE_TEMPORAL_STRIDE, integer=True)
WINDOW_OVERLAP = Range("window_overlap", "Window overlap", 5, 1, 21, VAE_TEMPORAL_STRIDE, integer=True)


#: Resizing the reference and the pose frames to the video size: False (default) is the official path
#: (torch bicubic without antialiasing; pose frames first resized to the reference photo's size);
#: True antialiases when shrinking (pipeline argument ``resize_antialias``; not what the model was
#: validated with).
RESIZE_ANTIALIAS_DEFAULT = False


def frames_to_generate(requested: int | None, available: int, minimum: int = NUM_FRAMES.minimum) -> int:
    """The one rule for the length: ``requested`` (default: everything available), clipped to the
    ``available`` pose frames, rounded down to 4n + 1; a user error when fewer than ``minimum``
    (the product's 5; the pipeline itself accepts 1)."""
    if available < minimum:
        raise SteadyDancerInputError(
            f"The motion gives only {available} frames; num_frames needs at least {minimum}. "
            "Use a longer clip.")
    wanted = available if requested is None else min(int(requested), available)
    return nearest_valid_frame_count(wanted)


# =============================================================================================
# Sampling
# =============================================================================================

SOLVERS = ("unipc", "euler", "lcm")
NUM_INFERENCE_STEPS = Range("num_inference_steps", "Steps", 40, 1, 100, 1, integer=True,
                            help="denoising steps (official 40; the fast preset 4)")
GUIDANCE_SCALE = Range("guidance_scale", "Guidance (text)", 5.0, 1.0, 20.0, 0.1,
                       help="text guidance scale (official 5.0; 1 = no negative-prompt pass)")
CONDITION_GUIDANCE_SCALE = Range("condition_guidance_scale", "Condition guidance (pose)", 1.0, 0.0, 5.0, 0.05,
                                 help="pose-condition guidance scale (official 1.0-1.5; 0 = no negative-pose pass)")
CONDITION_WINDOW_START = Range("condition_window_start", "Condition window start", 0.1, 0.0, 1.0, 0.05,
                               help="fraction of the steps where the negative-pose pass starts (strictly after)")
CONDITION_WINDOW_END = Range("condition_window_end", "Condition window end", 0.4, 0.0, 1.0, 0.05,
                             help="fraction of the steps where the negative-pose pass ends (strictly before)")
SHIFT = Range("shift", "Shift", None, 1.0, 20.0, 0.5, help="flow shift (default 5.0; 3.0 at 480p)")
SOLVER = Choice("solver", "Solver", "unipc", {s: s for s in SOLVERS})
SEED = Range("seed", "Seed", 42, 0, 2**31 - 1, 1, integer=True)
#: Which generator draws a seed's initial noise (steadydancer.noise): ``auto`` = the GPU's when generating
#: on CUDA (the official noise of the seed), the CPU's otherwise.
NOISE_DEVICE = Choice("noise_device", "Noise generator", "auto", {
    "auto": "Auto (GPU on a GPU: the official noise)", "cuda": "GPU", "cpu": "CPU",
}, aliases={"gpu": "cuda"},
    help="generator of the initial noise: auto (default) = the GPU's when generating on CUDA, so a seed gives "
         "the official noise; cuda; cpu = the same numbers on every machine")

#: Speed / memory presets (``steadydancer.presets`` says how each holds the weights): value -> label.
PRESET = Choice("preset", "Speed / memory", "quality", {
    "quality": "Quality",
    "balanced": "Balanced (fp8 weights)",
    "low_vram": "Low VRAM (offloading)",
    "fast": "Fast (4 steps, LoRA)",
    "small_gpu": "Small GPU (GGUF file, 12-16 GB)",
}, aliases={"low-vram": "low_vram", "lowvram": "low_vram", "small-gpu": "small_gpu", "smallgpu": "small_gpu"})
#: The sampling a preset imposes over the official values (explicit user values still win).
PRESET_SAMPLING: dict[str, dict[str, Any]] = {
    "fast": {"num_inference_steps": 4, "guidance_scale": 1.0, "condition_guidance_scale": 0.0,
             "solver": "lcm", "shift": 5.0},
}


@dataclass(frozen=True)
class SamplingSettings:
    """What a generation will run: explicit values > the preset's > the official defaults. Checked
    once, in :meth:`resolve`."""

    num_inference_steps: int = NUM_INFERENCE_STEPS.default
    guidance_scale: float = GUIDANCE_SCALE.default
    condition_guidance_scale: float = CONDITION_GUIDANCE_SCALE.default
    condition_window: tuple[float, float] = (CONDITION_WINDOW_START.default, CONDITION_WINDOW_END.default)
    solver: str = SOLVER.default
    shift: float | None = None  #: None: :func:`recommended_shift` of the video size

    @classmethod
    def resolve(cls, preset: str | None = None, *, num_inference_steps=None, guidance_scale=None,
                condition_guidance_scale=None, condition_window: Sequence[float] | None = None, solver=None,
                shift=None) -> "SamplingSettings":
        base = dict(PRESET_SAMPLING.get(PRESET.check(preset), {})) if preset is not None else {}
        given = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                     condition_guidance_scale=condition_guidance_scale, solver=solver, shift=shift)
        values = {**asdict(cls()), **base, **{k: v for k, v in given.items() if v is not None}}
        start, end = condition_window if condition_window is not None else values["condition_window"]
        start, end = CONDITION_WINDOW_START.check(start), CONDITION_WINDOW_END.check(end)
        if end < start:
            raise SteadyDancerInputError(
                f"condition_window ends ({end}) before it starts ({start}): set condition_window_end >= "
                "condition_window_start.")
        return cls(
            num_inference_steps=NUM_INFERENCE_STEPS.check(values["num_inference_steps"]),
            guidance_scale=float(GUIDANCE_SCALE.check(values["guidance_scale"])),
            condition_guidance_scale=float(CONDITION_GUIDANCE_SCALE.check(values["condition_guidance_scale"])),
            condition_window=(float(start), float(end)),
            solver=SOLVER.check(values["solver"]),
            shift=None if values["shift"] is None else float(SHIFT.check(values["shift"])),
        )

    def shift_for(self, height: int, width: int) -> float:
        return self.shift if self.shift is not None else recommended_shift(height, width)


def random_seed() -> int:
    return random.randint(int(SEED.minimum), int(SEED.maximum))


# =============================================================================================
# Several GPUs (context parallelism under torchrun; steadydancer.parallel)
# =============================================================================================

#: ``--parallel`` values: Ulysses or ring attention over all the processes, or R ring groups of U
#: Ulysses ranks (R * U = the number of processes).
PARALLEL_MODES = {"ulysses": "Ulysses attention (exact; the degree must divide the 40 heads)",
                  "ring": "ring attention (any degree)",
                  "RxU": "ring degree x Ulysses degree, e.g. 2x4"}
PARALLEL_HELP = ("one video on several GPUs (context parallelism), under "
                 "`torchrun --nproc_per_node N -m steadydancer generate ...`: ulysses, ring, or RxU "
                 "(ring degree x Ulysses degree = N, e.g. 2x4)")
#: The attention backend ring / unified attention uses unless a capable one is asked for: PyTorch's own
#: FlashAttention-2 kernel, which returns the log-sum-exp ring attention merges partial results with.
RING_ATTENTION_BACKEND = "_native_flash"
#: Presets that do not combine with context parallelism, and why (shown to the user).
PARALLEL_INCOMPATIBLE_PRESETS = {
    "low_vram": (
        "the low_vram preset streams every transformer weight from host RAM on every pass (group "
        "offloading). With N GPUs each pass is N times shorter while each GPU still streams the whole "
        "30 GB, and the N GPUs share the host's memory bandwidth: the copies, not the GPUs, would set "
        "the speed. Context parallelism already divides the activation memory by N; use the quality "
        "or balanced (fp8 weights, 16 GB) preset with --parallel."
    ),
}

# =============================================================================================
# Pose path
# =============================================================================================

#: Driving clips are resampled to the model's rate (0 keeps every source frame).
FPS = Range("fps", "Frame rate", MODEL_FPS, 0, 120, 1,
            help=f"resample the driving clip to this frame rate (default {MODEL_FPS}, the model's; 0 keeps every frame)")
SMOOTH = Range("smooth", "Smoothing", 0.3, 0.0, 1.0, 0.05,
               help="temporal smoothing strength 0..1 (0 = off)")
REPAIR_DEFAULT = True
ALIGNMENT_FRAME = Range("alignment_frame", "Alignment frame", -1, -1, 100_000, 1, integer=True,
                        help="driving frame that sets the body proportions (-1: chosen automatically)")
LEAD_IN_FRAMES = Range("lead_in_frames", "Lead-in frames", 0, 0, 1600, 1, integer=True,
                       help="frames that move from the character's own pose to the first driving pose")


#: The alignment modes (implemented in :mod:`steadydancer.pose.align`, which reads them from here).
ALIGN_MODE = Choice("align_mode", "Alignment", "auto",
                    {"auto": "Auto", "official": "Official (MusePose)", "robust": "Robust"},
                    help="auto (default: the official SteadyDancer/MusePose rule, robust where its result is "
                         "broken), official, or robust")
#: How the driving clip's time maps to the video. ``realtime`` (the default: the dance keeps its speed
#: and the clip's sound fits): resample to ``fps``; ``official``: every native frame, as the official
#: preprocessing, the video played at 16 fps (a 30 fps clip at 16/30 = 0.53x speed). ``official``
#: means ``fps=0``.
FRAME_RATE = Choice("frame_rate", "Frame rate", "realtime", {
    "realtime": f"Real time (resampled to {MODEL_FPS} fps)",
    "official": f"Official (every native frame, played at {MODEL_FPS} fps)",
}, aliases={"real-time": "realtime", "real_time": "realtime"},
    help=f"realtime (default): the clip is resampled to {MODEL_FPS} fps and the video moves at the dancer's "
         f"speed; official: every native frame is kept, as the official preprocessing, and the video plays at "
         f"{MODEL_FPS} fps (a 30 fps clip comes out at 0.53x speed)")
#: How the rendered pose frames reach the model (steadydancer.pose.conditioning): ``official`` = through
#: the official pose video (H.264), JPEG frame dump and resize to the photo's size; ``clean`` = the render
#: resized straight to the generation size.
CONDITIONING = Choice("conditioning", "Pose conditioning", "official", {
    "official": "Official (video + JPEG + resize, as trained)",
    "clean": "Clean render",
}, help="official (default): the pose frames go through the official pose video (H.264), JPEG frame dump "
        "and resize to the photo's size, as the model saw them in training; clean: the render without those "
        "compression steps")

# =============================================================================================
# Inputs
# =============================================================================================

#: Uploads and clips the app accepts (the CLI reads local files of any size).
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_UPLOAD_SIZE = "200mb"
MAX_DRIVING_SECONDS = 120.0

# =============================================================================================
# The app under load (what a server keeps, and for how long)
# =============================================================================================

#: Any request body except a file upload (an API call's JSON): files go through the upload route,
#: a photo sent inline as base64 is refused before it is read.
MAX_REQUEST_BODY_BYTES = 1024 * 1024
#: Sessions kept at once (one per browser tab or API client); a new one closes the least recently
#: used idle one. Each holds at most a working-size photo (SESSION_PHOTO_MAX_AREA) and its poses.
MAX_SESSIONS = 32
#: A session unused for this long is closed and its folder removed (API clients never "leave").
SESSION_IDLE_SECONDS = 30 * 60
#: How often the sweep runs.
SESSION_SWEEP_SECONDS = 60
#: The same limits as operators may set them (STEADYDANCER_MAX_SESSIONS, ..._SESSION_IDLE_SECONDS,
#: ..._SESSION_SWEEP_SECONDS).
MAX_SESSIONS_RANGE = Range("max_sessions", "Sessions kept at once", MAX_SESSIONS, 1, 10_000, 1, integer=True)
SESSION_IDLE_RANGE = Range("session_idle_seconds", "Session idle time (s)", SESSION_IDLE_SECONDS, 1, 7 * 86400, 1)
SESSION_SWEEP_RANGE = Range("session_sweep_seconds", "Session sweep interval (s)", SESSION_SWEEP_SECONDS, 0.1,
                            3600, 1)
#: The photo a session keeps: at most 4x the official 1024*576 area (2048x1152), with the same
#: generation and canvas sizes as the full photo.
SESSION_PHOTO_MAX_AREA = 4 * DEFAULT_MAX_AREA
#: Gradio's file cache (uploads, the served copies of results): files older than this are deleted,
#: checked every GRADIO_CACHE_SWEEP_SECONDS.
GRADIO_CACHE_MAX_AGE_SECONDS = 3600
GRADIO_CACHE_SWEEP_SECONDS = 600
