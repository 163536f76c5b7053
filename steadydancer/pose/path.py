"""The pose path, stage by stage: reference -> extract -> clean -> align (+negative) -> render.

Each stage is a plain function of the previous stages' results, so a caller (the app) can cache
them and re-run only what a control affects: smoothing re-runs ``clean_driving`` onwards, the
alignment controls ``align_driving`` onwards; nothing re-runs the detector.

    reference = prepare_reference(image)                      # detect the character's pose
    driving   = extract_driving(video, options, progress)     # mediapipe over the clip (slow part)
    cleaned   = clean_driving(driving, options)               # repair corrupted frames, smooth
    aligned   = align_driving(reference, cleaned, options)    # retarget + lead-in + negative
    pos, neg  = render_conditions(reference, aligned, options)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TypeVar, Union

import numpy as np
from PIL import Image

from ..constants import DEFAULT_MAX_AREA, size_for_area
from ..errors import SteadyDancerInputError
from ..settings import (ALIGN_MODE, ALIGNMENT_FRAME, CONDITIONING, FPS, FRAME_RATE, LEAD_IN_FRAMES,
                        REPAIR_DEFAULT, SMOOTH)
from .align import AlignmentInfo, align_sequence, lead_in
from .augment import augment_sequence
from .decoded import DecodedClip
from .repair import RepairReport, repair_sequence, smooth_sequence
from .outputs import OUTPUT_FILES, PREVIEW_HEIGHT, PREVIEW_THICKNESS  # noqa: F401  (re-exported)
from .sequence import PoseFrame, PoseSequence

Progress = Optional[Callable[[float, str], None]]
T = TypeVar("T")
U = TypeVar("U")
DrivingInput = Union[str, Path, PoseSequence]


@dataclass
class PoseOptions:
    """Every knob of the pose path (defaults are what the app starts with)."""

    fps: float = FPS.default  #: resample the driving clip to this rate; 0 keeps every source frame
    max_frames: Optional[int] = None  #: cap on driving frames read (after resampling)
    smooth: float = SMOOTH.default  #: temporal smoothing strength in [0, 1]; 0 = off
    repair: bool = REPAIR_DEFAULT  #: detect and repair corrupted frames
    align_mode: str = ALIGN_MODE.default  #: "auto" (official unless it fails), "official" or "robust"
    alignment_frame: Optional[int] = None  #: driving frame that sets the scales (None = auto/0)
    lead_in_frames: int = LEAD_IN_FRAMES.default  #: frames moving from the character's own pose to the first pose
    seed: int = 0  #: seed of the negative (augmented) condition
    draw_face: bool = False  #: the official conditions have no face; drawing it is optional
    #: "official" (the official video + JPEG + resize chain, see pose/conditioning.py) or "clean"
    conditioning: str = CONDITIONING.default
    #: "realtime" (resample to ``fps``) or "official" (every native frame: ``fps`` becomes 0)
    frame_rate: str = FRAME_RATE.default

    def __post_init__(self):
        """Checked once, against :mod:`steadydancer.settings` (a user error names the parameter)."""
        self.frame_rate = FRAME_RATE.check(self.frame_rate)
        self.conditioning = CONDITIONING.check(self.conditioning)
        self.fps = 0 if self.frame_rate == "official" else FPS.check(self.fps)
        if self.max_frames is not None and self.max_frames < 1:
            raise SteadyDancerInputError(f"max_frames must be at least 1, got {self.max_frames}")
        self.smooth = float(SMOOTH.check(self.smooth))
        self.align_mode = ALIGN_MODE.check(self.align_mode)
        if self.alignment_frame is not None:
            frame = ALIGNMENT_FRAME.check(self.alignment_frame)
            self.alignment_frame = None if frame < 0 else frame
        self.lead_in_frames = LEAD_IN_FRAMES.check(self.lead_in_frames)


@dataclass
class ReferencePose:
    """The character: its sanitised RGB image, the working size and the detected pose."""

    image: Image.Image  #: the sanitised image at its own resolution (RGB)
    size: tuple[int, int]  #: (W, H): the official 1024x576-area size, multiples of 16
    pose: PoseFrame  #: normalised to the image


@dataclass
class DrivingFrames:
    """The driving clip's frames at preview size (longer side ``max_side``), indexed like the
    poses: kept when the clip is decoded for the detector, or by the first preview, so the clip
    is decoded once. Mutable and shared by every copy of the :class:`DrivingPoses` holding it."""

    max_side: int = PREVIEW_HEIGHT
    frames: list = field(default_factory=list)
    complete: bool = False  #: the clip ended: these are all its frames

    def keep(self, frames, max_side: int, complete: bool) -> None:
        self.frames, self.max_side, self.complete = list(frames), int(max_side), bool(complete)

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.frames)


@dataclass
class DrivingPoses:
    poses: PoseSequence  #: raw detections (or a loaded poses.json)
    video: Optional[Path] = None  #: the source clip, when there is one (preview, audio)
    frames: DrivingFrames = field(default_factory=DrivingFrames)  #: its frames at preview size


@dataclass
class CleanedPoses:
    poses: PoseSequence
    report: RepairReport


@dataclass
class AlignedPoses:
    positive: PoseSequence  #: aligned to the character (normalised to the reference size)
    negative: PoseSequence  #: the augmented "null" condition
    info: AlignmentInfo
    lead_in_frames: int = 0  #: frames at the start that come from the lead-in, not the clip


@dataclass
class PosePathResult:
    reference: ReferencePose
    driving: DrivingPoses
    cleaned: CleanedPoses
    aligned: AlignedPoses
    options: PoseOptions = field(default_factory=PoseOptions)


def _call(progress: Progress, fraction: float, message: str) -> None:
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), message)


def _scaled(progress: Progress, start: float, end: float) -> Progress:
    """A progress callback mapping [0, 1] of a sub-stage to [start, end] of the whole."""
    if progress is None:
        return None
    return lambda f, msg: progress(start + (end - start) * float(f), msg)


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


def prepare_reference(image, pose: Optional[PoseFrame] = None) -> ReferencePose:
    """Sanitise the character image and detect its pose (at the official working size).

    ``pose``: this very image's pose when it is already known (a project photo's stored
    detection, ``studio.inputs.project_character``, made by :func:`detect_reference_pose`): no
    detector runs then."""
    from ..image import load_image

    img = load_image(image)
    size = size_for_area(img.width, img.height, DEFAULT_MAX_AREA)
    if pose is None:
        pose = detect_reference_pose(img, size)
    return ReferencePose(image=img, size=size, pose=pose)


def detect_reference_pose(img: Image.Image, size: tuple[int, int]) -> PoseFrame:
    """The character's pose in a sanitised image (``load_image``) whose working size is ``size``."""
    from .extract import extract_image_pose

    # The official preprocessing detects on the image resized to the working size; detection
    # coordinates are normalised, so they apply to the full-resolution image as well.
    return extract_image_pose(np.asarray(img.resize(size, Image.BICUBIC)))


def extract_driving(driving: DrivingInput, options: PoseOptions | None = None,
                    progress: Progress = None, decoded: Optional[DecodedClip] = None) -> DrivingPoses:
    """Poses of the driving motion: a video (mediapipe), a saved poses.json, or a PoseSequence.
    A video's frames are also kept at preview size as they are decoded (``DrivingPoses.frames``).

    ``decoded``: the video decoded ahead (:class:`~steadydancer.pose.decoded.DecodedClip`); read
    instead of the file when it holds this clip at these options' frame rate and length."""
    options = options or PoseOptions()
    frames = DrivingFrames()
    if isinstance(driving, PoseSequence):
        seq = driving
        video = None
    else:
        path = Path(driving)
        if not path.exists():
            raise SteadyDancerInputError(f"The driving file {path} does not exist.")
        if path.suffix.lower() == ".json":
            seq = PoseSequence.load(path)
            video = None
        else:
            from .extract import extract_video_poses

            collect = _PreviewFrameCollector(frames)
            ahead = decoded.frames() if decoded is not None and decoded.matches(
                path, options.fps, options.max_frames) else None
            seq = extract_video_poses(path, fps=options.fps, max_frames=options.max_frames, progress=progress,
                                      on_frame=collect, decoded=ahead)
            collect.finish(len(seq))
            video = path
    if isinstance(driving, PoseSequence) or video is None:
        seq = _resample_poses(seq, options.fps)
        if options.max_frames is not None:
            seq = seq[: options.max_frames]
    if len(seq) < 2:
        raise SteadyDancerInputError(
            f"The driving motion has {len(seq)} frame(s); at least 2 are needed. Use a longer clip."
        )
    if not seq.frames_with_person().any():
        raise SteadyDancerInputError("No person was found in the driving motion. Use a clip with one dancer in view.")
    _call(progress, 1.0, f"extracted {len(seq)} poses")
    return DrivingPoses(poses=seq, video=video, frames=frames)


def keep_preview_frames(driving: DrivingPoses, options: PoseOptions) -> None:
    """Decode the clip shown beside saved poses (a motion's ``poses.json`` with its video) at
    preview size now, kept in ``driving.frames`` for every later preview (a clip that was
    extracted keeps them already; this does nothing then). A caller runs it while something else
    waits (the app: while the character is detected), so the first preview does not decode."""
    from .outputs import driving_frame_source

    count = len(driving.poses)
    fetch = driving_frame_source(driving, count, options, PREVIEW_HEIGHT)
    if fetch is not None and count:
        fetch(count - 1)  # decodes up to the last frame needed (or the clip's end) and keeps them


class _PreviewFrameCollector:
    """``on_frame`` hook of the extractor: keeps each decoded frame downscaled to preview size
    (OpenCV area resampling), up to :data:`~steadydancer.pose.outputs.DRIVING_FRAMES_MAX_BYTES`."""

    def __init__(self, store: DrivingFrames):
        from .outputs import DRIVING_FRAMES_MAX_BYTES

        self.store, self.budget = store, DRIVING_FRAMES_MAX_BYTES
        self.frames: list[np.ndarray] = []
        self.nbytes = 0

    def __call__(self, index: int, frame: np.ndarray) -> None:
        if self.frames is None:
            return
        import cv2

        h, w = frame.shape[:2]
        side = self.store.max_side
        if max(h, w) > side:
            scale = side / max(h, w)
            size = (side, max(2, int(round(h * scale / 2)) * 2)) if w >= h else \
                (max(2, int(round(w * scale / 2)) * 2), side)
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        self.nbytes += frame.nbytes
        if self.nbytes > self.budget:
            self.frames = None  # too long to keep: the preview decodes the clip again
            return
        self.frames.append(frame)

    def finish(self, count: int) -> None:
        if self.frames and len(self.frames) >= count:
            self.store.keep(self.frames[:count], self.store.max_side, complete=False)


def _resample_poses(seq: PoseSequence, fps: float) -> PoseSequence:
    """Nearest-frame resampling of a pose sequence to ``fps`` (0 or equal rate: unchanged) --
    the same rule the video reader uses for frames."""
    if fps <= 0 or abs(seq.fps - fps) < 1e-6 or len(seq) == 0:
        return seq
    n_out = max(1, int(np.floor(seq.duration * fps + 1e-6)))
    src = np.minimum(np.round(np.arange(n_out) / fps * seq.fps).astype(int), len(seq) - 1)
    return seq[src].replace(fps=float(fps))


def clean_driving(driving: DrivingPoses, options: PoseOptions | None = None) -> CleanedPoses:
    """Repair corrupted frames (reported) and smooth detector jitter."""
    options = options or PoseOptions()
    seq = driving.poses
    if options.repair:
        seq, report = repair_sequence(seq)
    else:
        report = RepairReport(events=[])
    if options.smooth > 0:
        seq = smooth_sequence(seq, options.smooth)
    return CleanedPoses(poses=seq, report=report)


def align_driving(reference: ReferencePose, cleaned: CleanedPoses,
                  options: PoseOptions | None = None) -> AlignedPoses:
    """Retarget the motion to the character, add the lead-in, build the negative condition."""
    options = options or PoseOptions()
    aligned, info = align_sequence(
        cleaned.poses, reference.pose, reference.size,
        mode=options.align_mode, alignment_frame=options.alignment_frame,
    )
    if options.lead_in_frames:
        aligned = lead_in(reference.pose, aligned, options.lead_in_frames)
    negative = augment_sequence(aligned, seed=options.seed)
    return AlignedPoses(positive=aligned, negative=negative, info=info, lead_in_frames=options.lead_in_frames)


def render_conditions(reference: ReferencePose, aligned: AlignedPoses, options: PoseOptions | None = None,
                      size: tuple[int, int] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The positive and negative condition frames, drawn exactly as the official preprocessing
    draws them (on a canvas twice the working size), then resized bicubic to ``size``
    (default: the working size, which is what the generator resizes them to)."""
    from concurrent.futures import ThreadPoolExecutor

    options = options or PoseOptions()
    size = tuple(size or reference.size)
    # OpenCV drawing and PIL resizing release the GIL: the two sequences render on two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        positive, negative = pool.map(
            lambda seq: list(_iter_condition(seq, reference, options, size)),
            (aligned.positive, aligned.negative),
        )
    return positive, negative


def _iter_condition(seq: PoseSequence, reference: ReferencePose, options: PoseOptions, size):
    from .outputs import condition_renderer

    render = condition_renderer(reference, options, size)
    for frame in seq:
        yield render(frame)


def render_preview(reference: ReferencePose, driving: DrivingPoses, cleaned: CleanedPoses,
                   aligned: AlignedPoses, options: PoseOptions | None = None,
                   max_height: int = PREVIEW_HEIGHT) -> list[np.ndarray]:
    """Side-by-side preview frames: driving frame | extracted pose | aligned pose over the character.
    (:func:`write_pose_outputs` makes the same frames while it encodes them.)"""
    from .outputs import preview_frame, preview_items, preview_layout

    options = options or PoseOptions()
    layout = preview_layout(reference, cleaned, options, max_height)
    return [preview_frame(layout, *item) for item in preview_items(driving, cleaned, aligned, options, max_height)]


def beside(side: Callable[[], T], work: Callable[[Callable[[], None]], U]) -> tuple[T, U]:
    """``side()`` in a thread while ``work(check)`` runs in the calling thread; both results.

    Used to detect the character while the driving clip is extracted: one pipelined tracking
    graph leaves part of a second core idle, which the character's detection (a separate static
    graph, ~0.15 s of CPU plus ~0.4 s to load its models the first time in a process) fills, so
    it no longer adds to the wait. ``check()`` raises ``side``'s error as soon as it failed:
    ``work`` calls it often (from its progress callback), so a photo without a person stops the
    extraction at the next frame instead of after the whole clip. ``side``'s error wins over
    ``work``'s (it is the first input the user gave and the one the sequential order reported)."""
    import threading

    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = side()
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="pose-reference")
    thread.start()

    def check() -> None:
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]

    try:
        result = work(check)
    except BaseException:
        thread.join()
        check()
        raise
    thread.join()
    check()
    return outcome["value"], result  # type: ignore[return-value]


def checked(progress: Progress, check: Callable[[], None]) -> Callable[[float, str], None]:
    """A progress callback that calls ``check()`` first (see :func:`beside`)."""

    def call(fraction: float, message: str) -> None:
        check()
        _call(progress, fraction, message)

    return call


def run_pose_path(image, driving: DrivingInput, options: PoseOptions | None = None,
                  progress: Progress = None) -> PosePathResult:
    """All stages: the character image and a driving clip (or poses) -> aligned poses. The
    character is detected while the clip is extracted (:func:`beside`)."""
    options = options or PoseOptions()
    _call(progress, 0.0, "detecting the character's pose and extracting the motion")
    reference, drv = beside(lambda: prepare_reference(image),
                            lambda check: extract_driving(driving, options,
                                                          checked(_scaled(progress, 0.05, 0.9), check)))
    _call(progress, 0.9, "repairing and smoothing")
    cleaned = clean_driving(drv, options)
    _call(progress, 0.95, "aligning to the character")
    aligned = align_driving(reference, cleaned, options)
    _call(progress, 1.0, "poses ready")
    return PosePathResult(reference, drv, cleaned, aligned, options)


def write_pose_outputs(result: PosePathResult, out_dir: str | Path, *, audio_from: str | Path | None = None,
                       progress: Progress = None, **kwargs) -> dict[str, Path]:
    """Write poses.json (extracted, reusable with any character), aligned_poses.json,
    aligned_pose.mp4 (positive condition), negative_pose.mp4 and preview.mp4 into ``out_dir``,
    rendering and encoding the videos concurrently (see :mod:`steadydancer.pose.outputs`, which
    also documents the keyword arguments: ``outputs``, ``encodings``, ``early_preview_frames``,
    ``on_ready``)."""
    from .outputs import write_pose_outputs as write

    return write(result, out_dir, audio_from=audio_from, progress=progress, **kwargs)
