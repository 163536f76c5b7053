"""Per-session files and the pose cache: each browser/API session keeps its pose-path results, each
stored with the inputs it was computed from, in its own temporary folder."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

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
)

from .config import SESSION_MAX_AGE_SECONDS
from .inputs import DrivingSource, file_key


def sweep_old_sessions(root: Path, max_age: float = SESSION_MAX_AGE_SECONDS) -> None:
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


def new_session_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    sweep_old_sessions(root)
    return Path(tempfile.mkdtemp(prefix="session-", dir=root))


@dataclass
class PoseSession:
    """One user's pose-path results, each stored with the inputs it was computed from.

    A control re-runs only the stages it affects: a new image re-detects the character; a new clip
    (or a longer length than was read) re-extracts; smoothing / repair re-clean; alignment mode,
    alignment frame and lead-in re-align. ``runs`` counts what was computed (tests check it).
    Files of this session live in ``workdir`` (its own temp folder), removed when the session
    ends (Gradio calls :func:`delete_session`) or by the sweep of old folders.
    """

    workdir: Path
    reference: Optional[tuple] = None  # (key, ReferencePose)
    driving: Optional[tuple] = None  # (key, frame limit used or None, DrivingPoses)
    cleaned: Optional[tuple] = None  # (key, CleanedPoses)
    aligned: Optional[tuple] = None  # (key, AlignedPoses)
    runs: Counter = field(default_factory=Counter)
    cancel: threading.Event = field(default_factory=threading.Event)
    last_preview_key: Optional[tuple] = None

    @classmethod
    def create(cls, root: Path) -> "PoseSession":
        return cls(workdir=new_session_dir(root))

    def run_dir(self, kind: str) -> Path:
        """A fresh folder for one run's outputs; the previous run of the same kind is removed
        (its files were already copied to Gradio's cache when they were returned)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.glob(f"{kind}-*"):
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.workdir))


def delete_session(session: Optional[PoseSession]) -> None:
    """gr.State delete callback: the session ended, remove its files."""
    if isinstance(session, PoseSession):
        shutil.rmtree(session.workdir, ignore_errors=True)


def compute_poses(session: PoseSession, image: str, source: DrivingSource, options: PoseOptions,
                  progress: Optional[Callable[[float, str], None]] = None) -> PosePathResult:
    """Run the stages whose inputs changed since the last call of this session; reuse the rest."""
    report = progress or (lambda f, m: None)

    ref_key = file_key(image)
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
