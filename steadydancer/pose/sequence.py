"""The pose data model: a whole-body pose per frame, and a sequence of them with its fps and size.

Arrays, not objects per point, so that repair, smoothing and alignment are vectorised numpy.

Layout (float32; coordinates normalised to the frame: x / width, y / height):

=========  ===================  ==========================================================
field      shape (sequence)     columns
=========  ===================  ==========================================================
body       (T, 18, 3)           x, y, confidence  -- COCO-18 / OpenPose order
hands      (T, 2, 21, 4)        x, y, z, confidence -- hand 0 = person's left, 1 = right;
                                z is mediapipe's depth relative to the wrist (0 if unknown)
face       (T, 68, 3)           x, y, confidence  -- iBUG 68 order
=========  ===================  ==========================================================

A missing point is explicit: its x and y are NaN and its confidence is 0. NaN never silently
turns into a position (arithmetic on it stays NaN; tests check it does not leak), unlike the
-1 markers of the original OpenPose code. Use :func:`present` to get the mask.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .skeleton import HAND_SIDES, NUM_BODY, NUM_FACE, NUM_HAND

FORMAT_NAME = "steadydancer-poses"
FORMAT_VERSION = 1

_PART_SHAPES = {"body": (NUM_BODY, 3), "hands": (2, NUM_HAND, 4), "face": (NUM_FACE, 3)}
PARTS = tuple(_PART_SHAPES)


def present(points: np.ndarray) -> np.ndarray:
    """Boolean mask of points that exist (finite x and y) -- shape ``points.shape[:-1]``."""
    return np.isfinite(points[..., 0]) & np.isfinite(points[..., 1])


def empty_points(shape_prefix: tuple[int, ...], part: str) -> np.ndarray:
    """All-missing points of ``part`` with leading dims ``shape_prefix``."""
    arr = np.zeros(shape_prefix + _PART_SHAPES[part], dtype=np.float32)
    arr[..., :2] = np.nan
    return arr


def _normalise_missing(points: np.ndarray) -> np.ndarray:
    """Make the missing-point convention hold: NaN x/y <-> confidence 0 (and z 0 for hands)."""
    points = np.asarray(points, dtype=np.float32)
    missing = ~present(points)
    if missing.any():
        points = points.copy()
        points[missing, 0:2] = np.nan
        points[missing, 2:] = 0.0
    return points


@dataclass
class PoseFrame:
    """One frame's whole-body pose (see module docstring for the layout)."""

    body: np.ndarray
    hands: np.ndarray
    face: np.ndarray

    def __post_init__(self):
        for part in PARTS:
            arr = _normalise_missing(getattr(self, part))
            if arr.shape != _PART_SHAPES[part]:
                raise ValueError(f"PoseFrame.{part} must have shape {_PART_SHAPES[part]}, got {arr.shape}")
            setattr(self, part, arr)

    @classmethod
    def empty(cls) -> "PoseFrame":
        return cls(**{part: empty_points((), part) for part in PARTS})

    def copy(self) -> "PoseFrame":
        return PoseFrame(self.body.copy(), self.hands.copy(), self.face.copy())

    @property
    def has_person(self) -> bool:
        return bool(present(self.body).any())


@dataclass
class PoseSequence:
    """Poses of T frames, with the frame rate and the pixel size the coordinates refer to."""

    body: np.ndarray
    hands: np.ndarray
    face: np.ndarray
    fps: float
    width: int
    height: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        n = None
        for part in PARTS:
            arr = _normalise_missing(getattr(self, part))
            if arr.ndim != len(_PART_SHAPES[part]) + 1 or arr.shape[1:] != _PART_SHAPES[part]:
                raise ValueError(
                    f"PoseSequence.{part} must have shape (T, {', '.join(map(str, _PART_SHAPES[part]))}), "
                    f"got {arr.shape}"
                )
            if n is not None and arr.shape[0] != n:
                raise ValueError("PoseSequence parts have different frame counts")
            n = arr.shape[0]
            setattr(self, part, arr)
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"frame size must be positive, got {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def empty(cls, num_frames: int, fps: float, width: int, height: int, meta=None) -> "PoseSequence":
        return cls(
            **{part: empty_points((num_frames,), part) for part in PARTS},
            fps=fps, width=width, height=height, meta=dict(meta or {}),
        )

    @classmethod
    def from_frames(cls, frames: Iterable[PoseFrame], fps: float, width: int, height: int,
                    meta=None) -> "PoseSequence":
        frames = list(frames)
        parts = {
            part: (np.stack([getattr(f, part) for f in frames]) if frames else empty_points((0,), part))
            for part in PARTS
        }
        return cls(**parts, fps=fps, width=width, height=height, meta=dict(meta or {}))

    def replace(self, **changes) -> "PoseSequence":
        """A copy with some fields replaced (arrays are copied, meta is shallow-copied)."""
        fields = dict(
            body=self.body.copy(), hands=self.hands.copy(), face=self.face.copy(),
            fps=self.fps, width=self.width, height=self.height, meta=dict(self.meta),
        )
        fields.update(changes)
        return PoseSequence(**fields)

    def copy(self) -> "PoseSequence":
        return self.replace()

    # -- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.body.shape[0])

    def __getitem__(self, index):
        """``seq[t]`` -> PoseFrame (a copy); ``seq[a:b]`` or an index array -> PoseSequence."""
        if isinstance(index, (int, np.integer)):
            return PoseFrame(self.body[index], self.hands[index], self.face[index])
        return self.replace(body=self.body[index], hands=self.hands[index], face=self.face[index])

    def __iter__(self):
        for t in range(len(self)):
            yield self[t]

    @property
    def duration(self) -> float:
        return len(self) / self.fps

    @property
    def aspect(self) -> float:
        """Width / height of the frames the coordinates refer to."""
        return self.width / self.height

    def frames_with_person(self) -> np.ndarray:
        """Boolean (T,) mask: frames with at least one body point."""
        return present(self.body).any(axis=-1)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def points(arr: np.ndarray) -> list:
            """Nested lists of Python floats (the float32 values exactly), a missing point None;
            converted in one ``tolist`` per part (a loop over points took ~0.4 ms a frame)."""
            rows = arr.tolist()
            for index in np.argwhere(~present(arr)).tolist():
                *outer, last = index
                inner = rows
                for i in outer:
                    inner = inner[i]
                inner[last] = None
            return rows

        body, hands, face = points(self.body), points(self.hands), points(self.face)
        frames = [{"body": body[t], "hands": hands[t], "face": face[t]} for t in range(len(self))]
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "fps": float(self.fps),
            "width": self.width,
            "height": self.height,
            "num_frames": len(self),
            "layout": {
                "coordinates": "x, y normalised to width, height",
                "body": "coco18: x, y, confidence",
                "hands": {"order": list(HAND_SIDES), "points": "openpose21: x, y, z, confidence"},
                "face": "ibug68: x, y, confidence",
                "missing": "null",
            },
            "meta": _json_safe(self.meta),
            "frames": frames,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PoseSequence":
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ValueError(f"not a {FORMAT_NAME} file (missing 'format': '{FORMAT_NAME}')")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{FORMAT_NAME} version {version} is not supported by this version of the app "
                f"(it reads version {FORMAT_VERSION}); re-extract the poses"
            )
        frames = data["frames"]
        seq = cls.empty(len(frames), data["fps"], data["width"], data["height"], data.get("meta"))

        def fill(dst: np.ndarray, rows: list) -> None:
            if len(rows) != dst.shape[0]:
                raise ValueError(f"expected {dst.shape[0]} points, got {len(rows)}")
            for i, p in enumerate(rows):
                if p is not None:
                    dst[i] = p

        for t, fr in enumerate(frames):
            fill(seq.body[t], fr["body"])
            for h in range(2):
                fill(seq.hands[t, h], fr["hands"][h])
            fill(seq.face[t], fr["face"])
        return seq

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PoseSequence":
        from ..errors import SteadyDancerInputError

        try:
            data = json.loads(Path(path).read_text())
            return cls.from_dict(data)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SteadyDancerInputError(
                f"Could not read poses from {Path(path).name}: {exc}. Use a poses.json written by "
                "`python -m steadydancer pose` (or the app's download), or pass the video instead."
            ) from exc


def _json_safe(value):
    """Meta as plain JSON (numpy scalars/arrays -> python, NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
