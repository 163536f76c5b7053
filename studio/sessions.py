"""Per-session files and the pose cache: each browser/API session keeps its pose-path results, each
stored with the inputs it was computed from, and its files in its own folder.

What a session holds is bounded: the character photo at working size
(:func:`studio.working_image.working_copy`), the poses of at most the app's longest length (and
the clip's frames at preview size), an uploaded clip's frames decoded for its first preview until
that preview reads them (:data:`DECODE_AHEAD_BUDGET`, for every session together), the latest
preview / generation files. :class:`studio.handlers.Studio` keeps the sessions in a
:class:`studio.session_store.SessionStore` (closed when the tab closes, after an idle time, or when
newer sessions need the room).

A photo's character is detected once (:func:`session_character`): by the photo's own event when
it arrives on the page, or by the first preview or generation that needs it, whichever comes
first; one that comes while the other detects waits for its answer. An uploaded clip is decoded
when it arrives (:func:`decode_on_arrival`) and its first preview reads those frames, from
memory or as they are decoded; a clip is decoded once either way."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from steadydancer.pose.path import (
    AlignedPoses,
    CleanedPoses,
    DrivingFrames,
    DrivingPoses,
    PoseOptions,
    PosePathResult,
    ReferencePose,
    align_driving,
    beside,
    checked,
    clean_driving,
    extract_driving,
    keep_preview_frames,
    prepare_reference,
)

from steadydancer import settings
from steadydancer.constants import DEFAULT_MAX_AREA
from steadydancer.pose.decoded import DecodedClip, FrameBudget
from steadydancer.pose.people import find_faces, people_note

from .config import DECODE_AHEAD_MAX_BYTES, SESSION_MAX_AGE_SECONDS
from .inputs import DrivingSource, file_key, project_character
from .session_store import SESSION_DIR_PREFIX, remove_session_dirs
from .working_image import working_copy


def sweep_old_sessions(root: Path, max_age: float = SESSION_MAX_AGE_SECONDS, keep: Iterable[Path] = ()) -> int:
    """Remove session folders nobody has written to for ``max_age`` seconds, except ``keep`` (the
    live sessions' folders); returns how many."""
    return remove_session_dirs(root, older_than=max_age, keep=set(keep))


def new_session_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=SESSION_DIR_PREFIX, dir=root))


@dataclass
class PoseSession:
    """One user's pose-path results, each stored with the inputs it was computed from.

    A control re-runs only the stages it affects: a new image re-detects the character; a new clip
    (or a longer length than was read) re-extracts; smoothing / repair re-clean; alignment mode,
    alignment frame and lead-in re-align. ``runs`` counts what was computed (tests check it).
    Files of this session live in ``workdir``, its own folder under ``root``, made by its first
    output (a rejected request leaves no folder) and removed when the session ends
    (:func:`delete_session`).
    """

    root: Path
    workdir: Optional[Path] = None
    reference: Optional[tuple] = None  # (key, ReferencePose)
    driving: Optional[tuple] = None  # (key, frame limit used or None, DrivingPoses)
    cleaned: Optional[tuple] = None  # (key, CleanedPoses)
    aligned: Optional[tuple] = None  # (key, AlignedPoses)
    runs: Counter = field(default_factory=Counter)
    cancel: threading.Event = field(default_factory=threading.Event)
    #: held while the character is detected (:func:`session_character`): the photo's own event and
    #: a preview started meanwhile detect it once
    character_lock: threading.Lock = field(default_factory=threading.Lock)
    last_preview_key: Optional[tuple] = None
    people_note: Optional[str] = None  #: a photo of several people: which one is animated
    #: the uploaded clip decoded on arrival, until a preview reads it (:func:`decode_on_arrival`)
    decoded: Optional[DecodedClip] = None
    #: a clip is being extracted now: a decode arriving meanwhile is not started
    extracting: bool = False
    clip_lock: threading.Lock = field(default_factory=threading.Lock)  #: guards ``decoded`` and ``extracting``

    @classmethod
    def create(cls, root: Path) -> "PoseSession":
        return cls(root=Path(root))

    def run_dir(self, kind: str) -> Path:
        """A fresh folder for one run's outputs; the previous run of the same kind is removed
        (its files were already copied to Gradio's cache when they were returned)."""
        if self.workdir is None:
            self.workdir = new_session_dir(self.root)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.glob(f"{kind}-*"):
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.workdir))


def delete_session(session: Optional[PoseSession]) -> None:
    """The session ended: drop its poses and photo, stop its work, remove its files."""
    if isinstance(session, PoseSession):
        session.reference = session.driving = session.cleaned = session.aligned = None
        session.cancel.set()
        with session.clip_lock:
            decoded, session.decoded = session.decoded, None
        if decoded is not None:
            decoded.stop()
        if session.workdir is not None:
            shutil.rmtree(session.workdir, ignore_errors=True)


def keep_working_size(reference: ReferencePose, areas: Iterable[int] = ()) -> ReferencePose:
    """The reference with its photo reduced to working size: the generation size for every area in
    ``areas`` (and the resolution classes, and the official canvas) stays the full photo's."""
    keep = {DEFAULT_MAX_AREA, *settings.RESOLUTION_AREAS.values(), *(int(a) for a in areas)}
    return dataclasses.replace(reference, image=working_copy(reference.image, settings.SESSION_PHOTO_MAX_AREA, keep))


#: Preview-size frames of the project's own motions (clips shipped with the app, the same for
#: every visitor; never a user's upload), decoded once per process and shared by every session:
#: a first preview of a shipped motion decodes nothing (~0.1 s for 81 frames of the example).
#: Bounded by the motions the project ships and the app's longest length (~60 MB for 161 frames
#: of the example at preview size).
_MOTION_FRAMES: dict[tuple, DrivingFrames] = {}
_MOTION_FRAMES_LOCK = threading.Lock()


def motion_frames(key: tuple, fps: float) -> DrivingFrames:
    """The process-wide :class:`DrivingFrames` of a project motion (``DrivingSource.key`` starting
    with ``"motion"``) at a frame rate, made empty on first use."""
    if not key or key[0] != "motion":
        raise ValueError(f"only a project motion's frames are shared between sessions, not {key[:1]}")
    with _MOTION_FRAMES_LOCK:
        return _MOTION_FRAMES.setdefault((key, float(fps)), DrivingFrames())


def session_character(session: PoseSession, image: str, areas: Iterable[int] = (), known=None) -> ReferencePose:
    """The session's character for the photo ``image``: the one stored if it is this photo, else
    detected now and stored (a project photo: its stored record, ``known`` if the caller has
    looked it up already), with :attr:`PoseSession.people_note`. One detection at a time per
    session: a caller that comes while the same photo is detected waits and shares the answer
    (the app detects a photo when it arrives, and a preview may start meanwhile)."""
    key = file_key(image)
    with session.character_lock:
        if session.reference is not None and session.reference[0] == key:
            return session.reference[1]
        known = known if known is not None else project_character(image)
        pose = known.pose.copy() if known else None  # the record is shared by every session: a copy
        reference = keep_working_size(prepare_reference(image, pose=pose), areas)
        faces = list(known.faces) if known else find_faces(reference.image)
        session.people_note = people_note(reference.pose, faces)
        session.reference = (key, reference)
        session.runs["reference"] += 1
        return reference


#: Frames of uploaded clips decoded on arrival and not yet read by their preview, every session
#: together (:data:`studio.config.DECODE_AHEAD_MAX_BYTES`): past it, a preview reads the rest of its
#: clip from the file.
DECODE_AHEAD_BUDGET = FrameBudget(DECODE_AHEAD_MAX_BYTES)


def driving_reusable(session: PoseSession, drv_key: tuple, need: Optional[int]) -> bool:
    """The session's extracted poses serve (clip key, fps) ``drv_key`` for ``need`` frames."""
    cached = session.driving
    return cached is not None and cached[0] == drv_key and (
        cached[1] is None  # the whole clip was read
        or (need is not None and need <= cached[1])  # at least as many frames were read
        or len(cached[2].poses) < cached[1]  # the clip ended before the limit: it is all there
    )


def decode_on_arrival(session: PoseSession, source: DrivingSource, options: PoseOptions) -> None:
    """Decode an uploaded clip's detection frames now, in this thread, for its first preview with
    ``options`` (frame rate and length): the app calls it when the clip arrives, while the user is
    still on the page, so that the preview's detector reads frames from memory
    (:mod:`steadydancer.pose.decoded`). Nothing happens for a project motion (no detector runs),
    for a clip whose poses the session has, or while a preview extracts. A clip decoded earlier
    for other settings is let go."""
    if source.key[0] != "video":
        return
    drv_key = (source.key, options.fps)
    with session.clip_lock:
        pending = session.decoded
        if pending is not None and pending.matches(source.path, options.fps, options.max_frames):
            return
        if session.extracting or driving_reusable(session, drv_key, options.max_frames):
            return
        clip = session.decoded = DecodedClip(source.path, options.fps, options.max_frames, DECODE_AHEAD_BUDGET)
    if pending is not None:
        pending.stop()
    clip.decode()
    session.runs["decode_on_arrival"] += 1


def _take_decoded(session: PoseSession) -> Optional[DecodedClip]:
    """The clip decoded on arrival, taken out of the session for the extraction that starts now
    (:func:`~steadydancer.pose.path.extract_driving` reads it if it matches); marks the extraction
    as running."""
    with session.clip_lock:
        decoded, session.decoded = session.decoded, None
        session.extracting = True
    return decoded


def compute_poses(session: PoseSession, image: str, source: DrivingSource, options: PoseOptions,
                  progress: Optional[Callable[[float, str], None]] = None,
                  areas: Iterable[int] = ()) -> PosePathResult:
    """Run the stages whose inputs changed since the last call of this session; reuse the rest.
    The photo is kept at working size for the resolution ``areas`` (:func:`keep_working_size`)."""
    report = progress or (lambda f, m: None)

    ref_key = file_key(image)
    new_reference = session.reference is None or session.reference[0] != ref_key

    known = project_character(image) if new_reference else None  # a project photo: its stored detection

    def reference_stage() -> ReferencePose:
        return session_character(session, image, areas, known)

    need = options.max_frames
    drv_key = (source.key, options.fps)
    reusable = driving_reusable(session, drv_key, need)

    def driving_stage(check: Callable[[], None]) -> DrivingPoses:
        # check(): the character's detection failed, stop extracting now
        scaled = checked(lambda f, m: report(0.05 + 0.8 * f, f"Extracting poses: {m}"), check)
        decoded = _take_decoded(session)
        try:
            driving = extract_driving(source.path, options, scaled, decoded=decoded)
        finally:
            with session.clip_lock:
                session.extracting = False
            if decoded is not None:
                decoded.stop()  # read, or for other settings: its frames go
        if source.video is not None and driving.video is None:  # a project motion: show its clip
            driving = dataclasses.replace(driving, video=source.video, frames=motion_frames(source.key, options.fps))
            if new_reference and known is None:  # once per process, beside the character's detection;
                keep_preview_frames(driving, options)  # else the first preview decodes while it renders
        return driving

    if not reusable:
        if new_reference:  # the character is detected while the clip is read (see path.beside)
            report(0.0, "Detecting the character's pose and reading the driving motion")
            reference, driving = beside(reference_stage, driving_stage)
        else:
            report(0.05, "Reading the driving motion")
            driving = driving_stage(lambda: None)
            reference = reference_stage()  # the stored one
        session.driving = (drv_key, need, driving)
        session.runs["extract"] += 1
    else:
        driving = session.driving[2]
        if new_reference:
            report(0.0, "Detecting the character's pose")
        reference = reference_stage()

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
