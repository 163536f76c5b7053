"""SteadyDancer studio -- the Gradio app.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--model PATH_OR_REPO_ID] [--offline]

The same file runs locally, behind a share link and on a Hugging Face ZeroGPU Space:

* **Preview poses** runs the pose path only (CPU): the character's pose, the driving motion's poses,
  repair + smoothing, alignment to the character. Nothing touches a GPU, so a user sees what the
  model will be conditioned on before spending GPU time. Each control re-runs only the stages it
  affects (see :class:`PoseSession`).
* **Generate** reuses those poses, renders the conditions at the generation size and runs the
  SteadyDancer pipeline inside :func:`run_generation`, the one function decorated with
  ``@spaces.GPU`` (a no-op off ZeroGPU) with a duration computed from the work it is given.

Named API endpoints: ``/preview_poses`` and ``/generate`` (see the README for a gradio_client
example). User mistakes (no person, unreadable file, missing weights) arrive as ``gr.Error`` with a
message that says what to do; anything else is logged with its traceback and reported as a bug.
"""

# ZeroGPU: `spaces` must be imported before anything initialises CUDA (torch included).
import spaces  # isort: skip

import argparse
import dataclasses
import functools
import logging
import math
import os
import random
import shutil
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import gradio as gr
import numpy as np

from steadydancer.constants import MODEL_FPS, nearest_valid_frame_count, size_for_area
from steadydancer.settings import DEFAULT_PROMPT, RESOLUTION_AREAS
from steadydancer.errors import MissingWeightsError, SteadyDancerInputError
from steadydancer.pose.path import (
    AlignedPoses,
    CleanedPoses,
    DrivingPoses,
    PoseOptions,
    PosePathResult,
    ReferencePose,
    align_driving,
    clean_driving,
    extract_driving,
    prepare_reference,
    render_conditions,
    write_pose_outputs,
)

log = logging.getLogger("steadydancer.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "examples"
ASSETS_DIR = ROOT / "assets"

# ---------------------------------------------------------------------------------------------
# Configuration and limits
# ---------------------------------------------------------------------------------------------

#: Upload limit (Gradio refuses bigger files before they reach the app).
MAX_UPLOAD_SIZE = "200mb"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
#: Longest driving clip accepted (seconds of source video).
MAX_DRIVING_SECONDS = 120.0
#: Frame counts offered (4n + 1 at 16 fps): 5 frames (0.3 s) to 161 (10 s).
MIN_FRAMES, MAX_FRAMES, DEFAULT_FRAMES = 5, 161, 81
#: Bounded queue: further requests are refused with "queue full" rather than waiting for hours.
QUEUE_MAX_SIZE = 20
#: Session folders untouched for this long are removed (API clients never "close a tab").
SESSION_MAX_AGE_SECONDS = 6 * 3600

#: Resolution classes: label -> (max area, default shift). The official generator uses 1024*576
#: with shift 5; the authors advise shift 3 at 480p.
RESOLUTIONS = {
    "480p": (RESOLUTION_AREAS["480p"], 3.0),
    "720p": (RESOLUTION_AREAS["720p"], 5.0),
}
DEFAULT_RESOLUTION = "480p"

#: Speed / memory presets (steadydancer.presets says what each does): value -> label.
PRESET_LABELS = {
    "quality": "Quality",
    "balanced": "Balanced (fp8 weights)",
    "fast": "Fast (4 steps, LoRA)",
    "low_vram": "Low VRAM (offloading)",
}

#: An empty negative prompt means the official one (Wan's, with "camera shake" in front, in
#: Chinese as the model was trained): steadydancer.pipeline.DEFAULT_NEGATIVE_PROMPT.
NEGATIVE_PROMPT_HINT = ("Empty = the official negative prompt (camera shake, over-exposure, static frames, "
                        "blurred details, extra fingers, deformed limbs, messy background…)")

MAX_SEED = 2**31 - 1


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space (the `spaces` package reads SPACES_ZERO_GPU)."""
    try:
        from spaces.config import Config

        return bool(Config.zero_gpu)
    except Exception:  # an older `spaces` without the config module
        return _env_flag("SPACES_ZERO_GPU")


@dataclass
class AppConfig:
    """Where the weights come from and where files go (command line > environment > default)."""

    model: str  #: a folder or a Hub repo id (steadydancer.generation.default_model())
    offline: bool = False
    device: Optional[str] = None  #: None: cuda when available, else cpu
    tmp_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "steadydancer-app")

    @classmethod
    def from_env(cls) -> "AppConfig":
        from steadydancer.weights import default_model

        tmp = os.environ.get("STEADYDANCER_APP_TMP")
        return cls(
            model=default_model(),  # $STEADYDANCER_MODEL, else the official repo id
            offline=_env_flag("STEADYDANCER_OFFLINE") or _env_flag("HF_HUB_OFFLINE"),
            device=os.environ.get("STEADYDANCER_DEVICE") or None,
            **({"tmp_root": Path(tmp)} if tmp else {}),
        )


CONFIG = AppConfig.from_env()
ZERO_GPU = _on_zero_gpu()

#: The preset generation starts with. On ZeroGPU it is the only one: the Space loads one 14B
#: pipeline at start-up (it cannot hold two), and the 4-step preset is the one whose runs fit
#: ZeroGPU's few-minute limit per call. STEADYDANCER_PRESET overrides it.
DEFAULT_PRESET = (os.environ.get("STEADYDANCER_PRESET") or ("fast" if ZERO_GPU else "quality")).replace("-", "_")
#: ZeroGPU slice: None/"large" (an H200 MIG slice, 60 of the H200's 132 SMs) or "xlarge" (a whole
#: H200, twice the quota).
ZERO_GPU_SIZE = os.environ.get("STEADYDANCER_ZEROGPU_SIZE") or None
#: The longest GPU call ZeroGPU accepts (undocumented, "a few minutes"); longer estimates are
#: refused before any GPU is requested, with what to change.
ZERO_GPU_MAX_DURATION = int(os.environ.get("STEADYDANCER_ZEROGPU_MAX_SECONDS", 300))
#: Share of a full H200's throughput the GPU delivers (for the estimate).
GPU_THROUGHPUT_SCALE = (1.0 if ZERO_GPU_SIZE == "xlarge" else 60 / 132) if ZERO_GPU else 1.0
#: On a machine without CUDA (and no explicit --device cpu), only models whose transformer weights
#: are smaller than this run on the CPU: a small test model yes, the 14B model (28 GB) never.
CPU_MAX_TRANSFORMER_BYTES = 2 * 1024**3


def configure(model: str | None = None, offline: bool | None = None, device: str | None = None,
              tmp_root: str | Path | None = None,
              resolutions: dict[str, tuple[int, float]] | None = None) -> AppConfig:
    """Change the app's configuration (the command line and the tests use this). Drops a loaded
    pipeline when the model or device changes. ``resolutions`` adds resolution classes
    (name -> (max area, shift)), e.g. a tiny one for a small test model; build the Blocks after."""
    if resolutions:
        RESOLUTIONS.update({str(k): (int(v[0]), float(v[1])) for k, v in resolutions.items()})
    if model is not None and model != CONFIG.model:
        CONFIG.model = str(model)
        _PIPELINES.clear()
    if offline is not None:
        CONFIG.offline = bool(offline)
    if device is not None and device != CONFIG.device:
        CONFIG.device = device or None
        _PIPELINES.clear()
    if tmp_root is not None:
        CONFIG.tmp_root = Path(tmp_root)
    return CONFIG


# ---------------------------------------------------------------------------------------------
# Errors: what the user sees
# ---------------------------------------------------------------------------------------------


class GenerationCancelled(Exception):
    """Raised from the step callback when the user pressed Cancel."""


def user_errors(fn: Callable) -> Callable:
    """Turn the package's user-facing errors into ``gr.Error`` (shown as they are) and anything
    unexpected into a short message plus a traceback in the server log -- never a raw traceback
    in the browser, never a hang."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except SteadyDancerInputError as exc:
            raise gr.Error(str(exc), title="Please check the input", print_exception=False) from exc
        except MissingWeightsError as exc:
            raise gr.Error(str(exc), title="Generation is not available here", print_exception=False) from exc
        except GenerationCancelled as exc:
            raise gr.Error("Generation cancelled.", title="Cancelled", print_exception=False) from exc
        except MemoryError as exc:
            raise gr.Error("Out of memory. Try a lower resolution, fewer frames or the low-VRAM preset.",
                           title="Out of memory", print_exception=False) from exc
        except Exception as exc:  # a bug: keep the traceback for the log, show a short message
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
                raise gr.Error("The GPU ran out of memory. Try 480p, fewer frames or the low-VRAM "
                               "preset.", title="Out of GPU memory", print_exception=False) from exc
            log.error("unexpected error in %s:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). This is a bug in the "
                           "app; the server log has the details.", title="Unexpected error",
                           print_exception=False) from exc

    return wrapper


# ---------------------------------------------------------------------------------------------
# Per-session files and pose cache
# ---------------------------------------------------------------------------------------------


def _sweep_old_sessions(root: Path, max_age: float = SESSION_MAX_AGE_SECONDS) -> None:
    """Remove session folders nobody has written to for ``max_age`` seconds."""
    if not root.is_dir():
        return
    now = time.time()
    for child in root.iterdir():
        try:
            if child.is_dir() and child.name.startswith("session-") and now - child.stat().st_mtime > max_age:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            pass


@dataclass
class PoseSession:
    """One user's pose-path results, each stored with the inputs it was computed from.

    A control re-runs only the stages it affects: a new image re-detects the character; a new clip
    (or a longer length than was read) re-extracts; smoothing / repair re-clean; alignment mode,
    alignment frame and lead-in re-align. ``runs`` counts what was computed (tests check it).
    Files of this session live in ``workdir`` (its own temp folder), removed when the session
    ends (Gradio calls :func:`_delete_session`) or by the sweep of old folders.
    """

    workdir: Path = field(default_factory=lambda: _new_session_dir())
    reference: Optional[tuple] = None  # (key, ReferencePose)
    driving: Optional[tuple] = None  # (key, frame limit used or None, DrivingPoses)
    cleaned: Optional[tuple] = None  # (key, CleanedPoses)
    aligned: Optional[tuple] = None  # (key, AlignedPoses)
    runs: Counter = field(default_factory=Counter)
    cancel: threading.Event = field(default_factory=threading.Event)
    last_preview_key: Optional[tuple] = None

    def run_dir(self, kind: str) -> Path:
        """A fresh folder for one run's outputs; the previous run of the same kind is removed
        (its files were already copied to Gradio's cache when they were returned)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.glob(f"{kind}-*"):
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.workdir))


def _new_session_dir() -> Path:
    root = CONFIG.tmp_root
    root.mkdir(parents=True, exist_ok=True)
    _sweep_old_sessions(root)
    return Path(tempfile.mkdtemp(prefix="session-", dir=root))


def _delete_session(session: Optional[PoseSession]) -> None:
    """gr.State delete callback: the session ended, remove its files."""
    if isinstance(session, PoseSession):
        shutil.rmtree(session.workdir, ignore_errors=True)


def _file_key(path) -> tuple:
    """Identity of an input file: Gradio stores uploads under a content hash, so path + size +
    mtime changes exactly when the content does."""
    p = Path(path)
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------------
# Inputs: the character image and the driving motion
# ---------------------------------------------------------------------------------------------


def project_motions() -> dict[str, dict[str, Path]]:
    """The project's own motions in examples/: ``NAME.poses.json`` (+ ``NAME.mp4`` to show)."""
    motions = {}
    for poses in sorted(EXAMPLES_DIR.glob("*.poses.json")):
        name = poses.name[: -len(".poses.json")]
        video = EXAMPLES_DIR / f"{name}.mp4"
        motions[name] = {"poses": poses, "video": video if video.is_file() else None}
    return motions


def _motion_label(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").capitalize()


@dataclass(frozen=True)
class DrivingSource:
    """Where the motion comes from: a clip to run the detector on, or a project motion's poses."""

    path: Path  #: the video, or the project motion's poses.json
    video: Optional[Path]  #: the clip shown in the preview and used for audio (None: poses only)
    key: tuple
    label: str


VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif", ".mpg", ".mpeg"}


def resolve_image(image) -> str:
    if image is None or (isinstance(image, str) and not image.strip()):
        raise SteadyDancerInputError("Add a character image first (a photo of one person, ideally full body).")
    path = Path(image)
    if not path.is_file():
        raise SteadyDancerInputError(f"The character image {path.name} could not be found; upload it again.")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise SteadyDancerInputError(f"The character image is larger than {MAX_UPLOAD_SIZE}; use a smaller file.")
    return str(path)


def resolve_driving(driving_video, motion: str | None) -> DrivingSource:
    """The driving source from the two inputs: a chosen project motion wins over the video box
    (which then only shows that motion's clip)."""
    motion = (motion or "").strip()
    if motion:
        motions = project_motions()
        if motion not in motions:
            known = ", ".join(sorted(motions)) or "none"
            raise SteadyDancerInputError(f"Unknown project motion {motion!r}; choose one of: {known}.")
        entry = motions[motion]
        return DrivingSource(path=entry["poses"], video=entry["video"], key=("motion", motion,
                             _file_key(entry["poses"])), label=_motion_label(motion))
    if driving_video is None or (isinstance(driving_video, str) and not driving_video.strip()):
        raise SteadyDancerInputError(
            "Add a driving video (one person dancing), or choose one of the project's motions.")
    if isinstance(driving_video, dict):  # {"video": path, "subtitles": ...} from some clients
        driving_video = driving_video.get("video") or driving_video.get("path")
    path = Path(driving_video)
    if not path.is_file():
        raise SteadyDancerInputError(f"The driving video {path.name} could not be found; upload it again.")
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise SteadyDancerInputError(f"The driving video is larger than {MAX_UPLOAD_SIZE}; trim or compress it.")
    if size == 0:
        raise SteadyDancerInputError("The driving video is an empty file; upload it again.")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SteadyDancerInputError(
            f"{path.name} is not a video file; use an .mp4, .mov or .webm clip of one person dancing.")
    _check_video_duration(path)
    return DrivingSource(path=path, video=path, key=("video", _file_key(path)), label=path.name)


def _check_video_duration(path: Path) -> None:
    """Refuse clips longer than MAX_DRIVING_SECONDS before decoding any frame (reading the header
    is cheap; an unreadable file is reported by the reader with its own message)."""
    from steadydancer.video import probe_video

    info = probe_video(path)
    duration = getattr(info, "duration", None)
    if duration is not None and math.isfinite(duration) and duration > MAX_DRIVING_SECONDS:
        raise SteadyDancerInputError(
            f"The driving video is {duration:.0f} s long; the limit is {MAX_DRIVING_SECONDS:.0f} s. "
            "Trim it to the part you want (only the first seconds are used anyway).")


def pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames) -> PoseOptions:
    """PoseOptions from the UI / API values, with the driving frames the length needs."""
    num_frames = _valid_frames(num_frames)
    lead_in = int(lead_in_frames or 0)
    if lead_in < 0 or lead_in > num_frames - 2:
        raise SteadyDancerInputError(
            f"Lead-in must be between 0 and {num_frames - 2} frames for a {num_frames}-frame video (got {lead_in}).")
    frame = None if alignment_frame is None or int(alignment_frame) < 0 else int(alignment_frame)
    return PoseOptions(
        fps=MODEL_FPS,
        max_frames=num_frames - lead_in,
        smooth=float(smooth),
        repair=bool(repair),
        align_mode=str(align_mode),
        alignment_frame=frame,
        lead_in_frames=lead_in,
    )


def _valid_frames(num_frames) -> int:
    try:
        n = int(num_frames)
    except (TypeError, ValueError):
        raise SteadyDancerInputError(f"Length must be a whole number of frames, got {num_frames!r}.") from None
    if not MIN_FRAMES <= n <= MAX_FRAMES:
        raise SteadyDancerInputError(f"Length must be between {MIN_FRAMES} and {MAX_FRAMES} frames, got {n}.")
    return nearest_valid_frame_count(n)


# ---------------------------------------------------------------------------------------------
# The pose path with per-stage caching
# ---------------------------------------------------------------------------------------------


def compute_poses(session: PoseSession, image: str, source: DrivingSource, options: PoseOptions,
                  progress: Optional[Callable[[float, str], None]] = None) -> PosePathResult:
    """Run the stages whose inputs changed since the last call of this session; reuse the rest."""
    report = progress or (lambda f, m: None)

    ref_key = _file_key(image)
    if session.reference is None or session.reference[0] != ref_key:
        report(0.0, "Detecting the character's pose")
        session.reference = (ref_key, prepare_reference(image))
        session.runs["reference"] += 1
    reference: ReferencePose = session.reference[1]

    need = options.max_frames
    drv_key = (source.key, options.fps)
    cached = session.driving
    reusable = (
        cached is not None and cached[0] == drv_key and (
            cached[1] is None  # the whole clip was read
            or (need is not None and need <= cached[1])  # at least as many frames were read
            or len(cached[2].poses) < cached[1]  # the clip ended before the limit: it is all there
        )
    )
    if reusable:
        driving: DrivingPoses = cached[2]
    else:
        report(0.05, "Reading the driving motion")
        scaled = (lambda f, m: report(0.05 + 0.8 * f, f"Extracting poses: {m}")) if progress else None
        driving = extract_driving(source.path, options, scaled)
        if source.video is not None and driving.video is None:
            driving = dataclasses.replace(driving, video=source.video)  # show the motion's clip
        session.driving = (drv_key, need, driving)
        session.runs["extract"] += 1

    # Repair and smoothing run on every frame read, then the length is cut: a shorter length or a
    # lead-in re-runs only the alignment, and the frames kept are smoothed the same either way.
    clean_key = (drv_key, len(driving.poses), options.smooth, options.repair)
    if session.cleaned is None or session.cleaned[0] != clean_key:
        report(0.88, "Repairing and smoothing")
        session.cleaned = (clean_key, clean_driving(driving, options))
        session.runs["clean"] += 1
    cleaned: CleanedPoses = session.cleaned[1]
    if need is not None and len(driving.poses) > need:
        driving = dataclasses.replace(driving, poses=driving.poses[:need])
        kept = [event for event in cleaned.report.events if event.frame < need]
        cleaned = CleanedPoses(poses=cleaned.poses[:need], report=dataclasses.replace(cleaned.report, events=kept))

    align_key = (ref_key, clean_key, len(cleaned.poses), options.align_mode, options.alignment_frame,
                 options.lead_in_frames, options.seed)
    if session.aligned is None or session.aligned[0] != align_key:
        report(0.92, "Aligning to the character")
        session.aligned = (align_key, align_driving(reference, cleaned, options))
        session.runs["align"] += 1
    aligned: AlignedPoses = session.aligned[1]
    return PosePathResult(reference, driving, cleaned, aligned, options)


def repair_summary(result: PosePathResult, source: DrivingSource) -> str:
    """Markdown: what was extracted, what the repair step changed, how the motion was aligned."""
    seq = result.cleaned.poses
    n_person = int(result.driving.poses.frames_with_person().sum())
    lines = [
        f"**Motion:** {source.label} — {len(seq)} frames at {seq.fps:g} fps "
        f"({len(seq) / seq.fps:.1f} s); a person in {n_person} of {len(result.driving.poses)} frames.",
    ]
    report = result.cleaned.report
    if not result.options.repair:
        lines.append("**Repair:** off.")
    elif report.events:
        lines.append(f"**Repair:** {report.summary()}.")
    else:
        lines.append("**Repair:** nothing to repair — every frame looked consistent.")
    lines.append(f"**Smoothing:** {result.options.smooth:.2f}" + (" (off)" if result.options.smooth == 0 else ""))
    info = result.aligned.info
    align = f"**Alignment:** {info.mode}"
    if getattr(info, "alignment_frames", None) is not None:
        frames = info.alignment_frames
        if isinstance(frames, (list, tuple)) and len(frames) > 6:
            frames = f"{len(frames)} frames"
        align += f", proportions from frame(s) {frames}"
    lines.append(align + ".")
    notes = list(getattr(info, "notes", None) or [])
    if notes:
        items = "\n".join(f"- {note}" for note in notes)
        lines.append(f"<details><summary>Alignment notes ({len(notes)})</summary>\n\n{items}\n</details>")
    if result.aligned.lead_in_frames:
        lines.append(f"**Lead-in:** {result.aligned.lead_in_frames} frames from the character's own pose.")
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


def _progress_adapter(progress, start: float = 0.0, end: float = 1.0) -> Callable[[float, str], None]:
    """(fraction, message) -> gr.Progress, mapped into [start, end] of the bar."""

    def call(fraction: float, message: str) -> None:
        if progress is not None:
            progress(start + (end - start) * min(max(float(fraction), 0.0), 1.0), desc=message)

    return call


# ---------------------------------------------------------------------------------------------
# Preview
# ---------------------------------------------------------------------------------------------


def _session(session) -> PoseSession:
    return session if isinstance(session, PoseSession) else PoseSession()


@user_errors
def preview_poses(image, driving_video, motion, num_frames, smooth, repair, align_mode, alignment_frame,
                  lead_in_frames, session=None, progress=gr.Progress()):
    """Run the pose path (CPU only) and show what the model will be conditioned on.

    Returns the side-by-side preview (driving | extracted | aligned over the character), the aligned
    pose video (the positive condition), a Markdown report of the repair and alignment, and the
    extracted poses (poses.json, reusable with any character)."""
    session = _session(session)
    image = resolve_image(image)
    source = resolve_driving(driving_video, motion)
    options = pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames)
    bar = _progress_adapter(progress, 0.0, 0.6)
    result = compute_poses(session, image, source, options, bar)
    out = session.run_dir("preview")
    paths = write_pose_outputs(result, out, audio_from=source.video if options.lead_in_frames == 0 else None,
                               progress=_progress_adapter(progress, 0.6, 1.0))
    session.last_preview_key = _preview_key(image, source, options)
    return (str(paths["preview"]), str(paths["positive"]), repair_summary(result, source), str(paths["poses"]),
            session)


def _preview_key(image, source, options) -> tuple:
    return (_file_key(image), source.key, dataclasses.astuple(options))


def refresh_preview(image, driving_video, motion, num_frames, smooth, repair, align_mode, alignment_frame,
                    lead_in_frames, session=None, progress=gr.Progress()):
    """Re-run the preview after a pose control changed -- only once this clip was previewed, so a
    control never starts the detector on a clip by itself (a longer length may read more of it)."""
    skip = (gr.skip(),) * 5
    if not isinstance(session, PoseSession) or session.driving is None:
        return skip
    try:
        source = resolve_driving(driving_video, motion)
        image = resolve_image(image)
        options = pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames)
    except SteadyDancerInputError:
        return skip  # the user is still filling the inputs; Preview will say what is missing
    if session.driving[0][0] != source.key or session.last_preview_key == _preview_key(image, source, options):
        return skip
    return preview_poses(image, driving_video, motion, num_frames, smooth, repair, align_mode, alignment_frame,
                         lead_in_frames, session, progress)


def preview_example(image, driving_video, motion):
    """gr.Examples entry point (cached lazily): the preview with default pose settings."""
    outputs = preview_poses(image, driving_video, motion, DEFAULT_FRAMES, 0.3, True, "auto", -1, 0, None,
                            progress=None)
    return outputs[:4]


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides a generated video (shown to the user as "settings used")."""

    prompt: str
    negative_prompt: str
    resolution: str
    max_area: int
    num_frames: int
    steps: int
    guidance_scale: float
    condition_guidance_scale: float
    condition_window: tuple[float, float]
    shift: float
    seed: int
    preset: str

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["condition_window"] = list(self.condition_window)
        return d


def generation_settings(prompt, negative_prompt, resolution, num_frames, steps, guidance_scale,
                        condition_guidance_scale, condition_window_start, condition_window_end, shift, seed,
                        randomize_seed, preset) -> GenerationSettings:
    """Validate the UI / API values into GenerationSettings (a clear message for each mistake)."""
    if resolution not in RESOLUTIONS:
        raise SteadyDancerInputError(f"Resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}.")
    preset = str(preset).replace("-", "_")
    if preset not in PRESET_LABELS:
        raise SteadyDancerInputError(f"Preset must be one of {', '.join(PRESET_LABELS)}, got {preset!r}.")

    def number(name, value, lo, hi, cast=float):
        try:
            v = cast(value)
        except (TypeError, ValueError):
            raise SteadyDancerInputError(f"{name} must be a number, got {value!r}.") from None
        if not (math.isfinite(v) and lo <= v <= hi):
            raise SteadyDancerInputError(f"{name} must be between {lo} and {hi}, got {v}.")
        return v

    steps = number("Steps", steps, 1, 100, int)
    guidance_scale = number("Guidance", guidance_scale, 1.0, 20.0)
    condition_guidance_scale = number("Condition guidance", condition_guidance_scale, 0.0, 10.0)
    start = number("Condition window start", condition_window_start, 0.0, 1.0)
    end = number("Condition window end", condition_window_end, 0.0, 1.0)
    if end < start:
        raise SteadyDancerInputError(f"The condition window ends ({end}) before it starts ({start}).")
    shift = number("Shift", shift, 0.5, 20.0)
    if randomize_seed:
        seed = random.randint(0, MAX_SEED)
    seed = number("Seed", seed, 0, MAX_SEED, int)
    prompt = (prompt or "").strip() or DEFAULT_PROMPT
    negative_prompt = (negative_prompt or "").strip()  # empty: the official negative prompt
    return GenerationSettings(
        prompt=prompt, negative_prompt=negative_prompt, resolution=resolution, max_area=RESOLUTIONS[resolution][0],
        num_frames=_valid_frames(num_frames), steps=steps, guidance_scale=guidance_scale,
        condition_guidance_scale=condition_guidance_scale, condition_window=(start, end), shift=shift, seed=seed,
        preset=preset,
    )


# -- the pipeline (loaded once per process) ---------------------------------------------------

_PIPELINES: dict[tuple, Any] = {}
_PIPELINE_LOCK = threading.Lock()
#: One generation at a time in this process, whatever the queue settings.
_GPU_LOCK = threading.Lock()


def _device() -> str:
    if CONFIG.device:
        return CONFIG.device
    if ZERO_GPU:
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _preset_for_loading(preset: str):
    """The preset as loaded here: on ZeroGPU everything stays on the GPU (no offloading hooks --
    ZeroGPU moves the weights onto the GPU it attaches for each call)."""
    from steadydancer.presets import with_overrides

    if ZERO_GPU:
        return with_overrides(preset, offload="none")
    return preset


def get_pipeline(preset: str):
    """The pipeline for (model, preset, device), loaded on first use and kept; another
    combination replaces it (one pipeline in memory at a time). On ZeroGPU the start-up preset
    is always used."""
    from steadydancer.generation import load_pipeline

    if ZERO_GPU:
        preset = DEFAULT_PRESET
    key = (CONFIG.model, preset, _device(), CONFIG.offline)
    with _PIPELINE_LOCK:
        pipe = _PIPELINES.get(key)
        if pipe is None:
            _PIPELINES.clear()  # free the previous one before loading the next
            pipe = load_pipeline(CONFIG.model, preset=_preset_for_loading(preset), device=_device(),
                                 offline=CONFIG.offline)
            _PIPELINES[key] = pipe
        return pipe


def _local_transformer_bytes() -> Optional[int]:
    """Size of the transformer weights when they are on this machine (None if not, e.g. a repo id
    not downloaded yet)."""
    from steadydancer.weights import default_encoders, resolve_weights

    try:
        location = resolve_weights(CONFIG.model, default_encoders(), offline=True)
    except MissingWeightsError:
        return None
    folder = location.transformer_dir or Path(location.pipeline_dir) / "transformer"
    return sum(f.stat().st_size for f in Path(folder).glob("diffusion_pytorch_model*.safetensors"))


def check_runtime() -> None:
    """Raise MissingWeightsError saying what is missing (weights, a GPU) -- before any work, and
    without downloading anything."""
    from steadydancer.generation import check_model

    device = _device()
    check_model(CONFIG.model, device=device, offline=CONFIG.offline)
    if device == "cpu" and not CONFIG.device:  # chosen because there is no CUDA here
        size = _local_transformer_bytes()
        if size is None or size > CPU_MAX_TRANSFORMER_BYTES:
            what = f"its transformer weights are {size / 1024**3:.0f} GB" if size else "it is not downloaded"
            raise MissingWeightsError(
                f"No CUDA GPU was found on this machine, and the model {CONFIG.model} cannot run on the CPU "
                f"({what}). Run the app on a machine with an NVIDIA GPU (about 24 GB with the low_vram preset, "
                "40+ GB for quality) or on a ZeroGPU Space. Preview poses works without a GPU. To try the "
                "generation path on the CPU, start the app with a small model folder (--model).")


def estimate_seconds(settings: GenerationSettings, width: int, height: int) -> float:
    """GPU seconds this generation needs (generation's cost model, scaled to the GPU slice)."""
    from steadydancer.costs import H200_TRANSFORMER_TFLOPS, H200_VAE_TFLOPS, estimate_gpu_seconds

    return float(estimate_gpu_seconds(
        settings.num_frames, settings.steps, height, width, guidance_scale=settings.guidance_scale,
        condition_guidance_scale=settings.condition_guidance_scale, condition_window=settings.condition_window,
        preset=settings.preset, transformer_tflops=H200_TRANSFORMER_TFLOPS * GPU_THROUGHPUT_SCALE,
        vae_tflops=H200_VAE_TFLOPS * GPU_THROUGHPUT_SCALE,
    ))


def _duration_for(settings: GenerationSettings, width: int, height: int) -> int:
    """Seconds of GPU to ask ZeroGPU for: the estimate plus 25% and 20 s (loading, decoding)."""
    return int(math.ceil(estimate_seconds(settings, width, height) * 1.25 + 20))


def _gpu_duration(reference_image, positive, negative, settings: GenerationSettings, progress=None,
                  cancel=None) -> int:
    """ZeroGPU's dynamic duration: called with run_generation's own arguments."""
    h, w = positive[0].shape[:2]
    return min(_duration_for(settings, w, h), ZERO_GPU_MAX_DURATION)


@spaces.GPU(duration=_gpu_duration, size=ZERO_GPU_SIZE)
@user_errors  # inside the GPU worker too: ZeroGPU forwards a gr.Error's message, not other exceptions
def run_generation(reference_image, positive, negative, settings: GenerationSettings, progress=None,
                   cancel: Optional[threading.Event] = None) -> list[np.ndarray]:
    """The GPU part: encode, denoise, decode. Inputs are plain data (PIL image, uint8 frames, a
    frozen dataclass) so ZeroGPU can hand them to its GPU worker; ``progress`` is the event's
    gr.Progress (ZeroGPU forwards its updates)."""
    from steadydancer.generation import generate_video

    bar = _progress_adapter(progress, 0.15, 0.95)

    def on_progress(fraction: float, message: str) -> None:
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled()
        if message.startswith("Denoising") and fraction >= 0.95 - 1e-6:
            message = "Decoding the video"  # the last step is done; the VAE decode comes next
        bar(fraction, message)

    with _GPU_LOCK:
        bar(0.0, "Loading the model")
        pipe = get_pipeline(settings.preset)
        return generate_video(
            pipe, reference_image, positive, negative,
            prompt=settings.prompt, negative_prompt=settings.negative_prompt or None,
            num_frames=settings.num_frames, num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale,
            condition_guidance_scale=settings.condition_guidance_scale,
            condition_window=settings.condition_window, shift=settings.shift, seed=settings.seed,
            max_area=settings.max_area, progress=on_progress,
        )


@user_errors
def generate(image, driving_video, motion, prompt, negative_prompt, resolution, num_frames, steps, guidance_scale,
             condition_guidance_scale, condition_window_start, condition_window_end, shift, seed, randomize_seed,
             preset, smooth, repair, align_mode, alignment_frame, lead_in_frames, session=None,
             progress=gr.Progress()):
    """Animate the character with the driving motion.

    Returns the generated video, a side-by-side comparison (driving | pose | result), the seed used
    and every setting used (JSON)."""
    from steadydancer.video import write_video

    session = _session(session)
    session.cancel.clear()
    settings = generation_settings(prompt, negative_prompt, resolution, num_frames, steps, guidance_scale,
                                   condition_guidance_scale, condition_window_start, condition_window_end, shift,
                                   seed, randomize_seed, preset)
    image = resolve_image(image)
    source = resolve_driving(driving_video, motion)
    options = pose_options(settings.num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames)
    check_runtime()  # before any work: say what is missing right away

    result = compute_poses(session, image, source, options, _progress_adapter(progress, 0.0, 0.1))
    available = len(result.aligned.positive)
    num_frames = min(settings.num_frames, nearest_valid_frame_count(available))
    if num_frames < MIN_FRAMES:
        raise SteadyDancerInputError(
            f"The motion gives only {available} frames; at least {MIN_FRAMES} are needed. Use a longer clip.")
    if num_frames != settings.num_frames:
        gr.Info(f"The motion is {available} frames long: generating {num_frames} frames instead of "
                f"{settings.num_frames}.")
        settings = dataclasses.replace(settings, num_frames=num_frames)

    ref = result.reference.image
    width, height = size_for_area(ref.width, ref.height, settings.max_area)
    _progress_adapter(progress)(0.12, "Rendering the pose conditions")
    positive, negative = render_conditions(result.reference, result.aligned, options, size=(width, height))
    positive, negative = positive[:num_frames], negative[:num_frames]
    estimate = estimate_seconds(settings, width, height)
    if ZERO_GPU and _duration_for(settings, width, height) > ZERO_GPU_MAX_DURATION:
        raise SteadyDancerInputError(
            f"This needs about {_format_seconds(estimate)} of GPU time; ZeroGPU allows at most "
            f"{ZERO_GPU_MAX_DURATION} s per call. Use fewer frames, fewer steps, 480p or the fast preset.")
    gr.Info(f"Generating {num_frames} frames at {width}×{height}: about {_format_seconds(estimate)} of GPU time.")

    if session.cancel.is_set():  # Cancel was pressed while the poses were being prepared
        raise GenerationCancelled()
    started = time.time()
    frames = run_generation(ref, positive, negative, settings, progress=progress,
                            cancel=None if ZERO_GPU else session.cancel)
    elapsed = time.time() - started

    _progress_adapter(progress)(0.96, "Writing the videos")
    out = session.run_dir("generate")
    fps = MODEL_FPS
    audio = source.video if options.lead_in_frames == 0 else None
    result_path = write_video(out / "steadydancer.mp4", frames, fps, audio_from=audio)
    comparison_path = write_video(out / "comparison.mp4", comparison_frames(result, positive, frames), fps,
                                  audio_from=audio)
    used = settings.to_dict()
    used.update(width=int(frames[0].shape[1]), height=int(frames[0].shape[0]), model=CONFIG.model, device=_device(),
                seconds=round(elapsed, 1), estimated_seconds=round(estimate, 1), motion=source.label,
                pose=dataclasses.asdict(options))
    return str(result_path), str(comparison_path), settings.seed, used, session


def comparison_frames(result: PosePathResult, positive: list[np.ndarray], frames: list[np.ndarray],
                      height: int = 480) -> list[np.ndarray]:
    """Side by side: the driving frame | the pose condition | the generated frame."""
    from steadydancer.pose.render import side_by_side
    from steadydancer.video import iter_video_frames

    n = len(frames)
    lead = result.aligned.lead_in_frames
    driving = []
    if result.driving.video is not None:
        driving = [f.frame for f in iter_video_frames(result.driving.video, fps=result.options.fps,
                                                      max_frames=max(n - lead, 1), max_side=height)]
    out = []
    for t in range(n):
        panels, labels = [], []
        if driving:
            panels.append(driving[min(max(t - lead, 0), len(driving) - 1)])
            labels.append("driving")
        panels += [positive[min(t, len(positive) - 1)], frames[t]]
        labels += ["pose", "SteadyDancer"]
        out.append(side_by_side(panels, labels, height=height))
    return out


def cancel_generation(session=None):
    """The Cancel button: stop the running generation of this session at its next step."""
    if isinstance(session, PoseSession):
        session.cancel.set()
    gr.Info("Cancelling after the current step…")


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def estimate_text(image, resolution, num_frames, steps, guidance_scale, condition_guidance_scale,
                  condition_window_start, condition_window_end, preset) -> str:
    """The estimate shown under the Generate button (updated as settings change)."""
    try:
        settings = generation_settings("", "", resolution, num_frames, steps, guidance_scale,
                                       condition_guidance_scale, condition_window_start, condition_window_end,
                                       3.0, 0, False, preset)
    except SteadyDancerInputError as exc:
        return f"**Check the settings:** {exc}"
    w, h = 832, 480
    if image:
        try:
            from PIL import Image

            with Image.open(image) as im:
                w, h = size_for_area(im.width, im.height, settings.max_area)
        except Exception:
            w, h = size_for_area(832, 480, settings.max_area)
    else:
        w, h = size_for_area(480, 832, settings.max_area)
    try:
        seconds = estimate_seconds(settings, w, h)
    except Exception as exc:  # the estimate must never break the page
        log.warning("GPU time estimate failed: %s", exc)
        return ""
    n = settings.num_frames
    where = "ZeroGPU" if ZERO_GPU else "an H200-class GPU"
    text = (f"Estimated GPU time: **{_format_seconds(seconds)}** on {where} for {n} frames "
            f"({n / MODEL_FPS:.1f} s) at {w}×{h}, {settings.steps} steps")
    if ZERO_GPU:
        duration = _duration_for(settings, w, h)
        if duration > ZERO_GPU_MAX_DURATION:
            return text + (f". **Too long:** more than ZeroGPU's {ZERO_GPU_MAX_DURATION} s per call: use fewer "
                           "frames or steps, 480p or the fast preset.")
        text += f" (requests {duration} s)"
    return text + "."


# ---------------------------------------------------------------------------------------------
# Status line
# ---------------------------------------------------------------------------------------------


def runtime_status() -> str:
    """Markdown: where generation would run and whether it can (the details folded away)."""
    head = "**Preview poses:** ready (CPU) · **Generate:** "
    try:
        check_runtime()
    except MissingWeightsError as exc:
        first, _, rest = str(exc).partition("\n")
        text = f"{head}unavailable here — {first}"
        if rest.strip():
            text += f"\n\n<details><summary>What to do</summary>\n\n```text\n{rest.strip()}\n```\n</details>"
        return text
    except Exception as exc:  # never break the page over the status line
        log.warning("runtime check failed: %s", exc)
        return f"{head}unknown ({type(exc).__name__}: {exc})"
    where = "ZeroGPU" if ZERO_GPU else f"`{_device()}`"
    return f"{head}ready on {where} with `{CONFIG.model}`"


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------


def readable_image_errors(component: gr.Image) -> gr.Image:
    """Make an unreadable upload in ``component`` a readable gr.Error: Gradio's own preprocessing
    opens the file before the event function runs. (Wrapping the instance, not subclassing:
    Gradio writes a .pyi stub next to the module of every Component subclass.)"""
    preprocess = component.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as exc:
            name = getattr(payload, "orig_name", None) or "The character image"
            raise gr.Error(f"{name} could not be read as an image ({type(exc).__name__}). Use a PNG, JPEG or "
                           "WebP photo of one person.", title="Please check the input",
                           print_exception=False) from exc

    component.preprocess = checked
    return component


THEME = gr.themes.Soft(
    primary_hue="orange",
    secondary_hue="sky",
    neutral_hue="slate",
    radius_size="lg",
)

HEADER = """
<div class="sd-header">
  <div class="sd-title">SteadyDancer studio</div>
  <div class="sd-subtitle">Animate the person in a photo with the motion of a dancer —
  first check the poses on CPU, then spend GPU time.</div>
  <ol class="sd-steps">
    <li><b>Character</b> — a photo of one person</li>
    <li><b>Motion</b> — a dance clip, or one of the project's motions</li>
    <li><b>Preview poses</b> — free, runs on CPU</li>
    <li><b>Generate</b> — runs the model on the GPU</li>
  </ol>
</div>
"""


def build_demo() -> gr.Blocks:
    motions = project_motions()
    motion_choices = [("— my video —", "")] + [(_motion_label(n), n) for n in motions]

    with gr.Blocks(title="SteadyDancer studio", delete_cache=(3600, 6 * 3600)) as demo:
        session = gr.State(None, delete_callback=_delete_session)
        gr.HTML(HEADER)
        status = gr.Markdown(elem_classes=["sd-status"])

        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=280):
                image = readable_image_errors(gr.Image(
                    label="1 · Character", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                    height=360, elem_id="character"))
            with gr.Column(scale=4, min_width=280):
                driving = gr.Video(label="2 · Driving motion", sources=["upload"], height=300,
                                   elem_id="driving", loop=True)
                motion = gr.Dropdown(motion_choices, value="", label="…or one of the project's motions",
                                     elem_id="motion", visible=len(motions) > 0)
            with gr.Column(scale=5, min_width=320):
                prompt = gr.Textbox(label="Prompt", value=DEFAULT_PROMPT, lines=3, elem_id="prompt")
                with gr.Accordion("Negative prompt", open=False):
                    negative_prompt = gr.Textbox(value="", lines=3, show_label=False,
                                                 placeholder=NEGATIVE_PROMPT_HINT)
                with gr.Accordion("Pose options", open=False):
                    smooth = gr.Slider(0, 1, value=0.3, step=0.05, label="Smoothing",
                                       info="Removes detector jitter; 0 = off")
                    repair = gr.Checkbox(value=True, label="Repair corrupted frames",
                                         info="Swapped limbs, lost hands, single-frame glitches")
                    align_mode = gr.Radio([("Auto", "auto"), ("Official (MusePose)", "official"),
                                           ("Robust", "robust")], value="auto", label="Alignment",
                                          info="Auto = the official rule, robust where it would fail")
                    with gr.Row():
                        alignment_frame = gr.Number(value=-1, precision=0, minimum=-1,
                                                    label="Alignment frame", info="-1 = automatic")
                        lead_in = gr.Number(value=0, precision=0, minimum=0, label="Lead-in frames",
                                            info="From the character's own pose")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    with gr.Row():
                        resolution = gr.Radio(list(RESOLUTIONS), value=DEFAULT_RESOLUTION, label="Resolution",
                                              info="480p: 832×480 area · 720p: 1024×576 (official)")
                        preset = gr.Radio([(label, key) for key, label in PRESET_LABELS.items()],
                                          value=DEFAULT_PRESET, label="Speed / memory",
                                          interactive=not ZERO_GPU,
                                          info="Fixed on this Space" if ZERO_GPU else None)
                    num_frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=DEFAULT_FRAMES, step=4,
                                           label="Length (frames, 4n+1)", elem_id="num-frames")
                    seconds = gr.Markdown(_length_text(DEFAULT_FRAMES), elem_classes=["sd-hint"])
                    defaults = sampling_defaults(DEFAULT_PRESET, DEFAULT_RESOLUTION)
                    with gr.Row():
                        steps = gr.Slider(1, 60, value=defaults[0], step=1, label="Steps")
                        shift = gr.Slider(1, 10, value=defaults[3], step=0.5, label="Shift")
                    with gr.Row():
                        guidance = gr.Slider(1, 10, value=defaults[1], step=0.1, label="Guidance (text)")
                        condition_guidance = gr.Slider(0, 3, value=defaults[2], step=0.05,
                                                       label="Condition guidance (pose)")
                    with gr.Row():
                        window_start = gr.Slider(0, 1, value=0.1, step=0.05, label="Condition window start",
                                                 info="Fraction of the steps")
                        window_end = gr.Slider(0, 1, value=0.4, step=0.05, label="Condition window end",
                                               info="with the negative-pose pass")
                    with gr.Row():
                        seed = gr.Number(value=42, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                        randomize = gr.Checkbox(value=True, label="Randomise seed")
                with gr.Row():
                    preview_btn = gr.Button("Preview poses", variant="secondary", elem_id="preview-btn")
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn", min_width=80,
                                           scale=0)
                estimate = gr.Markdown(elem_classes=["sd-hint"], elem_id="estimate")

        with gr.Tabs(selected="preview") as tabs:
            with gr.Tab("Pose preview", id="preview"):
                preview_video = gr.Video(label="Driving | extracted | aligned over the character", show_label=False,
                                         elem_id="preview-video", autoplay=True, loop=True, interactive=False,
                                         height=420)
                with gr.Row():
                    pose_video = gr.Video(label="Positive pose condition", elem_id="pose-video", loop=True,
                                          interactive=False, height=320)
                    with gr.Column():
                        report = gr.Markdown("Preview the poses to see what was extracted and repaired.",
                                             label="Report", elem_id="repair-report")
                        poses_file = gr.File(label="poses.json (reusable with any character)",
                                             interactive=False, height=110)
            with gr.Tab("Result", id="result"):
                with gr.Row():
                    result_video = gr.Video(label="SteadyDancer", elem_id="result-video", autoplay=True,
                                            loop=True, interactive=False, height=460)
                    comparison_video = gr.Video(label="Driving | pose | result", elem_id="comparison-video",
                                                loop=True, interactive=False, height=460)
                with gr.Row():
                    seed_used = gr.Number(label="Seed used", precision=0, interactive=False)
                    settings_used = gr.JSON(label="Settings used")

        example_rows = [[str(EXAMPLES_DIR / "astronaut.png"), str(entry["video"]), name]
                        for name, entry in motions.items() if entry["video"] is not None]
        if example_rows and (EXAMPLES_DIR / "astronaut.png").is_file():
            # Cached lazily: the first click on an example runs the (CPU) preview once for everybody.
            gr.Examples(example_rows, inputs=[image, driving, motion],
                        outputs=[preview_video, pose_video, report, poses_file], fn=preview_example,
                        cache_examples=True, cache_mode="lazy", label="Examples")

        gr.Markdown(
            "Preview poses runs on the CPU and is free. Generate needs the SteadyDancer weights and a GPU "
            "(on a ZeroGPU Space it borrows one for the estimated time). Uploads up to "
            f"{MAX_UPLOAD_SIZE}; driving clips up to {MAX_DRIVING_SECONDS:.0f} s. Your files stay in your own "
            "session folder and are deleted when you leave.", elem_classes=["sd-footer"])

        # -- wiring ------------------------------------------------------------------------------
        pose_inputs = [image, driving, motion, num_frames, smooth, repair, align_mode, alignment_frame, lead_in,
                       session]
        preview_outputs = [preview_video, pose_video, report, poses_file, session]

        preview_btn.click(lambda: gr.Tabs(selected="preview"), None, tabs, queue=False,
                          api_visibility="private").then(
            preview_poses, pose_inputs, preview_outputs, api_name="preview_poses", concurrency_limit=2,
            concurrency_id="cpu")
        # A pose control changed after a preview: re-run only the stages it affects (user actions
        # only -- .release / .input / .submit, not .change, so examples filling values do not fire).
        refresh_triggers = [smooth.release, num_frames.release, repair.input, align_mode.input,
                            alignment_frame.submit, alignment_frame.blur, lead_in.submit, lead_in.blur]
        gr.on(refresh_triggers, refresh_preview, pose_inputs, preview_outputs, api_visibility="private",
              concurrency_limit=2, concurrency_id="cpu", trigger_mode="always_last")

        gen_inputs = [image, driving, motion, prompt, negative_prompt, resolution, num_frames, steps, guidance,
                      condition_guidance, window_start, window_end, shift, seed, randomize, preset, smooth,
                      repair, align_mode, alignment_frame, lead_in, session]
        gen_event = generate_btn.click(lambda: gr.Tabs(selected="result"), None, tabs, queue=False,
                                       api_visibility="private").then(
            generate, gen_inputs, [result_video, comparison_video, seed_used, settings_used, session],
            api_name="generate", concurrency_limit=1, concurrency_id="gpu")
        # Gradio's `cancels` drops a queued or streaming event; a running step loop is stopped by
        # the session's flag, checked at every denoising step (run_generation).
        cancel_btn.click(cancel_generation, [session], None, cancels=[gen_event], concurrency_limit=None,
                         api_visibility="private")

        # Choosing a project motion shows its clip; uploading a clip deselects the motion.
        motion.input(_show_motion, [motion], [driving], api_visibility="private", queue=False)
        driving.upload(lambda: "", None, motion, api_visibility="private", queue=False)
        driving.clear(lambda: "", None, motion, api_visibility="private", queue=False)

        resolution.input(lambda r: RESOLUTIONS[r][1], resolution, shift, api_visibility="private", queue=False)
        preset.input(sampling_defaults, [preset, resolution], [steps, guidance, condition_guidance, shift],
                     api_visibility="private", queue=False)
        num_frames.change(_length_text, num_frames, seconds, api_visibility="private", queue=False)
        estimate_inputs = [image, resolution, num_frames, steps, guidance, condition_guidance, window_start,
                           window_end, preset]
        for control in estimate_inputs:
            control.change(estimate_text, estimate_inputs, estimate, api_visibility="private", queue=False)
        demo.load(estimate_text, estimate_inputs, estimate, api_visibility="private", queue=False)
        demo.load(runtime_status, None, status, api_visibility="private", queue=False)
    return demo


def sampling_defaults(preset: str, resolution: str) -> tuple[int, float, float, float]:
    """(steps, guidance, condition guidance, shift) a preset samples with: the official settings,
    or the preset's own (fast: 4 steps, no guidance passes)."""
    from steadydancer.settings import SamplingSettings

    sampling = SamplingSettings.resolve(str(preset).replace("-", "_"))
    shift = sampling.shift if sampling.shift is not None else RESOLUTIONS.get(resolution, (0, 5.0))[1]
    return sampling.num_inference_steps, sampling.guidance_scale, sampling.condition_guidance_scale, shift


def _show_motion(name: str):
    entry = project_motions().get(name or "")
    if entry is None:
        return gr.skip()
    return str(entry["video"]) if entry["video"] else None


def _length_text(num_frames) -> str:
    n = nearest_valid_frame_count(int(num_frames))
    return f"{n} frames = {n / MODEL_FPS:.2f} s at {MODEL_FPS} fps"


def _css() -> str:
    path = ASSETS_DIR / "app.css"
    return path.read_text() if path.is_file() else ""


def create_demo() -> gr.Blocks:
    """The Blocks with its queue: bounded, one GPU job at a time (concurrency_id "gpu"), two
    CPU previews at a time (concurrency_id "cpu")."""
    blocks = build_demo()
    blocks.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return blocks


if ZERO_GPU:
    # ZeroGPU: load the weights at start-up and move them to "cuda" -- ZeroGPU records the move
    # and places the weights on the GPU it attaches to each call. A Space without weights still
    # serves the preview; Generate then says what is missing.
    try:
        get_pipeline(DEFAULT_PRESET)
    except (MissingWeightsError, SteadyDancerInputError) as exc:
        log.error("SteadyDancer weights could not be loaded: %s", exc)

demo = create_demo()

LAUNCH_KWARGS = dict(
    theme=THEME,
    css=_css(),
    max_file_size=MAX_UPLOAD_SIZE,
    allowed_paths=[str(EXAMPLES_DIR)],
    show_error=True,
    footer_links=["api"],
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="SteadyDancer studio (Gradio app)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 for the local network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public share link")
    parser.add_argument("--model", default=None, help=f"model folder or Hugging Face repo id (default {CONFIG.model})")
    parser.add_argument("--offline", action="store_true", help="never download: local files / the HF cache only")
    parser.add_argument("--device", default=None, help="torch device for generation (default: cuda if available)")
    parser.add_argument("--resolution", action="append", default=[], metavar="NAME=WxH",
                        help="add a resolution class, e.g. tiny=64x64 for a small test model (repeatable)")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.resolution:
        try:
            name, size = item.split("=", 1)
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            parser.error(f"--resolution wants NAME=WxH, got {item!r}")
        extra[name] = (w * h, 3.0 if w * h <= 832 * 480 else 5.0)
    configure(model=args.model, offline=args.offline or None, device=args.device, resolutions=extra)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    blocks = create_demo() if extra else demo
    blocks.launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
