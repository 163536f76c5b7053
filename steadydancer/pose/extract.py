"""Whole-body pose extraction with mediapipe Holistic (legacy solution API, bundled models, CPU).

One :class:`PoseExtractor` wraps one ``mediapipe.solutions.holistic.Holistic`` graph and turns its
landmarks into a :class:`~steadydancer.pose.sequence.PoseFrame` (COCO-18 body, two 21-point hands,
68-point face, coordinates normalised to the frame).

Models: only ``model_complexity=1`` (``pose_landmark_full``) ships inside the mediapipe wheel;
complexity 0 and 2 would be *downloaded* by mediapipe on first use, so they are not offered.
The graph reads pose_detection, pose_landmark_full, hand_recrop, hand_landmark_full,
face_detection_short_range and face_landmark (.tflite), all inside the wheel
(:func:`check_bundled_models` verifies this before a graph is built); nothing is fetched.

Mapping
    * Body: mediapipe's 33 points -> COCO-18 by :data:`BODY_FROM_MEDIAPIPE` (eyes are mediapipe's
      eye centres 2/5, ears 7/8). The neck is the midpoint of the shoulders, present only when
      both shoulders are; its confidence is the smaller of theirs.
    * Confidence of a body point is mediapipe's ``visibility`` (the model's probability that the
      point is in the frame and not occluded). A point below :data:`VISIBILITY_THRESHOLD` (0.3,
      the threshold OpenPose/DWPose draw with) is *missing* (NaN, confidence 0). The
      ``presence`` score is not used: the legacy Holistic API clears it, and near the frame
      border it contradicts the coordinates (hips at y = 0.96 with presence 0.08).
    * Hands: mediapipe's 21 hand points are in OpenPose order already; ``z`` (depth relative to
      the wrist, in units of about the image width) is kept in ``hands[..., 2]``. Holistic only
      returns a hand that passed its own hand-presence gate and gives no per-point score, so every
      point of a returned hand has confidence 1.
    * Face: the 468-point mesh -> iBUG 68 by :data:`~steadydancer.pose.face68.FACE68_FROM_MESH`;
      confidence 1 for a returned face (same reason as hands).
    * Left/right: mediapipe's pose "left" (11, 13, 15, ...) and Holistic's ``left_hand_landmarks``
      are the *person's* left in the non-mirrored image -- the same convention as COCO-18 and
      ours (checked on examples/astronaut.png, who faces the camera: mediapipe's left shoulder is
      on the image's right; and on a real clip, ``left_hand_landmarks`` sits at pose point 15).
      So no swap is applied.
    * Coordinates are mediapipe's normalised ones (x / W, y / H of the detection image, which is
      the whole frame downscaled, so they are also x / W, y / H of the original frame). Points
      outside [0, 1] are kept as given (mediapipe extrapolates a limb that leaves the frame;
      its visibility is then usually low and the threshold removes it). Nothing is clamped.

Holistic follows one person (the most prominent one it detects), re-detecting when it loses
them. Its landmark filters assume frames 1/30 s apart (the legacy API fixes the timestamps); the
pose path resamples clips to 16 fps and smooths again later (``repair.smooth_sequence``).

Speed (measured by ``benchmarks/pose_path.py``): Holistic's models run on fixed-size crops
(pose 256 px, hands 224 px, face 192 px), so its CPU time (about 28 ms a frame here: pose 13,
two hands 12-14, face 3) hardly depends on the input size; downscaling the frame saves decoding
and copying (ffmpeg: 8 ms a frame at 640 px, 13 ms at 960 px for a 720x1280 clip). At 640 px the
landmarks stay within about 2 px (median, on the 1280-px side) of a full-resolution detection and
are no jitterier, so videos are detected at :data:`VIDEO_DETECT_MAX_SIDE`.

Pipelining: the legacy ``Holistic.process`` sends one frame and waits until the whole graph is
idle, so one graph keeps only about 1.35 cores busy. :meth:`PoseExtractor.detect_batch` sends up
to :data:`PIPELINE_FRAMES` consecutive frames before it waits: the graph then works on the hands
and face of one frame while the pose of the next is computed. Each calculator still sees every
timestamp in order, with the same inputs and the same (simulated 30 fps) timestamps as
``process``, so the landmarks are *identical* to calling ``process`` frame by frame
(``tests/test_extract.py`` compares them exactly); only the waiting goes. One pipelined graph is
about 0.85x the wall time of the bare ``process`` loop and uses about 1.5 cores.

Workers: :func:`extract_sequence` runs one pipelined graph per worker thread (mediapipe releases
the GIL while its graph runs) on contiguous segments of the clip, and decodes/resizes in the
calling thread meanwhile. With two cores one graph already fills them, so the default is one
worker per two cores (at most 2). Each segment after the first starts :data:`WARMUP_FRAMES`
frames early, and over those frames the result cross-fades from the ending segment's tracker to
the new one: two trackers disagree by a few pixels (each result depends on its own history:
median 5 px, up to ~15 px on a 1280-px frame), and the cross-fade spreads that over the warm-up
frames instead of a jump at the seam. With one worker there is no seam: the poses are exactly
the bare detector's.
"""

from __future__ import annotations

import importlib
import math
import os
import queue
import sys
import threading
import types
from bisect import bisect_right
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from ..constants import MODEL_FPS
from ..errors import SteadyDancerInputError
from .face68 import FACE68_FROM_MESH
from .sequence import PoseFrame, PoseSequence, empty_points, present
from .skeleton import BODY, LEFT_HAND, RIGHT_HAND

Progress = Optional[Callable[[float, str], None]]

DETECTOR = "mediapipe-holistic"
#: pose_landmark_full: the only pose model inside the wheel (0 and 2 are downloaded on demand).
MODEL_COMPLEXITY = 1
#: mediapipe visibility below which a body point counts as missing.
VISIBILITY_THRESHOLD = 0.3
#: Longer side of video frames handed to mediapipe (frames are never upscaled).
VIDEO_DETECT_MAX_SIDE = 640
#: Longer side for the single character image (speed does not matter there; detail does).
IMAGE_DETECT_MAX_SIDE = 1280
#: Frames a segment after the first is started early with, to settle tracking at the seam.
WARMUP_FRAMES = 16
#: A clip is split over workers only if every segment gets at least this many frames.
MIN_SEGMENT_FRAMES = 32
#: Decoded frames waiting for a detector are held in memory up to about this many bytes.
FRAME_BUFFER_BYTES = 256 * 2**20
#: Frames a tracking graph is sent before it is waited for (see "Pipelining" above): 16 gets
#: nearly all of the gain of sending the whole clip (1.46 s vs 1.44 s for 81 frames; 4: 1.52 s,
#: one at a time as ``process`` does: 1.70 s) and keeps Cancel within a third of a second.
PIPELINE_FRAMES = 16
#: mediapipe's legacy solutions stamp frame ``k`` at ``k * 33333`` us (a simulated 30 fps video).
_FRAME_INTERVAL_US = 33333

#: (COCO-18 name, mediapipe pose index). mediapipe's left/right are the person's, like ours.
BODY_FROM_MEDIAPIPE = (
    ("nose", 0),
    ("right_shoulder", 12), ("right_elbow", 14), ("right_wrist", 16),
    ("left_shoulder", 11), ("left_elbow", 13), ("left_wrist", 15),
    ("right_hip", 24), ("right_knee", 26), ("right_ankle", 28),
    ("left_hip", 23), ("left_knee", 25), ("left_ankle", 27),
    ("right_eye", 5), ("left_eye", 2),  # eye centres (1/3 and 4/6 are the eye corners)
    ("right_ear", 8), ("left_ear", 7),
)
_BODY_DST = np.array([BODY[name] for name, _ in BODY_FROM_MEDIAPIPE])
_BODY_SRC = np.array([index for _, index in BODY_FROM_MEDIAPIPE])
_FACE_SRC = np.array(FACE68_FROM_MESH)
_BODY_USED = sorted(set(_BODY_SRC.tolist()))
_FACE_USED = sorted(set(FACE68_FROM_MESH))

#: Files (relative to the mediapipe package) the Holistic CPU graph opens.
BUNDLED_MODELS = (
    "modules/holistic_landmark/holistic_landmark_cpu.binarypb",
    "modules/pose_detection/pose_detection.tflite",
    "modules/pose_landmark/pose_landmark_full.tflite",
    "modules/holistic_landmark/hand_recrop.tflite",
    "modules/hand_landmark/hand_landmark_full.tflite",
    "modules/face_detection/face_detection_short_range.tflite",
    "modules/face_landmark/face_landmark.tflite",
)
_REFINED_FACE_MODEL = "modules/face_landmark/face_landmark_with_attention.tflite"


# ----------------------------------------------------------------------------------------------
# mediapipe landmarks -> our arrays (pure functions)
# ----------------------------------------------------------------------------------------------


def body_from_mediapipe(landmarks: np.ndarray | None,
                        visibility_threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """mediapipe pose landmarks (33, 4) ``x, y, z, visibility`` -> COCO-18 body (18, 3)
    ``x, y, confidence``; points below the threshold (and everything, for ``None``) missing."""
    body = empty_points((), "body")
    if landmarks is None:
        return body
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape[0] < 33 or landmarks.shape[1] < 4:
        raise ValueError(f"expected mediapipe pose landmarks of shape (33, 4), got {landmarks.shape}")
    conf = landmarks[_BODY_SRC, 3]
    keep = np.isfinite(landmarks[_BODY_SRC, :2]).all(axis=1) & (conf >= visibility_threshold)
    body[_BODY_DST[keep], :2] = landmarks[_BODY_SRC[keep], :2]
    body[_BODY_DST[keep], 2] = conf[keep]
    shoulders = body[[BODY["right_shoulder"], BODY["left_shoulder"]]]
    if np.isfinite(shoulders[:, :2]).all():
        body[BODY["neck"], :2] = shoulders[:, :2].mean(axis=0)
        body[BODY["neck"], 2] = shoulders[:, 2].min()
    return body


def hand_from_mediapipe(landmarks: np.ndarray | None) -> np.ndarray:
    """mediapipe hand landmarks (21, 3) ``x, y, z`` -> one hand (21, 4) ``x, y, z, confidence``.
    The point order is OpenPose's already (wrist, then thumb..little finger base to tip)."""
    if landmarks is None:
        return empty_points((), "hands")[0]
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape != (21, 3):
        raise ValueError(f"expected mediapipe hand landmarks of shape (21, 3), got {landmarks.shape}")
    return np.concatenate([landmarks, np.ones((21, 1), np.float32)], axis=1)


def face_from_mediapipe(landmarks: np.ndarray | None) -> np.ndarray:
    """mediapipe face mesh (468 or 478, 3) -> iBUG 68 points (68, 3) ``x, y, confidence``."""
    face = empty_points((), "face")
    if landmarks is None:
        return face
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape[0] < 468:
        raise ValueError(f"expected the 468-point mediapipe face mesh, got {landmarks.shape[0]} points")
    face[:, :2] = landmarks[_FACE_SRC, :2]
    face[:, 2] = 1.0
    return face


def _landmark_array(landmark_list, fields: tuple[str, ...], size: int, used=None) -> np.ndarray | None:
    """A mediapipe ``NormalizedLandmarkList`` -> (size, len(fields)) float32; only the ``used``
    rows are read from the protobuf (the others stay NaN): reading all 468 face points would
    cost more than the rest of the conversion."""
    if landmark_list is None:
        return None
    points = landmark_list.landmark
    if len(points) < size:
        raise ValueError(f"expected {size} landmarks, got {len(points)}")
    out = np.full((size, len(fields)), np.nan, dtype=np.float32)
    for i in range(size) if used is None else used:
        p = points[i]
        out[i] = [getattr(p, f) for f in fields]
    return out


def pose_frame_from_holistic(results, visibility_threshold: float = VISIBILITY_THRESHOLD) -> PoseFrame:
    """A ``Holistic.process`` result -> :class:`PoseFrame` (hand 0 = the person's left)."""
    hands = empty_points((), "hands")
    for side, landmarks in ((LEFT_HAND, results.left_hand_landmarks), (RIGHT_HAND, results.right_hand_landmarks)):
        hands[side] = hand_from_mediapipe(_landmark_array(landmarks, ("x", "y", "z"), 21))
    pose = _landmark_array(results.pose_landmarks, ("x", "y", "z", "visibility"), 33, _BODY_USED)
    face = _landmark_array(results.face_landmarks, ("x", "y", "z"), 468, _FACE_USED)
    return PoseFrame(body=body_from_mediapipe(pose, visibility_threshold), hands=hands,
                     face=face_from_mediapipe(face))


def blend_poses(a: PoseFrame, b: PoseFrame, weight: float) -> PoseFrame:
    """``(1 - weight) * a + weight * b`` point by point (coordinates, z and confidence); a point
    present in only one of the two is taken from that one."""
    parts = {}
    for part in ("body", "hands", "face"):
        pa, pb = getattr(a, part), getattr(b, part)
        in_a, in_b = present(pa), present(pb)
        out = np.where(in_a[..., None], pa, pb)
        both = in_a & in_b
        out[both] = (1.0 - weight) * pa[both] + weight * pb[both]
        parts[part] = out
    return PoseFrame(**parts)


# ----------------------------------------------------------------------------------------------
# The extractor
# ----------------------------------------------------------------------------------------------


_MEDIAPIPE_IMPORT = threading.Lock()


class _ModuleOnFirstUse(types.ModuleType):
    """Stands in for a module nobody here uses: the real one is imported on the first read of a
    public attribute (``importlib.import_module``), and that attribute returned."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__spec__ = None  # the import system reads it: no load for that

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):  # introspection (``__file__``, ``__path__``...): no load
            raise AttributeError(attribute)
        with _MEDIAPIPE_IMPORT:  # another thread read it while mediapipe imports: the stand-in is gone after
            pass
        return getattr(importlib.import_module(self.__name__), attribute)


def import_mediapipe():
    """``mediapipe``, imported without loading ``matplotlib.pyplot``.

    mediapipe's package imports its drawing helpers (``solutions.drawing_utils``), which import
    pyplot for a plotting function this project never calls: about 0.14 s of the package's 0.4 s
    import (``python -X importtime``), paid by every process that detects a pose. While mediapipe
    is imported, ``sys.modules`` holds a stand-in for pyplot (:class:`_ModuleOnFirstUse`); it is
    removed afterwards, so any other ``import matplotlib.pyplot`` gets the real module, and the
    drawing helpers get it too if they are ever used (``tests/test_extract.py``)."""
    with _MEDIAPIPE_IMPORT:
        if "mediapipe" in sys.modules or "matplotlib.pyplot" in sys.modules:
            import mediapipe

            return mediapipe
        stand_in = _ModuleOnFirstUse("matplotlib.pyplot")
        sys.modules["matplotlib.pyplot"] = stand_in
        try:
            import mediapipe
        finally:
            if sys.modules.get("matplotlib.pyplot") is stand_in:
                del sys.modules["matplotlib.pyplot"]
        return mediapipe


def check_bundled_models(refine_face_landmarks: bool = False) -> Path:
    """Make sure every model file the Holistic graph reads is inside the installed mediapipe
    (so that nothing is downloaded); returns the mediapipe package directory."""
    mediapipe = import_mediapipe()

    root = Path(mediapipe.__file__).resolve().parent
    needed = BUNDLED_MODELS + ((_REFINED_FACE_MODEL,) if refine_face_landmarks else ())
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        raise RuntimeError(
            f"mediapipe {getattr(mediapipe, '__version__', '?')} at {root} lacks its bundled models "
            f"{', '.join(missing)}; reinstall mediapipe==0.10.21 (the models ship inside the wheel)."
        )
    return root


def detector_version() -> str:
    mediapipe = import_mediapipe()

    return str(getattr(mediapipe, "__version__", "unknown"))


def detection_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) an image of ``width x height`` is detected at: longer side at most ``max_side``,
    aspect kept, never upscaled."""
    if not max_side or max(width, height) <= max_side:
        return int(width), int(height)
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_frame(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Check an RGB frame (H, W, 3) uint8 and downscale it (INTER_AREA) to the detection size.
    Touches no mediapipe state, so it can run in another thread than the detector."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            "expected an RGB image as a (H, W, 3) uint8 array, got "
            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
        )
    h, w = image.shape[:2]
    size = detection_size(w, h, max_side)
    if size != (w, h):
        import cv2

        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def detector_meta(*, static_image_mode: bool, detect_max_side: int | None,
                  visibility_threshold: float = VISIBILITY_THRESHOLD, refine_face_landmarks: bool = False,
                  min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> dict:
    """What produces the poses, for ``PoseSequence.meta``."""
    return {
        "detector": DETECTOR,
        "detector_version": detector_version(),
        "model_complexity": MODEL_COMPLEXITY,
        "tracking": not static_image_mode,
        "refine_face_landmarks": bool(refine_face_landmarks),
        "min_detection_confidence": float(min_detection_confidence),
        "min_tracking_confidence": float(min_tracking_confidence),
        "visibility_threshold": float(visibility_threshold),
        "detect_max_side": detect_max_side,
    }


class PoseExtractor:
    """One mediapipe Holistic graph, reused for every image it is called on.

    ``static_image_mode=False`` tracks across calls (consecutive video frames: the person is
    detected once, then followed from the previous landmarks, and landmarks are filtered over
    time); ``True`` detects every image from scratch (the character photo). Not thread-safe: use
    one extractor per thread. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, *, static_image_mode: bool, detect_max_side: int | None = VIDEO_DETECT_MAX_SIDE,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 visibility_threshold: float = VISIBILITY_THRESHOLD, refine_face_landmarks: bool = False,
                 smooth_landmarks: bool = True):
        if detect_max_side is not None and detect_max_side < 32:
            raise ValueError(f"detect_max_side must be at least 32 pixels, got {detect_max_side}")
        check_bundled_models(refine_face_landmarks)
        from mediapipe.python.solutions import holistic

        self.static_image_mode = bool(static_image_mode)
        self.detect_max_side = detect_max_side
        self.visibility_threshold = float(visibility_threshold)
        self.refine_face_landmarks = bool(refine_face_landmarks)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self._holistic = holistic.Holistic(
            static_image_mode=self.static_image_mode,
            model_complexity=MODEL_COMPLEXITY,
            smooth_landmarks=smooth_landmarks,
            enable_segmentation=False,
            refine_face_landmarks=self.refine_face_landmarks,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=self.min_tracking_confidence,
        )
        # Outputs kept by timestamp as well, so several frames can be in the graph at once.
        self._outputs = _TimestampedOutputs()
        self._holistic._graph_outputs = self._outputs
        self.last_detect_size: tuple[int, int] | None = None

    # -- steps ------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """:func:`prepare_frame` at this extractor's detection size."""
        return prepare_frame(image, self.detect_max_side)

    def detect(self, prepared: np.ndarray) -> PoseFrame:
        """Run the graph on an image from :meth:`prepare` (or already small enough)."""
        return self.detect_batch([prepared])[0]

    def detect_batch(self, prepared: Sequence[np.ndarray]) -> list[PoseFrame]:
        """Poses of consecutive frames from :meth:`prepare`, sent to the graph together and waited
        for once (see "Pipelining" in the module docstring): the same landmarks as calling
        ``Holistic.process`` on each in turn, with the same timestamps, in less time.

        This drives the graph of mediapipe's ``SolutionBase`` (``_graph``, ``_make_packet``,
        ``_input_stream_type_info``, ``_output_stream_type_info``, ``_get_packet_content``,
        ``_simulated_timestamp``, ``_graph_outputs``) the way its ``process`` does, minus the
        wait after each frame; mediapipe is pinned to 0.10.21 and ``tests/test_extract.py``
        checks both these names and that the poses equal ``process``'s exactly."""
        holistic = self._holistic
        if holistic is None:
            raise RuntimeError("this PoseExtractor is closed")
        if not prepared:
            return []
        (stream, kind), = holistic._input_stream_type_info.items()
        stamps = []
        for image in prepared:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
            holistic._simulated_timestamp += _FRAME_INTERVAL_US
            stamps.append(holistic._simulated_timestamp)
            holistic._graph.add_packet_to_input_stream(
                stream=stream, packet=holistic._make_packet(kind, image).at(stamps[-1]))
        holistic._graph.wait_until_idle()
        last = prepared[-1]
        self.last_detect_size = (int(last.shape[1]), int(last.shape[0]))
        types = holistic._output_stream_type_info
        poses = []
        for stamp in stamps:
            packets = self._outputs.take(stamp)
            results = SimpleNamespace(**{
                name: holistic._get_packet_content(kind_, packets[name]) if name in packets else None
                for name, kind_ in types.items()
            })
            poses.append(pose_frame_from_holistic(results, self.visibility_threshold))
        return poses

    def __call__(self, image: np.ndarray) -> PoseFrame:
        """Pose of one RGB frame (H, W, 3) uint8, normalised to that frame."""
        return self.detect(self.prepare(image))

    def reset(self) -> None:
        """Forget the tracked person and the landmark filters (start of an unrelated clip): the
        graph's run is closed and a new one started (its calculators are made anew), which tracks
        the next frames exactly as a new extractor would (``tests/test_extract.py``)."""
        if self._holistic is not None:
            self._holistic.reset()
            self._outputs.clear()

    def describe(self) -> dict:
        """What produced the poses (stored in ``PoseSequence.meta``)."""
        meta = detector_meta(
            static_image_mode=self.static_image_mode, detect_max_side=self.detect_max_side,
            visibility_threshold=self.visibility_threshold, refine_face_landmarks=self.refine_face_landmarks,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=self.min_tracking_confidence,
        )
        meta["detect_size"] = list(self.last_detect_size) if self.last_detect_size else None
        return meta

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None

    def __enter__(self) -> "PoseExtractor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self, _finalizing=sys.is_finalizing):
        # A forgotten close() must not leak the graph's threads -- except while the interpreter
        # shuts down: closing a graph then waits for graph threads that need the GIL to deliver
        # their last outputs, and the process hung (measured); the OS reclaims the graph anyway.
        if _finalizing():
            return
        try:
            self.close()
        except Exception:
            pass


class _TimestampedOutputs(dict):
    """The ``_graph_outputs`` of a mediapipe solution, keeping every output packet by its
    timestamp as well: ``SolutionBase``'s stream observers store ``outputs[stream] = packet``
    (the latest packet only), which is enough for one frame at a time but not for several in
    flight. Observers run on the graph's threads; a dict assignment is atomic under the GIL."""

    def __init__(self):
        super().__init__()
        self.by_stamp: dict[int, dict[str, object]] = {}

    def __setitem__(self, stream: str, packet) -> None:
        super().__setitem__(stream, packet)
        self.by_stamp.setdefault(packet.timestamp.value, {})[stream] = packet

    def take(self, stamp: int) -> dict[str, object]:
        """The packets of one timestamp (forgotten here)."""
        return self.by_stamp.pop(stamp, {})

    def clear(self) -> None:
        super().clear()
        self.by_stamp.clear()


# ----------------------------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------------------------


def _as_rgb_array(image) -> np.ndarray:
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 4:  # RGBA: the colour channels (image.py composites)
        return np.ascontiguousarray(arr[..., :3])
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")


def extract_image_pose(image, *, detect_max_side: int | None = IMAGE_DETECT_MAX_SIDE,
                       visibility_threshold: float = VISIBILITY_THRESHOLD) -> PoseFrame:
    """Pose of the character photo (a PIL image or an RGB uint8 array), detected from scratch on
    a new graph (a graph that saw an image before can answer differently for the face, even in
    static mode; see :meth:`PoseExtractor.reset`).

    Raises:
        SteadyDancerInputError: no body point was found.
    """
    arr = _as_rgb_array(image)
    with PoseExtractor(static_image_mode=True, detect_max_side=detect_max_side,
                       visibility_threshold=visibility_threshold) as extractor:
        pose = extractor(arr)
    if not pose.has_person:
        raise SteadyDancerInputError(
            "No person found in the character image. Use a photo in which one person is clearly "
            "visible (at least the head and shoulders, ideally the whole body), facing the camera."
        )
    return pose


# ----------------------------------------------------------------------------------------------
# A sequence of frames
# ----------------------------------------------------------------------------------------------


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_workers(cores: int | None = None) -> int:
    """Tracking workers for ``cores`` cores: one pipelined graph keeps about 1.5 cores busy and
    the decoder needs some too, so one per two cores, at most 2 (a second worker costs a seam
    and :data:`WARMUP_FRAMES` extra detections; measured on 2 cores, two workers took 1.09x the
    bare detector's time where one pipelined worker takes about 0.9x)."""
    cores = available_cores() if cores is None else int(cores)
    return max(1, min(2, cores // 2))


def plan_segments(num_frames: int | None, workers: int, max_segment: int | None = None) -> list[int]:
    """Start frames of the contiguous segments a clip is split into (``[0]``: one segment).

    Splits only when the length is known and every one of ``workers`` segments gets at least
    :data:`MIN_SEGMENT_FRAMES`; segments are no longer than ``max_segment`` (memory), so a long
    clip has more segments than workers (handed out round-robin)."""
    if not num_frames or workers <= 1 or num_frames < workers * MIN_SEGMENT_FRAMES:
        return [0]
    count = workers
    if max_segment:
        count = max(count, math.ceil(num_frames / max(max_segment, MIN_SEGMENT_FRAMES)))
    length = math.ceil(num_frames / count)
    return [k * length for k in range(count) if k * length < num_frames]


class _Worker(threading.Thread):
    """A detector thread with its own tracking :class:`PoseExtractor`. Its inbox holds
    ``(index, image, warmup, restart)`` items and ends with ``None``; every item taken releases
    one unit of the shared frame budget, also after an error (then it only drains its inbox).
    Queued items are detected in batches (:meth:`_batches`, :meth:`PoseExtractor.detect_batch`).
    Poses go to ``results[index]``, or to ``warmup_results[index]`` for warm-up frames."""

    def __init__(self, options: dict, results: dict, warmup_results: dict, budget: threading.Semaphore,
                 abort: threading.Event, counter: "_Counter"):
        super().__init__(daemon=True, name="pose-detector")
        self.inbox: "queue.Queue" = queue.Queue()
        self.options, self.results, self.warmup_results = options, results, warmup_results
        self.budget, self.abort, self.counter = budget, abort, counter
        self.error: BaseException | None = None

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.abort.set()

    def run(self) -> None:
        extractor = None
        try:
            extractor = PoseExtractor(static_image_mode=False, **self.options)
        except BaseException as exc:
            self._fail(exc)
        used = False
        for batch in self._batches():
            try:
                if extractor is None or self.abort.is_set():
                    continue
                if batch[0][3] and used:
                    extractor.reset()  # a new segment: track it from scratch
                poses = extractor.detect_batch([image for _, image, _, _ in batch])
                used = True
                for (index, _, warmup, _), pose in zip(batch, poses):
                    if warmup:
                        self.warmup_results[index] = pose
                    else:
                        self.results[index] = pose
                        self.counter.add()
            except BaseException as exc:
                self._fail(exc)
            finally:
                for _ in batch:
                    self.budget.release()
        if extractor is not None:
            extractor.close()

    def _batches(self) -> Iterator[list]:
        """The inbox in batches for :meth:`PoseExtractor.detect_batch`: the next item (waited
        for) plus whatever else is already queued, up to :data:`PIPELINE_FRAMES`; a segment's
        first item (a tracker restart) always starts a new batch. Ends at the ``None`` item."""
        held = None
        while True:
            item = held if held is not None else self.inbox.get()
            held = None
            if item is None:
                return
            batch, end = [item], False
            while len(batch) < PIPELINE_FRAMES:
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    end = True
                    break
                if item[3]:
                    held = item
                    break
                batch.append(item)
            yield batch
            if end:
                return


class _Counter:
    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


class _Aborted(Exception):
    """A worker failed while the feeder was waiting for it: stop feeding."""


def extract_sequence(frames: Iterable[np.ndarray], *, fps: float, width: int, height: int,
                     num_frames: int | None = None, progress: Progress = None, workers: int | None = None,
                     detect_max_side: int | None = VIDEO_DETECT_MAX_SIDE,
                     visibility_threshold: float = VISIBILITY_THRESHOLD) -> PoseSequence:
    """Poses of consecutive RGB frames (H, W, 3) uint8, tracking the person from frame to frame.

    Args:
        frames: the clip's frames in order (any size; coordinates are normalised, so frames
            already downscaled by the decoder are fine). Consumed once, in the calling thread,
            while the detector threads work; a generator is closed when done or on error.
        fps, width, height: the sequence's frame rate and the pixel size its coordinates refer to.
        num_frames: expected number of frames (default ``len(frames)`` if it has one): needed to
            split the clip over workers and for progress fractions; a wrong estimate only moves
            the seams.
        progress: ``progress(fraction, message)``, always called from the calling thread.
        workers: detector threads, each tracking its own contiguous segment with a pipelined
            graph. ``None``: :func:`default_workers` (one on two cores); a clip too short for
            :data:`MIN_SEGMENT_FRAMES` per worker uses one.

    Returns:
        A :class:`PoseSequence`; ``meta`` records the detector and its settings, the detection
        size, ``frames_with_person``, the workers and the segment starts.
    """
    if num_frames is None and hasattr(frames, "__len__"):
        num_frames = len(frames)  # type: ignore[arg-type]
    workers = max(1, int(workers if workers is not None else default_workers()))
    options = dict(detect_max_side=detect_max_side, visibility_threshold=visibility_threshold)

    results: dict[int, PoseFrame] = {}
    warmup_results: dict[int, PoseFrame] = {}
    abort = threading.Event()
    done = _Counter()
    pool: list[_Worker] = []
    starts = [0]
    budget: threading.Semaphore | None = None
    detect_size = None
    fed = 0
    reported = [-1]

    def report() -> None:
        if progress is None or done.value == reported[0]:
            return
        reported[0] = n = done.value
        total = max(num_frames or 0, fed)
        progress(min(1.0, n / total) if total else 0.0,
                 f"detecting poses: frame {n}" + (f" of {total}" if num_frames else ""))

    def send(worker: _Worker, item) -> None:
        while not budget.acquire(timeout=0.1):
            if abort.is_set():
                raise _Aborted
            report()
        worker.inbox.put(item)

    iterator = iter(frames)
    try:
        for index, frame in enumerate(iterator):
            if abort.is_set():
                break
            image = prepare_frame(frame, detect_max_side)
            if budget is None:  # first frame: its size sets the memory budget; plan the work
                detect_size = (int(image.shape[1]), int(image.shape[0]))
                budget_frames = max(4 * WARMUP_FRAMES, FRAME_BUFFER_BYTES // max(1, image.nbytes))
                starts = plan_segments(num_frames, workers, budget_frames - 2 * WARMUP_FRAMES)
                budget = threading.Semaphore(budget_frames)
                pool = [_Worker(options, results, warmup_results, budget, abort, done)
                        for _ in range(min(workers, len(starts)))]
                for worker in pool:
                    worker.start()
            seg = bisect_right(starts, index) - 1
            # a segment's tracker restarts on its first frame: the first warm-up frame, if any
            first_of_segment = index == starts[seg] and (seg == 0 or WARMUP_FRAMES == 0)
            send(pool[seg % len(pool)], (index, image, False, first_of_segment))
            nxt = seg + 1
            if nxt < len(starts) and index >= starts[nxt] - WARMUP_FRAMES:
                # the next segment's tracker starts early on these frames (cross-faded in below)
                send(pool[nxt % len(pool)], (index, image, True, index == starts[nxt] - WARMUP_FRAMES))
            fed = index + 1
            report()
    except _Aborted:
        pass
    except BaseException:
        abort.set()
        raise
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # stops a decoder (e.g. ffmpeg behind iter_video_frames) we did not exhaust
        for worker in pool:
            worker.inbox.put(None)
        for worker in pool:
            while worker.is_alive():
                worker.join(timeout=0.1)
                if not abort.is_set():
                    try:
                        report()
                    except BaseException:  # the caller stops the work (Cancel, client gone):
                        abort.set()  # the workers skip the frames still queued
                        raise
    for worker in pool:
        if worker.error is not None:
            raise worker.error

    poses = [results[i] for i in range(fed)]
    for start in starts[1:]:
        # Cross-fade from the ending segment's poses to the warm-up poses of the next one over
        # the warm-up frames, so the seam shows no jump where the two trackers disagree.
        for k, index in enumerate(range(max(0, start - WARMUP_FRAMES), min(start, fed))):
            if index in warmup_results:
                weight = (k + 1) / (WARMUP_FRAMES + 1)
                poses[index] = blend_poses(poses[index], warmup_results[index], weight)
    meta = detector_meta(static_image_mode=False, detect_max_side=detect_max_side,
                         visibility_threshold=visibility_threshold)
    meta.update(
        detect_size=list(detect_size) if detect_size else None,
        num_frames=fed,
        frames_with_person=int(sum(pose.has_person for pose in poses)),
        workers=len(pool),
        segment_starts=list(starts),
        warmup_frames=WARMUP_FRAMES if len(starts) > 1 else 0,
    )
    seq = PoseSequence.from_frames(poses, fps=fps, width=width, height=height, meta=meta)
    if progress is not None:
        progress(1.0, f"detected poses in {fed} frames")
    return seq


# ----------------------------------------------------------------------------------------------
# A video file
# ----------------------------------------------------------------------------------------------


def detection_frames(path, *, fps: float = MODEL_FPS, max_frames: int | None = None,
                     detect_max_side: int | None = VIDEO_DETECT_MAX_SIDE, info=None) -> Iterator[np.ndarray]:
    """The frames :func:`extract_video_poses` hands to the detector: ``path`` decoded by ffmpeg,
    resampled to ``fps`` (0: every source frame), at most ``max_frames``, downscaled to the
    detection size. The one definition of that decode, so frames decoded ahead of the extraction
    (:class:`~steadydancer.pose.path.DecodedClip`) are the very frames it would decode."""
    from ..video import iter_video_frames

    return (vf.frame for vf in iter_video_frames(path, fps=fps, max_frames=max_frames,
                                                 max_side=detect_max_side, info=info))


def extract_video_poses(path, *, fps: float = MODEL_FPS, max_frames: int | None = None, progress: Progress = None,
                        min_person_fraction: float = 0.5, workers: int | None = None,
                        detect_max_side: int | None = VIDEO_DETECT_MAX_SIDE,
                        on_frame: Callable[[int, np.ndarray], None] | None = None,
                        decoded: Iterable[np.ndarray] | None = None) -> PoseSequence:
    """Poses of a driving video resampled to ``fps`` (0: every source frame).

    ffmpeg decodes and downscales to the detection size (:func:`detection_frames`) while the
    detector threads of :func:`extract_sequence` work. Coordinates are normalised to the video's
    display size (rotation applied), which is the sequence's ``width x height``.

    ``on_frame(index, frame)`` sees every decoded frame (at the detection size) before it goes
    to a detector, so a caller can keep what it needs from the one decode (the preview does).

    ``decoded``: this clip's :func:`detection_frames` for these arguments, decoded earlier (the
    app decodes an uploaded clip when it arrives); nothing is decoded here then.

    Raises:
        SteadyDancerInputError: the file cannot be read, or fewer than ``min_person_fraction`` of
            the frames show a person.
    """
    from ..video import probe_video

    path = Path(path)
    info = probe_video(path)
    rate = float(fps) if fps and fps > 0 else float(info.fps or MODEL_FPS)
    if fps and fps > 0:
        expected = math.ceil(info.duration * fps - 1e-6) if info.duration > 0 else None
    else:
        expected = info.num_frames or None
    if max_frames is not None:
        expected = min(expected, max_frames) if expected else max_frames
    if decoded is None:
        decoded = detection_frames(path, fps=fps, max_frames=max_frames, detect_max_side=detect_max_side, info=info)
    if on_frame is not None:
        decoded = _tap(decoded, on_frame)
    seq = extract_sequence(decoded, fps=rate, width=info.width, height=info.height,
                           num_frames=expected, progress=progress, workers=workers,
                           detect_max_side=detect_max_side)
    seq.meta.update(source=path.name, source_fps=info.fps, source_size=[info.width, info.height])
    found = seq.meta["frames_with_person"]
    if len(seq) == 0 or found < min_person_fraction * len(seq):
        raise SteadyDancerInputError(
            f"No person found in most frames of the driving video {path.name}: a person was detected "
            f"in {found} of {len(seq)} frames; at least {min_person_fraction:.0%} are needed. Use a "
            "clip in which one dancer stays in view, or trim the parts without them."
        )
    return seq


def _tap(frames: Iterator[np.ndarray], on_frame: Callable[[int, np.ndarray], None]) -> Iterator[np.ndarray]:
    """``frames`` unchanged, calling ``on_frame(index, frame)`` on each first (closing it closes
    ``frames``: the decoder behind it stops)."""
    try:
        for index, frame in enumerate(frames):
            on_frame(index, frame)
            yield frame
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
