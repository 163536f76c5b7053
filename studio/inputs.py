"""The user's inputs, checked once: the character image, the driving motion, the pose options and the
generation request. Every limit and default comes from :mod:`steadydancer.settings`; a mistake is a
:class:`~steadydancer.errors.SteadyDancerInputError` that names the parameter."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from steadydancer import settings
from steadydancer.constants import nearest_valid_frame_count
from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose.path import PoseOptions
from steadydancer.pose.people import Face
from steadydancer.pose.sequence import PoseFrame, PoseSequence

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
ASSETS_DIR = ROOT / "assets"

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif", ".mpg", ".mpeg"}


def file_key(path) -> tuple:
    """Identity of an input file: Gradio stores uploads under a content hash, so path + size +
    mtime changes exactly when the content does."""
    p = Path(path)
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------------
# Motions shipped with the project
# ---------------------------------------------------------------------------------------------


def project_motions(examples_dir: Optional[Path] = None) -> dict[str, dict[str, Optional[Path]]]:
    """The project's own motions in examples/: ``NAME.poses.json`` (+ ``NAME.mp4`` to show)."""
    examples_dir = examples_dir or EXAMPLES_DIR
    motions = {}
    for poses in sorted(examples_dir.glob("*.poses.json")):
        name = poses.name[: -len(".poses.json")]
        video = examples_dir / f"{name}.mp4"
        motions[name] = {"poses": poses, "video": video if video.is_file() else None}
    return motions


def motion_label(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").capitalize()


# ---------------------------------------------------------------------------------------------
# Character photos shipped with the project
# ---------------------------------------------------------------------------------------------

#: A project photo's character detection, stored beside it as ``NAME.character.json`` (written by
#: ``examples/make_examples.py`` with :func:`character_record`): a one-frame poses file whose
#: ``meta`` holds the photo's SHA-256 and size, the detector's version and settings
#: (:func:`character_fingerprint`) and the faces found. With it the example's preview runs no
#: detector at all, like a project motion's saved poses; any other photo is detected as always.
CHARACTER_SUFFIX = ".character.json"


@dataclass(frozen=True)
class KnownCharacter:
    """A project photo's stored detection: what ``prepare_reference`` and ``find_faces`` give."""

    pose: PoseFrame
    faces: tuple[Face, ...]


def character_fingerprint() -> dict[str, Any]:
    """What a photo's detection depends on besides the photo: the detector's version (read from the
    installed package, without importing it) and the detection settings."""
    from importlib.metadata import PackageNotFoundError, version

    from steadydancer.pose import extract, people

    try:
        detector = f"mediapipe {version('mediapipe')}"
    except PackageNotFoundError:
        detector = "mediapipe missing"
    return {"detector": detector, "model_complexity": extract.MODEL_COMPLEXITY,
            "detect_max_side": extract.IMAGE_DETECT_MAX_SIDE, "visibility_threshold": extract.VISIBILITY_THRESHOLD,
            "face_min_confidence": people.FACE_MIN_CONFIDENCE, "face_detect_max_side": people.FACE_DETECT_MAX_SIDE}


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def character_record(image) -> PoseSequence:
    """Detect the character in a photo exactly as a preview does (``prepare_reference``, then
    ``find_faces`` on the sanitised photo) and return the record to store beside it."""
    from steadydancer.pose.path import prepare_reference
    from steadydancer.pose.people import find_faces

    path = Path(image)
    reference = prepare_reference(path)
    faces = find_faces(reference.image)
    meta = {"image_sha256": _sha256(path), "image_bytes": path.stat().st_size, **character_fingerprint(),
            "faces": [[*face.box, face.score] for face in faces]}
    return PoseSequence.from_frames([reference.pose], fps=1.0, width=reference.size[0], height=reference.size[1],
                                    meta=meta)


def project_character(image, examples_dir: Optional[Path] = None) -> Optional[KnownCharacter]:
    """The stored detection of a project photo whose bytes these are (None for any other photo, or
    when the installed detector or its settings differ from the record's). Only a photo of the
    same size as a record is hashed."""
    path = Path(image)
    size = path.stat().st_size
    candidates = [(meta, known) for meta, known in _character_records(examples_dir or EXAMPLES_DIR)
                  if meta.get("image_bytes") == size]
    if not candidates:
        return None
    digest, fingerprint = _sha256(path), character_fingerprint()
    for meta, known in candidates:
        if meta.get("image_sha256") == digest and all(meta.get(k) == v for k, v in fingerprint.items()):
            return known
    return None


def _character_records(examples_dir: Path) -> list[tuple[dict, KnownCharacter]]:
    files = sorted(examples_dir.glob(f"*{CHARACTER_SUFFIX}"))
    return _load_character_records(tuple((str(f), f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=4)
def _load_character_records(files: tuple[tuple[str, int], ...]) -> list[tuple[dict, KnownCharacter]]:
    """The records, read once per process (per set of files and their times)."""
    records = []
    for name, _ in files:
        seq = PoseSequence.load(name)
        faces = tuple(Face(tuple(float(v) for v in f[:4]), float(f[4])) for f in seq.meta.get("faces", []))
        records.append((dict(seq.meta), KnownCharacter(pose=seq[0], faces=faces)))
    return records


@dataclass(frozen=True)
class DrivingSource:
    """Where the motion comes from: a clip to run the detector on, or a project motion's poses."""

    path: Path  #: the video, or the project motion's poses.json
    video: Optional[Path]  #: the clip shown in the preview and used for audio (None: poses only)
    key: tuple
    label: str


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def is_blank(value) -> bool:
    """An input the user has not filled (or has cleared)."""
    return value is None or (isinstance(value, str) and not value.strip())


def resolve_image(image) -> str:
    if is_blank(image):
        raise SteadyDancerInputError("image: add a character image first (a photo of one person, ideally full body).")
    if isinstance(image, dict):  # {"path": ...} from some clients
        image = image.get("path") or image.get("url")
    if not isinstance(image, (str, Path)):
        raise SteadyDancerInputError(f"image must be an uploaded file, got {type(image).__name__}.")
    path = Path(image)
    if not path.is_file():
        raise SteadyDancerInputError(f"image: {path.name} could not be found; upload it again.")
    if path.stat().st_size > settings.MAX_UPLOAD_BYTES:
        raise SteadyDancerInputError(f"image: the file is larger than {settings.MAX_UPLOAD_SIZE}; use a smaller file.")
    return str(path)


def resolve_driving(driving_video, motion: str | None) -> DrivingSource:
    """The driving source from the two inputs: a chosen project motion wins over the video box
    (which then only shows that motion's clip)."""
    motion = (motion or "").strip() if isinstance(motion, (str, type(None))) else str(motion)
    if motion:
        motions = project_motions()
        if motion not in motions:
            known = ", ".join(sorted(motions)) or "none"
            raise SteadyDancerInputError(f"motion: unknown project motion {motion!r}; choose one of: {known}.")
        entry = motions[motion]
        return DrivingSource(path=entry["poses"], video=entry["video"],
                             key=("motion", motion, file_key(entry["poses"])), label=motion_label(motion))
    if is_blank(driving_video):
        raise SteadyDancerInputError(
            "driving_video: add a driving video (one person dancing), or choose one of the project's motions.")
    if isinstance(driving_video, dict):  # {"video": path, "subtitles": ...} from some clients
        driving_video = driving_video.get("video") or driving_video.get("path")
        if isinstance(driving_video, dict):
            driving_video = driving_video.get("path")
    if not isinstance(driving_video, (str, Path)):
        raise SteadyDancerInputError(f"driving_video must be an uploaded video file, got {type(driving_video).__name__}.")
    path = Path(driving_video)
    if not path.is_file():
        raise SteadyDancerInputError(f"driving_video: {path.name} could not be found; upload it again.")
    size = path.stat().st_size
    if size > settings.MAX_UPLOAD_BYTES:
        raise SteadyDancerInputError(
            f"driving_video: the file is larger than {settings.MAX_UPLOAD_SIZE}; trim or compress it.")
    if size == 0:
        raise SteadyDancerInputError("driving_video: the file is empty; upload it again.")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SteadyDancerInputError(
            f"driving_video: {path.name} is not a video file; use an .mp4, .mov or .webm clip of one person dancing.")
    check_video_duration(path)
    return DrivingSource(path=path, video=path, key=("video", file_key(path)), label=path.name)


def check_video_duration(path: Path) -> None:
    """Refuse clips longer than the limit before decoding any frame (reading the header is cheap; an
    unreadable file is reported by the reader with its own message)."""
    from steadydancer.video import probe_video

    info = probe_video(path)
    duration = getattr(info, "duration", None)
    limit = settings.MAX_DRIVING_SECONDS
    if duration is not None and math.isfinite(duration) and duration > limit:
        raise SteadyDancerInputError(
            f"driving_video is {duration:.0f} s long; the limit is {limit:.0f} s. "
            "Trim it to the part you want (only the first seconds are used anyway).")


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

#: The app offers up to 161 frames (10 s); the settings table's range, capped.
APP_NUM_FRAMES = settings.NUM_FRAMES.with_limits(maximum=settings.APP_MAX_FRAMES)


def valid_frames(num_frames) -> int:
    return nearest_valid_frame_count(APP_NUM_FRAMES.check(num_frames))


def pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames, frame_rate=None,
                 conditioning=None) -> PoseOptions:
    """PoseOptions from the UI / API values, with the driving frames the length needs (``frame_rate``
    official: that many native frames of the clip)."""
    num_frames = valid_frames(num_frames)
    lead_in = settings.LEAD_IN_FRAMES.with_limits(maximum=num_frames - 2).check(
        settings.LEAD_IN_FRAMES.default if lead_in_frames is None else lead_in_frames)
    frame = settings.ALIGNMENT_FRAME.check(settings.ALIGNMENT_FRAME.default if alignment_frame is None
                                           else alignment_frame)
    return PoseOptions(
        fps=settings.FPS.default,
        max_frames=num_frames - lead_in,
        smooth=settings.SMOOTH.check(smooth),
        repair=settings.check_flag("repair", repair),
        align_mode=settings.ALIGN_MODE.check(align_mode),
        alignment_frame=None if frame < 0 else frame,
        lead_in_frames=lead_in,
        frame_rate=settings.FRAME_RATE.check(frame_rate or settings.FRAME_RATE.default),
        conditioning=settings.CONDITIONING.check(conditioning or settings.CONDITIONING.default),
    )


@dataclass(frozen=True)
class GenerationRequest:
    """Everything that decides a generated video (shown to the user as "settings used")."""

    prompt: str
    negative_prompt: str
    resolution: str
    max_area: int
    num_frames: int
    sampling: settings.SamplingSettings
    seed: int
    preset: str
    noise_device: str = settings.NOISE_DEVICE.default  #: generator of the initial noise (steadydancer.noise)

    @property
    def shift(self) -> float:
        return self.sampling.shift

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        sampling = d.pop("sampling")
        d.update(sampling)
        d["condition_window"] = list(self.sampling.condition_window)
        return d


def generation_request(prompt, negative_prompt, resolution, num_frames, num_inference_steps, guidance_scale,
                       condition_guidance_scale, condition_window_start, condition_window_end, shift, seed,
                       randomize_seed, preset, resolutions: Mapping[str, tuple[int, float]],
                       noise_device=None) -> GenerationRequest:
    """Validate the UI / API values (one message per mistake, naming the parameter)."""
    if resolution not in resolutions:
        raise SteadyDancerInputError(f"resolution must be one of {', '.join(resolutions)}, got {resolution!r}.")
    preset = settings.PRESET.check(preset)
    sampling = settings.SamplingSettings.resolve(
        None, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
        condition_guidance_scale=condition_guidance_scale,
        condition_window=(condition_window_start, condition_window_end),
        shift=resolutions[resolution][1] if shift is None else shift,
    )
    seed = settings.random_seed() if settings.check_flag("randomize_seed", randomize_seed) else settings.SEED.check(seed)
    for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if text is not None and not isinstance(text, str):
            raise SteadyDancerInputError(f"{name} must be text, got {type(text).__name__}.")
        if text and len(text) > settings.MAX_PROMPT_CHARS:
            raise SteadyDancerInputError(f"{name} is {len(text)} characters; the limit is {settings.MAX_PROMPT_CHARS}.")
    return GenerationRequest(
        prompt=(prompt or "").strip() or settings.DEFAULT_PROMPT,
        negative_prompt=(negative_prompt or "").strip(),  # empty: the official negative prompt
        resolution=resolution, max_area=resolutions[resolution][0], num_frames=valid_frames(num_frames),
        sampling=sampling, seed=int(seed), preset=preset,
        noise_device=settings.NOISE_DEVICE.check(noise_device or settings.NOISE_DEVICE.default),
    )
