"""Retarget a driving pose sequence onto the character of the reference image.

Two modes share one implementation (the skeleton is data, walked in one loop):

``mode="official"``
    What the official SteadyDancer preprocessing (adapted from MusePose ``pose_align.py``) does
    (design note ``pose_alignment.md``): ten scales measured on ONE driving frame (default 0)
    against the reference, each bone keeps its direction and has its length multiplied by its
    group's scale, then one constant translation (reference neck - driving neck of that frame).
    Facts checked against the official code: eyes *and ears* hang from the nose (not ears from
    eyes); the hands hang from the body wrists; the 68 face points are **not** moved by the
    skeleton walk, only by the final translation. A NaN scale becomes 1, an infinite one the mean
    of the finite ones (the official code means to do this; its replacement is written to a list
    that is then never read, so there it is a no-op -- we do what it means).

``mode="auto"`` (the default)
    The official alignment, unless its *result* is demonstrably broken (see
    :func:`official_failures`: points that come out non-finite, a measured limb scale more than 2x
    off the others, points thrown far off the canvas); then the robust one, with the reasons in
    ``AlignmentInfo.notes``. A group the official rule cannot measure (the legs of a half-body
    photo) is not a failure by itself. Whenever the official result is usable this *is* the
    official result, as the design asks ("default behaviour = the official one").

``mode="robust"``
    The same geometry with the known weaknesses fixed: alignment frames chosen automatically among
    the most complete, plausible early frames; each driving length is a confidence-weighted median
    over those frames; a limb missing on one side is measured on the other side; a group that
    cannot be measured at all (a half-body photo has no legs) borrows the scale of a related group
    (legs <- torso proportions); every group scale is clamped to [0.5, 2] x the median of the
    groups (see :data:`RELATIVE_SCALE_BOUNDS`); the face follows the head; points that end up far
    outside the canvas are dropped instead of being drawn into the void.

Working space (both modes): coordinates are normalised (x / W, y / H); before measuring or moving
anything x is multiplied by that image's W / H so both axes are in units of image height, and at
the end x is divided by the **reference** W / H. The output is normalised to the reference frame
and has the reference's width and height.

A present child whose parent is missing in a frame (the official code would place it relative to
the -1 marker of the missing parent, i.e. anywhere) is placed relative to its nearest present
ancestor with the mean scale of the bones in between; with no present ancestor it is only
translated. Points missing in the driving frame stay missing, and no NaN or inf ever reaches a
present point.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from ..errors import SteadyDancerInputError
from ..settings import ALIGN_MODE
from .sequence import PoseFrame, PoseSequence, present
from .skeleton import BODY, BODY_BONES, HAND_WRIST, NUM_BODY

MODES = tuple(ALIGN_MODE.choices)  # ("auto", "official", "robust")

#: The ten scale groups, in the order the official code lists them.
SCALE_GROUPS = (
    "neck", "face_left", "face_right", "shoulder", "upper_arm", "lower_arm", "hand",
    "torso", "upper_leg", "lower_leg",
)

_B = BODY
_HIPS = (_B["right_hip"], _B["left_hip"])  # a tuple as a segment end = the midpoint of those points

#: How each group's length is measured (lengths in units of image height). A group has one
#: measure, or one per side (the group's ratio is then the mean of the per-side ratios). A measure
#: is a path of segments whose lengths are summed; a segment end is a point index or a tuple of
#: indices (their midpoint). This is what the official code measures -- note it differs from the
#: bone table for the face (ear-eye + eye-nose), the shoulders (shoulder to shoulder) and the
#: torso (neck to the middle of the hips).
MEASURES: dict[str, tuple] = {
    "neck": (((_B["neck"], _B["nose"]),),),
    "face_left": (((_B["left_ear"], _B["left_eye"]), (_B["left_eye"], _B["nose"])),),
    "face_right": (((_B["right_ear"], _B["right_eye"]), (_B["right_eye"], _B["nose"])),),
    "shoulder": (((_B["right_shoulder"], _B["left_shoulder"]),),),
    "upper_arm": (((_B["right_shoulder"], _B["right_elbow"]),),
                  ((_B["left_shoulder"], _B["left_elbow"]),)),
    "lower_arm": (((_B["right_elbow"], _B["right_wrist"]),),
                  ((_B["left_elbow"], _B["left_wrist"]),)),
    "torso": (((_B["neck"], _HIPS),),),
    "upper_leg": (((_B["right_hip"], _B["right_knee"]),), ((_B["left_hip"], _B["left_knee"]),)),
    "lower_leg": (((_B["right_knee"], _B["right_ankle"]),), ((_B["left_knee"], _B["left_ankle"]),)),
}

#: Groups not measured but derived: the mean of other groups' scales. The official code has
#: finger-based hand ratios but disables them (zero iterations), leaving the arm mean.
DERIVED = {"hand": ("upper_arm", "lower_arm")}

#: Robust mode: a group that cannot be measured borrows the scale of the first measurable group
#: here (then the median of all groups). Legs of a half-body photo follow the torso, i.e. the
#: character is given the dancer's leg/torso proportions.
FALLBACKS = {
    "neck": ("face_left", "face_right", "shoulder"),
    "face_left": ("face_right", "neck"),
    "face_right": ("face_left", "neck"),
    "shoulder": ("torso", "upper_arm"),
    "upper_arm": ("lower_arm", "shoulder", "torso"),
    "lower_arm": ("upper_arm", "shoulder", "torso"),
    "torso": ("shoulder", "upper_leg"),
    "upper_leg": ("lower_leg", "torso"),
    "lower_leg": ("upper_leg", "torso"),
}

#: Robust mode: each group's scale is clamped to these multiples of the median group scale.
#: Adult body proportions vary by roughly +-20 % between people, so a group ratio 2x away from
#: the others is a measurement failure (a foreshortened limb, a misdetection), not anatomy.
RELATIVE_SCALE_BOUNDS = (0.5, 2.0)
#: ... and the median itself to these bounds: a character 10x bigger or smaller than the dancer
#: (in units of image height) means one of the two detections is not a whole person.
GLOBAL_SCALE_BOUNDS = (0.1, 10.0)
#: Robust mode: points this far outside the canvas (in units of the canvas side) are dropped.
CANVAS_MARGIN = 0.5
#: Robust mode: points outside the image by more than this are not used to measure lengths
#: (detectors hallucinate off-image limbs with low confidence).
MEASURE_MARGIN = 0.02
#: Robust mode: a measured length below this (units of image height) is treated as unmeasurable.
MIN_LENGTH = 1e-3


@dataclass
class AlignmentInfo:
    """What alignment did. ``offset`` is in units of image height (x in the aspect-corrected space
    before the final division by the reference aspect)."""

    scales: dict[str, float]
    offset: tuple[float, float]
    alignment_frames: list[int]
    mode: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------


def _bone_order() -> tuple[int, tuple]:
    """The root of BODY_BONES and the bones, checked to be parents-before-children."""
    children = [b.child for b in BODY_BONES]
    roots = sorted(set(range(NUM_BODY)) - set(children))
    if len(roots) != 1 or len(set(children)) != len(children):
        raise RuntimeError("BODY_BONES must form a tree over the body points with a single root")
    placed = {roots[0]}
    for bone in BODY_BONES:
        if bone.parent not in placed:
            raise RuntimeError(f"BODY_BONES lists bone {bone} before its parent is placed")
        placed.add(bone.child)
    return roots[0], BODY_BONES


ROOT, _BONES = _bone_order()


def _to_height_units(xy: np.ndarray, aspect: float) -> np.ndarray:
    """Normalised (x/W, y/H) -> both axes in units of image height (float64 copy)."""
    out = np.array(xy, dtype=np.float64)
    out[..., 0] *= aspect
    return out


def _end(xy: np.ndarray, end) -> np.ndarray:
    """Position of a segment end: a point, or the midpoint of a tuple of points. xy: (..., 18, 2)."""
    if isinstance(end, tuple):
        return xy[..., list(end), :].mean(axis=-2)
    return xy[..., end, :]


def _end_conf(conf: np.ndarray, end) -> np.ndarray:
    if isinstance(end, tuple):
        return conf[..., list(end)].min(axis=-1)
    return conf[..., end]


def measure_lengths(xy: np.ndarray, conf: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Lengths of every measure of every group.

    xy: (..., 18, 2) in units of image height (NaN = missing); conf: (..., 18) or None.
    Returns {group: (lengths (..., n_measures), confidence (..., n_measures))}; a length is NaN
    when one of its points is missing; the confidence of a measure is the minimum over its points.
    """
    if conf is None:
        conf = np.ones(xy.shape[:-1])
    out = {}
    for group, measures in MEASURES.items():
        lengths, confs = [], []
        for path in measures:
            total = 0.0
            c = np.inf
            for a, b in path:
                total = total + np.linalg.norm(_end(xy, a) - _end(xy, b), axis=-1)
                c = np.minimum(c, np.minimum(_end_conf(conf, a), _end_conf(conf, b)))
            lengths.append(total)
            confs.append(c)
        out[group] = (np.stack(lengths, axis=-1), np.stack(confs, axis=-1))
    return out


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Median of ``values`` weighted by ``weights`` (non-finite values and zero weights ignored)."""
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return math.nan
    v, w = values[ok], weights[ok]
    order = np.argsort(v)
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    half = cum[-1] / 2.0
    i = int(np.searchsorted(cum, half))
    if i + 1 < len(v) and math.isclose(cum[i], half, rel_tol=1e-9):
        return float((v[i] + v[i + 1]) / 2.0)
    return float(v[i])


def _virtual_neck(xy: np.ndarray) -> np.ndarray:
    """The neck, or the middle of the shoulders where the neck is missing (DWPose defines the
    neck that way). xy: (..., 18, 2)."""
    neck = xy[..., _B["neck"], :]
    mid = (xy[..., _B["right_shoulder"], :] + xy[..., _B["left_shoulder"], :]) / 2.0
    return np.where(np.isfinite(neck).all(axis=-1, keepdims=True), neck, mid)


# ----------------------------------------------------------------------------------------------
# Choosing the alignment frames
# ----------------------------------------------------------------------------------------------


def _bone_lengths(xy: np.ndarray) -> np.ndarray:
    """(T, n_bones) lengths of BODY_BONES (NaN where an end is missing)."""
    parents = [b.parent for b in _BONES]
    children = [b.child for b in _BONES]
    return np.linalg.norm(xy[:, children] - xy[:, parents], axis=-1)


def _frame_scores(driving: PoseSequence, frames: np.ndarray) -> np.ndarray:
    """Score in [0, 1] per frame: mean body confidence (missing = 0) times the fraction of present
    bones whose length is within 1.5x of the window's median length; 0 without a (virtual) neck."""
    body = driving.body[frames]
    ok = present(body)
    conf = np.where(ok, np.clip(np.nan_to_num(body[..., 2], nan=0.0), 0.0, 1.0), 0.0)
    completeness = conf.mean(axis=1)
    xy = _to_height_units(body[..., :2], driving.aspect)
    lengths = _bone_lengths(xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(lengths, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(np.log(lengths / median))
    measured = np.isfinite(deviation)
    implausible = (deviation > math.log(1.5)) & measured
    n_measured = measured.sum(axis=1)
    plausible = 1.0 - implausible.sum(axis=1) / np.maximum(n_measured, 1)
    has_neck = np.isfinite(_virtual_neck(xy)).all(axis=-1)
    return completeness * plausible * has_neck


def choose_alignment_frames(driving: PoseSequence, max_frames: int = 5, search: int = 48) -> list[int]:
    """Pick the frames to measure the driving skeleton on (ascending; the first one also fixes the
    translation).

    Candidates are the first ``search`` frames (the whole clip if none of those shows a person);
    a frame's score is its mean body confidence times the share of its bones whose length agrees
    (within 1.5x) with the median over the window, so a frame with missing limbs or a limb that
    jumped scores low. Frames scoring >= 0.9 x the best are kept; the earliest of them (so the
    video starts where the reference is) plus others spread evenly over the rest, up to
    ``max_frames``. Returns [] when no frame has a person with a neck or both shoulders.
    """
    n = len(driving)
    if n == 0:
        return []
    max_frames = max(1, int(max_frames))
    window = np.arange(min(max(1, int(search)), n))
    scores = _frame_scores(driving, window)
    if not (scores > 0).any() and len(window) < n:
        window = np.arange(n)
        scores = _frame_scores(driving, window)
    best = float(scores.max())
    if best <= 0:
        return []
    candidates = window[scores >= 0.9 * best]
    if len(candidates) <= max_frames:
        return [int(t) for t in candidates]
    picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, max_frames)).astype(int))
    return [int(t) for t in candidates[picks]]


# ----------------------------------------------------------------------------------------------
# Scales
# ----------------------------------------------------------------------------------------------


def _official_fixups(scales: dict[str, float]) -> dict[str, float]:
    """NaN -> 1, then inf -> the mean of the finite scales (1 if none is finite)."""
    scales = {g: (1.0 if math.isnan(v) else float(v)) for g, v in scales.items()}
    finite = [v for v in scales.values() if math.isfinite(v)]
    fill = float(np.mean(finite)) if finite else 1.0
    return {g: (v if math.isfinite(v) else fill) for g, v in scales.items()}


def _inside(xy: np.ndarray, aspect: float, margin: float) -> np.ndarray:
    """Mask of points (height units) lying inside the image, up to ``margin``."""
    x, y = xy[..., 0] / aspect, xy[..., 1]
    return (x >= -margin) & (x <= 1 + margin) & (y >= -margin) & (y <= 1 + margin)


def _scales(reference: PoseFrame, reference_size: tuple[int, int], driving: PoseSequence,
            frames: Sequence[int], mode: str) -> tuple[dict[str, float], list[str]]:
    ref_w, ref_h = _check_size(reference_size)
    ref_aspect = ref_w / ref_h
    frames = [int(t) for t in frames]
    if not frames:
        raise ValueError("compute_scales needs at least one driving frame")
    notes: list[str] = []
    ref_xy = _to_height_units(reference.body[:, :2], ref_aspect)
    ref_conf = np.nan_to_num(reference.body[:, 2], nan=0.0).astype(np.float64)

    if mode == "official":
        raw = _official_ratios(reference, (ref_w, ref_h), driving, frames[0])
        scales = _official_fixups(raw)
        for group in SCALE_GROUPS:
            if not math.isfinite(raw[group]):
                notes.append(f"{group}: not measurable ({raw[group]}), set to {scales[group]:.3g}")
        return {g: scales[g] for g in SCALE_GROUPS}, notes

    if mode != "robust":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    # Robust: points outside the image are not measured (hallucinated off-image limbs).
    ref_xy = np.where(_inside(ref_xy, ref_aspect, MEASURE_MARGIN)[:, None], ref_xy, np.nan)
    drv_body = driving.body[frames]
    drv_xy = _to_height_units(drv_body[..., :2], driving.aspect)
    drv_xy = np.where(_inside(drv_xy, driving.aspect, MEASURE_MARGIN)[..., None], drv_xy, np.nan)
    drv_conf = np.clip(np.nan_to_num(drv_body[..., 2], nan=0.0), 0.0, 1.0).astype(np.float64)
    ref_len = measure_lengths(ref_xy, ref_conf)
    drv_len = measure_lengths(drv_xy, drv_conf)

    measured: dict[str, float] = {}
    for group in MEASURES:
        ref_l = ref_len[group][0]
        ref_l = np.where(ref_l > MIN_LENGTH, ref_l, np.nan)
        lengths, confs = drv_len[group]
        drv_l = np.array([
            _weighted_median(np.where(lengths[:, i] > MIN_LENGTH, lengths[:, i], np.nan),
                             np.maximum(confs[:, i], 1e-3))
            for i in range(lengths.shape[1])
        ])
        same_side = np.isfinite(ref_l) & np.isfinite(drv_l)
        if same_side.any():
            measured[group] = float(np.mean(ref_l[same_side] / drv_l[same_side]))
        elif np.isfinite(ref_l).any() and np.isfinite(drv_l).any():
            measured[group] = float(np.nanmean(ref_l) / np.nanmean(drv_l))
            notes.append(f"{group}: measured across sides (mirrored)")

    if measured:
        global_scale = float(np.median(list(measured.values())))
    else:
        global_scale = 1.0
        notes.append("no body length measurable in both images: all scales set to 1")
    lo, hi = GLOBAL_SCALE_BOUNDS
    if not lo <= global_scale <= hi:
        notes.append(f"median scale {global_scale:.3g} clamped to [{lo}, {hi}]")
        global_scale = float(np.clip(global_scale, lo, hi))

    scales: dict[str, float] = {}
    for group in MEASURES:
        if group in measured:
            value = measured[group]
        else:
            source = next((g for g in FALLBACKS[group] if g in measured), None)
            value = measured[source] if source else global_scale
            notes.append(f"{group}: not measurable, uses the {source or 'median'} scale")
        rlo, rhi = RELATIVE_SCALE_BOUNDS[0] * global_scale, RELATIVE_SCALE_BOUNDS[1] * global_scale
        if not rlo <= value <= rhi:
            notes.append(f"{group}: scale {value:.3g} clamped to [{rlo:.3g}, {rhi:.3g}]")
            value = float(np.clip(value, rlo, rhi))
        scales[group] = value
    for group, parts in DERIVED.items():
        scales[group] = float(np.mean([scales[p] for p in parts]))
    return {g: scales[g] for g in SCALE_GROUPS}, notes


#: ``auto``: a measured group scale this far from the median of the measured groups (the same
#: bounds as robust mode's clamp: proportions vary by about +-20 % between people, so 2x is a
#: measurement failure -- a foreshortened limb, a misdetection -- not anatomy) breaks the result.
AUTO_SCALE_BOUNDS = RELATIVE_SCALE_BOUNDS
#: ``auto``: the result is broken when more than this fraction of its present body and hand points
#: lie more than :data:`CANVAS_MARGIN` (half a canvas) outside the frame.
AUTO_OFF_CANVAS_FRACTION = 0.05


def _official_ratios(reference: PoseFrame, reference_size: tuple[int, int], driving: PoseSequence,
                     frame: int) -> dict[str, float]:
    """The official rule's raw group ratios (mean over the sides of reference / driving length,
    on driving ``frame``), before its NaN -> 1 / inf -> mean fix-ups."""
    ref_w, ref_h = _check_size(reference_size)
    ref_len = measure_lengths(_to_height_units(reference.body[:, :2], ref_w / ref_h))
    drv_len = measure_lengths(_to_height_units(driving.body[frame, :, :2], driving.aspect))
    raw = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for group in MEASURES:
            raw[group] = float(np.mean(ref_len[group][0] / drv_len[group][0]))
    for group, parts in DERIVED.items():
        raw[group] = float(np.mean([raw[p] for p in parts]))
    return raw


def official_failures(reference: PoseFrame, reference_size: tuple[int, int], driving: PoseSequence,
                      frame: int = 0, result: tuple[PoseSequence, AlignmentInfo] | None = None) -> list[str]:
    """Why the official alignment's result (scales and translation from driving ``frame``) is
    demonstrably broken; ``[]`` when it is usable. Judged on the official result itself (pass it
    as ``result`` when it is already computed):

    * points present in the dance that come out non-finite (or a non-finite / non-positive scale);
    * a *measured* group scale more than 2x away from the median of the measured groups (see
      :data:`AUTO_SCALE_BOUNDS`). A group the official rule could not measure (it sets it to 1 --
      the legs of a half-body photo, a limb hidden in the alignment frame) is not a failure by
      itself: the official code handles that case every day;
    * more than 5 % of the present body and hand points thrown more than half a canvas outside
      the frame (see :data:`AUTO_OFF_CANVAS_FRACTION`).
    """
    if result is None:
        result = align_sequence(driving, reference, reference_size, mode="official", alignment_frame=frame)
    aligned, info = result
    reasons: list[str] = []

    lost = sum(int((present(getattr(driving, part)) & ~present(getattr(aligned, part))).sum())
               for part in ("body", "hands", "face"))
    if lost:
        reasons.append(f"{lost} points of the dance come out non-finite")
    bad = [g for g, v in info.scales.items() if not (math.isfinite(v) and v > 0)]
    if bad:
        reasons.append(f"non-finite or non-positive scales: {', '.join(bad)}")

    raw = _official_ratios(reference, reference_size, driving, frame)
    measured = {g: info.scales[g] for g in MEASURES if math.isfinite(raw[g]) and raw[g] > 0}
    if measured:
        median = float(np.median(list(measured.values())))
        lo, hi = AUTO_SCALE_BOUNDS
        for group, value in measured.items():
            if not lo * median <= value <= hi * median:
                reasons.append(f"{group} scale {value:.3g} is far off the others (median {median:.3g})")

    points = np.concatenate([aligned.body[..., :2].reshape(-1, 2), aligned.hands[..., :2].reshape(-1, 2)])
    ok = np.isfinite(points).all(axis=-1)
    if ok.any():
        far = ((points[ok] < -CANVAS_MARGIN) | (points[ok] > 1 + CANVAS_MARGIN)).any(axis=-1)
        if far.mean() > AUTO_OFF_CANVAS_FRACTION:
            reasons.append(f"{100 * far.mean():.1f} % of the points land more than {CANVAS_MARGIN:g} canvas "
                           "outside the frame")
    return reasons


def compute_scales(reference: PoseFrame, reference_size: tuple[int, int], driving: PoseSequence,
                   frames: Sequence[int], mode: str = "official") -> dict[str, float]:
    """Scale of every group (reference length / driving length), see the module docstring.

    ``reference_size`` is the reference image's (width, height). ``mode="official"`` measures on
    ``frames[0]`` only, exactly like the official code; ``"robust"`` uses all ``frames``.
    """
    return _scales(reference, reference_size, driving, frames, mode)[0]


# ----------------------------------------------------------------------------------------------
# Moving the points
# ----------------------------------------------------------------------------------------------


def _walk(xy: np.ndarray, scales: dict[str, float], root_xy: np.ndarray | None = None):
    """Walk BODY_BONES from the root: each present child goes to
    ``new(anchor) + s * (child - anchor)`` where the anchor is its parent, or the nearest present
    ancestor (``s`` = mean scale of the bones in between) when the parent is missing; without any
    present ancestor the child does not move.

    xy: (T, 18, 2) in height units; root_xy: (T, 2) where the root is anchored when the root point
    itself is missing (the virtual neck between the shoulders), or None. Returns (new_xy,
    anchor_orig, anchor_new, path_scale_sum, path_count), the anchor arrays giving, for each
    joint, its nearest present ancestor-or-self (so hands and the face can hang from a wrist /
    the nose the same way).
    """
    ok = np.isfinite(xy).all(axis=-1)
    new = np.full_like(xy, np.nan)
    anchor_orig = np.full_like(xy, np.nan)
    anchor_new = np.full_like(xy, np.nan)
    path_sum = np.zeros(xy.shape[:2])
    path_cnt = np.zeros(xy.shape[:2])
    root = xy[:, ROOT] if root_xy is None else root_xy
    new[:, ROOT] = xy[:, ROOT]
    anchor_orig[:, ROOT] = root
    anchor_new[:, ROOT] = root
    for bone in _BONES:
        p, c, s = bone.parent, bone.child, scales[bone.group]
        total, count = path_sum[:, p] + s, path_cnt[:, p] + 1
        anchored = np.isfinite(anchor_orig[:, p]).all(axis=-1)
        placed = anchor_new[:, p] + (total / count)[:, None] * (xy[:, c] - anchor_orig[:, p])
        moved = np.where(anchored[:, None], placed, xy[:, c])
        new[:, c] = np.where(ok[:, c, None], moved, np.nan)
        anchor_orig[:, c] = np.where(ok[:, c, None], xy[:, c], anchor_orig[:, p])
        anchor_new[:, c] = np.where(ok[:, c, None], new[:, c], anchor_new[:, p])
        path_sum[:, c] = np.where(ok[:, c], 0.0, total)
        path_cnt[:, c] = np.where(ok[:, c], 0.0, count)
    return new, anchor_orig, anchor_new, path_sum, path_cnt


def _hang(points: np.ndarray, joint: int, scale: float, walk) -> tuple[np.ndarray, np.ndarray]:
    """Move ``points`` (T, N, 2) rigidly with body ``joint`` and scale them about it by ``scale``
    (the mean of the path scales when the joint itself is missing). Returns (new points, factor
    (T,) applied -- 1 where nothing anchored)."""
    _, anchor_orig, anchor_new, path_sum, path_cnt = walk
    a_orig, a_new = anchor_orig[:, joint], anchor_new[:, joint]
    factor = (path_sum[:, joint] + scale) / (path_cnt[:, joint] + 1)
    anchored = np.isfinite(a_orig).all(axis=-1)
    moved = a_new[:, None] + factor[:, None, None] * (points - a_orig[:, None])
    return np.where(anchored[:, None, None], moved, points), np.where(anchored, factor, 1.0)


def _check_size(size) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise SteadyDancerInputError(f"reference size must be (width, height), got {size!r}") from None
    if w <= 0 or h <= 0:
        raise SteadyDancerInputError(f"reference size must be positive, got {w}x{h}")
    return w, h


def align_sequence(driving: PoseSequence, reference: PoseFrame, reference_size: tuple[int, int], *,
                   mode: str = "auto", alignment_frame: int | None = None
                   ) -> tuple[PoseSequence, AlignmentInfo]:
    """Retarget ``driving`` onto the person of ``reference``.

    Args:
        driving: the dancer's poses (normalised to the driving video's frames).
        reference: the character's pose, normalised to the reference image.
        reference_size: the reference image's (width, height) in pixels; fixes its aspect ratio
            and the size of the returned sequence.
        mode: ``"auto"`` (default), ``"official"`` or ``"robust"`` (see module docstring).
        alignment_frame: the driving frame that fixes the scales and the translation. Official
            mode: default 0. Robust mode: chosen by :func:`choose_alignment_frames` unless given.
            Auto: the official rule on this frame (default 0), robust if that fails.

    Returns:
        (aligned sequence normalised to the reference frame, AlignmentInfo).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        return _align_auto(driving, reference, reference_size, alignment_frame)
    ref_w, ref_h = _check_size(reference_size)
    ref_aspect = ref_w / ref_h
    n = len(driving)
    if n == 0:
        raise SteadyDancerInputError("The driving video has no frames: use a clip with a dancer in it.")
    if not driving.frames_with_person().any():
        raise SteadyDancerInputError(
            "No person was detected in any frame of the driving video: use a clip where one "
            "dancer is clearly visible.")
    if not reference.has_person:
        raise SteadyDancerInputError(
            "No person was found in the character image: use a photo showing one person with "
            "their head and shoulders visible.")
    ref_xy = _to_height_units(reference.body[:, :2], ref_aspect)
    ref_neck = _virtual_neck(ref_xy)
    if not np.isfinite(ref_neck).all():
        raise SteadyDancerInputError(
            "The character image shows no neck or shoulders to align the dance to: use a photo "
            "where the person's head and both shoulders are visible.")
    notes: list[str] = []

    # 1. Alignment frames.
    if alignment_frame is not None:
        if not 0 <= int(alignment_frame) < n:
            raise SteadyDancerInputError(
                f"Alignment frame {alignment_frame} is outside the driving clip (0..{n - 1}).")
        frames = [int(alignment_frame)]
    elif mode == "official":
        frames = [0]
    else:
        frames = choose_alignment_frames(driving)
        if not frames:
            raise SteadyDancerInputError(
                "No frame of the driving video shows the dancer's neck or both shoulders: use a "
                "clip where the dancer's upper body is visible.")
        notes.append(f"alignment frames chosen automatically: {frames}")

    # 2. Scales.
    scales, scale_notes = _scales(reference, (ref_w, ref_h), driving, frames, mode)
    notes += scale_notes

    # 3. Translation: reference neck - driving neck of the alignment frame.
    drv_xy = _to_height_units(driving.body[..., :2], driving.aspect)
    drv_necks = _virtual_neck(drv_xy)
    offset_frame = frames[0]
    if not np.isfinite(drv_necks[offset_frame]).all():
        with_neck = np.flatnonzero(np.isfinite(drv_necks).all(axis=-1))
        if len(with_neck) == 0:
            raise SteadyDancerInputError(
                "No frame of the driving video shows the dancer's neck or both shoulders: use a "
                "clip where the dancer's upper body is visible.")
        offset_frame = int(with_neck[np.argmin(np.abs(with_neck - offset_frame))])
        notes.append(f"driving frame {frames[0]} has no neck: translation taken from frame {offset_frame}")
    offset = ref_neck - drv_necks[offset_frame]

    # 4. Walk the skeleton in every frame; hands hang from the wrists, the face from the nose.
    walk = _walk(drv_xy, scales, root_xy=drv_necks)
    body_xy = walk[0]
    hands = np.array(driving.hands, dtype=np.float64)
    for hand, wrist in HAND_WRIST.items():
        hand_xy = _to_height_units(hands[:, hand, :, :2], driving.aspect)
        hands[:, hand, :, :2], factor = _hang(hand_xy, wrist, scales["hand"], walk)
        hands[:, hand, :, 2] *= factor[:, None]  # depth relative to the wrist scales with the hand
    face_xy = _to_height_units(driving.face[..., :2], driving.aspect)
    if mode == "robust":
        face_scale = (scales["face_left"] + scales["face_right"]) / 2.0
        face_xy, _ = _hang(face_xy, _B["nose"], face_scale, walk)

    # 5. Translate and return to the reference's normalised coordinates.
    def finish(xy: np.ndarray) -> np.ndarray:
        xy = xy + offset
        xy[..., 0] /= ref_aspect
        return xy

    body = np.array(driving.body, dtype=np.float64)
    body[..., :2] = finish(body_xy)
    hands[..., :2] = finish(hands[..., :2])
    face = np.array(driving.face, dtype=np.float64)
    face[..., :2] = finish(face_xy)

    # Points missing in the driving frame stay missing (the walk already keeps them NaN).
    body[~present(driving.body), :2] = np.nan
    hands[~present(driving.hands), :2] = np.nan
    face[~present(driving.face), :2] = np.nan

    if mode == "robust":
        dropped = 0
        for arr in (body, hands, face):
            outside = present(arr) & ~(
                (arr[..., 0] >= -CANVAS_MARGIN) & (arr[..., 0] <= 1 + CANVAS_MARGIN)
                & (arr[..., 1] >= -CANVAS_MARGIN) & (arr[..., 1] <= 1 + CANVAS_MARGIN))
            arr[outside, :2] = np.nan
            dropped += int(outside.sum())
        if dropped:
            notes.append(f"{dropped} points more than {CANVAS_MARGIN} canvas off the frame dropped")

    # Never let a non-finite value stand for a present point.
    for arr in (body, hands, face):
        bad = ~np.isfinite(arr[..., :2]).all(axis=-1)
        arr[bad, :2] = np.nan
        arr[..., 2:] = np.nan_to_num(arr[..., 2:], nan=0.0, posinf=0.0, neginf=0.0)

    info = AlignmentInfo(
        scales={g: float(v) for g, v in scales.items()},
        offset=(float(offset[0]), float(offset[1])),
        alignment_frames=[int(t) for t in frames],
        mode=mode,
        notes=notes,
    )
    meta = dict(driving.meta)
    meta["alignment"] = info.to_dict()
    meta["driving_size"] = [driving.width, driving.height]
    aligned = PoseSequence(body=body, hands=hands, face=face, fps=driving.fps, width=ref_w,
                           height=ref_h, meta=meta)
    return aligned, info


def _align_auto(driving: PoseSequence, reference: PoseFrame, reference_size: tuple[int, int],
                alignment_frame: int | None) -> tuple[PoseSequence, AlignmentInfo]:
    """The official alignment unless its result is demonstrably broken (reasons noted); then robust."""
    frame = 0 if alignment_frame is None else int(alignment_frame)
    if not 0 <= frame < len(driving):
        raise SteadyDancerInputError(f"Alignment frame {frame} is outside the driving clip (0..{len(driving) - 1}).")
    official = align_sequence(driving, reference, reference_size, mode="official", alignment_frame=frame)
    reasons = official_failures(reference, reference_size, driving, frame, result=official)
    if not reasons:
        aligned, info = official
        info.notes.insert(0, "auto: the official alignment's result is sound, kept")
    else:
        aligned, info = align_sequence(driving, reference, reference_size, mode="robust",
                                       alignment_frame=alignment_frame)
        info.notes[:0] = ["auto: the official alignment's result is broken, robust used: " + "; ".join(reasons)]
    aligned.meta["alignment"] = info.to_dict()
    return aligned, info


# ----------------------------------------------------------------------------------------------
# Lead-in from the reference pose
# ----------------------------------------------------------------------------------------------


def _shared_anchors(a_ok: np.ndarray, b_ok: np.ndarray) -> np.ndarray:
    """For every body joint, its nearest ancestor-or-self present in both poses (-1 if none)."""
    both = a_ok & b_ok
    anchor = np.full(NUM_BODY, -1)
    anchor[ROOT] = ROOT if both[ROOT] else -1
    for bone in _BONES:
        anchor[bone.child] = bone.child if both[bone.child] else anchor[bone.parent]
    return anchor


def lead_in(reference: PoseFrame, aligned: PoseSequence, num_frames: int) -> PoseSequence:
    """Prepend ``num_frames`` frames moving from the reference image's own pose to the first
    aligned pose, so the video can start exactly at the reference.

    Frame k of the lead-in is at ``w = (1 - cos(pi k / n)) / 2`` (ease in-out; frame 0 is the
    reference itself, the frame after the lead-in is ``aligned[0]``). Points present in both
    poses are interpolated. A point present on one side only moves with its nearest body
    ancestor present on both sides (hands with their wrist, the face with the nose) and is shown
    on its own side's half of the lead-in (k < n/2 for reference-only points, the rest for
    driving-only ones). Both poses must be normalised to the reference frame.
    """
    n = int(num_frames)
    if n <= 0:
        return aligned.copy()
    if len(aligned) == 0:
        raise SteadyDancerInputError("There is no aligned pose to lead into: the driving clip is empty.")
    start, end = reference, aligned[0]
    progress = np.arange(n) / n
    weights = (1.0 - np.cos(np.pi * progress)) / 2.0
    first_half = 2 * np.arange(n) < n  # exact, unlike comparing the cosine weights with 0.5

    a_xy, b_xy = start.body[:, :2].astype(np.float64), end.body[:, :2].astype(np.float64)
    a_ok, b_ok = present(start.body), present(end.body)
    anchor = _shared_anchors(a_ok, b_ok)
    # Displacement of every body joint's shared anchor from the reference to the driving pose.
    shift = np.zeros((NUM_BODY, 2))
    has = anchor >= 0
    shift[has] = b_xy[anchor[has]] - a_xy[anchor[has]]

    def blend(a: np.ndarray, b: np.ndarray, joint_shift: np.ndarray) -> np.ndarray:
        """a, b: (N, C) points of one part; joint_shift: (N, 2). Returns (n, N, C)."""
        ok_a, ok_b = present(a), present(b)
        a64, b64 = np.nan_to_num(a.astype(np.float64)), np.nan_to_num(b.astype(np.float64))
        w = weights[:, None, None]
        out = np.full((n,) + a.shape, np.nan)
        both = ok_a & ok_b
        out[:, both] = (a64 + w * (b64 - a64))[:, both]
        only_a = ok_a & ~ok_b
        moved_a = a64.copy()
        moved_a = np.broadcast_to(moved_a, (n,) + a.shape).copy()
        moved_a[..., :2] += w * joint_shift
        show_a = first_half[:, None] & only_a[None]
        out[show_a] = moved_a[show_a]
        only_b = ok_b & ~ok_a
        moved_b = np.broadcast_to(b64, (n,) + b.shape).copy()
        moved_b[..., :2] -= (1.0 - w) * joint_shift
        show_b = ~first_half[:, None] & only_b[None]
        out[show_b] = moved_b[show_b]
        return out

    body = blend(start.body, end.body, shift)
    hands = np.stack([
        blend(start.hands[h], end.hands[h], np.broadcast_to(shift[HAND_WRIST[h]], (start.hands.shape[1], 2)))
        for h in range(start.hands.shape[0])
    ], axis=1)
    face = blend(start.face, end.face, np.broadcast_to(shift[_B["nose"]], (start.face.shape[0], 2)))

    meta = dict(aligned.meta)
    meta["lead_in_frames"] = n
    return PoseSequence(
        body=np.concatenate([body, aligned.body]),
        hands=np.concatenate([hands, aligned.hands]),
        face=np.concatenate([face, aligned.face]),
        fps=aligned.fps, width=aligned.width, height=aligned.height, meta=meta,
    )
