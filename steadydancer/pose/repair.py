"""Repair corrupted pose frames and smooth detector jitter (pure numpy).

A corrupted condition frame (a skeleton with swapped sides, an arm that jumps across the body for
one frame, a frame where the detector loses most points) is copied straight into the generated
video, so these are found and repaired before alignment and rendering.

Detection compares every frame with what its neighbours predict for it: a quadratic in time fitted
to the frames within :data:`NEIGHBOURS` on each side (the frame itself excluded), robustly (its
worst neighbours are dropped while they are obvious outliers), so a corruption lasting up to three
frames cannot hide itself and fast genuine motion is followed rather than flagged. Distances are
in units of the person's torso length (:func:`body_scale`) with both axes in units of image
height, so thresholds do not depend on resolution or framing; the fit's RMS residual (its
"spread") raises every threshold where the motion is more than a quadratic can follow.

- **Left/right swap**: per limb chain (the arms from the shoulders, the legs from the hips, the
  eyes and ears; then the shorter chains from the elbows/knees and the wrists/ankles alone), the
  labelled assignment is compared with the mirrored one against the prediction; when the mirrored
  one is at least twice as close and closer by :data:`SWAP_MARGIN` torso lengths per point (and
  by JUMP_SPREAD x the spread), the sides are swapped back. Hands whose wrists sit on the other
  side's body wrist are swapped too. Genuine turning is continuous, so the prediction agrees
  with it and it is left alone.
- **Jump**: a point further from its prediction than ``max(JUMP_MIN, JUMP_SPREAD x spread)``
  torso lengths, or a bone whose length jumps the same way (bones are rigid, so this catches
  jumps during fast motion), or a hand whose centre jumps relative to its body wrist (which
  cancels the arm's motion). The point (the whole hand) is removed and re-interpolated.
- **Confidence collapse**: a frame with at most half the body points its neighbours on both sides
  have.
- **Gaps** of at most ``max_gap`` frames between present detections (including the points removed
  above) are filled by linear interpolation of x, y (z) and confidence; longer gaps stay missing.

Smoothing (:func:`smooth_sequence`) is a zero-phase One-Euro filter (forward and backward passes
averaged, so a genuine fast step is not delayed) over each run of consecutive present frames of
each point -- it never smooths across a gap or moves a point into a missing frame.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .sequence import PoseSequence, present
from .skeleton import BODY, BODY_BONES, BODY_KEYPOINTS, BODY_MIRROR, HAND_SIDES, HAND_WRIST

#: Frames on each side whose quadratic fit predicts a frame.
NEIGHBOURS = 3
#: A swap needs the mirrored labelling to be closer by this many torso lengths (mean per point).
SWAP_MARGIN = 0.15
#: ... and at most this fraction of the labelled distance.
SWAP_RATIO = 0.5
#: A point (or bone length) further than this (torso lengths) from its prediction ...
JUMP_MIN = 0.25
#: ... and further than this many times the fit's RMS residual is a jump.
JUMP_SPREAD = 4.0
#: A frame with at most this share of the body points its neighbours have (median) collapsed ...
COLLAPSE_RATIO = 0.5
#: ... provided its neighbours have at least this many.
COLLAPSE_MIN_POINTS = 6

_SIDES = ("right_", "left_")
#: Limb chains tested for swaps, longest first (a chain is the right-side points; the left ones
#: are their BODY_MIRROR partners). A frame swapped by a chain is not tested by its sub-chains.
SWAP_CHAINS = (
    ("arms", ("right_shoulder", "right_elbow", "right_wrist")),
    ("legs", ("right_hip", "right_knee", "right_ankle")),
    ("head", ("right_eye", "right_ear")),
    ("forearms", ("right_elbow", "right_wrist")),
    ("lower legs", ("right_knee", "right_ankle")),
    ("wrists", ("right_wrist",)),
    ("ankles", ("right_ankle",)),
)
_CHAIN_PARENT = {"forearms": "arms", "wrists": "forearms", "lower legs": "legs", "ankles": "lower legs"}


@dataclass
class RepairEvent:
    """One repair: ``frame`` index, ``part`` (a body point name, a limb chain, "body",
    "left_hand", ...), ``kind`` (why) and ``detail`` (what was done)."""

    frame: int
    part: str
    kind: str
    detail: str


@dataclass
class RepairReport:
    events: list[RepairEvent] = field(default_factory=list)

    @property
    def frames(self) -> list[int]:
        return sorted({e.frame for e in self.events})

    def _labels(self) -> dict[int, str]:
        kinds: dict[int, list[str]] = {}
        filled: set[int] = set()
        for e in self.events:
            if e.kind == "gap" or "interpolated" in e.detail:
                filled.add(e.frame)
            if e.kind != "gap" and e.kind not in kinds.setdefault(e.frame, []):
                kinds[e.frame].append(e.kind)
        labels = {}
        for frame in self.frames:
            words = list(kinds.get(frame, [])) or ["short gap"]
            if frame in filled:
                words.append("interpolated")
            labels[frame] = ", ".join(words)
        return labels

    def summary(self) -> str:
        """E.g. ``"3 frames repaired: 12 (left/right swap), 40-41 (confidence collapse,
        interpolated)"``."""
        labels = self._labels()
        if not labels:
            return "no frames repaired"
        runs: list[tuple[int, int, str]] = []
        for frame in sorted(labels):
            if runs and runs[-1][1] == frame - 1 and runs[-1][2] == labels[frame]:
                runs[-1] = (runs[-1][0], frame, labels[frame])
            else:
                runs.append((frame, frame, labels[frame]))
        parts = [f"{a}" if a == b else f"{a}-{b}" for a, b, _ in runs]
        n = len(labels)
        return f"{n} frame{'s' if n != 1 else ''} repaired: " + ", ".join(
            f"{span} ({label})" for span, (_, _, label) in zip(parts, runs))

    def to_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "frames": self.frames,
            "events": [asdict(e) for e in self.events],
        }


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _height_units(points: np.ndarray, aspect: float) -> np.ndarray:
    xy = np.array(points[..., :2], dtype=np.float64)
    xy[..., 0] *= aspect
    return xy


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _neighbours(values: np.ndarray, radius: int = NEIGHBOURS) -> np.ndarray:
    """(2 * radius, T, ...) the values of frames t-radius..t+radius except t (NaN off the ends)."""
    t = values.shape[0]
    out = np.full((2 * radius,) + values.shape, np.nan)
    k = 0
    for d in range(-radius, radius + 1):
        if d == 0:
            continue
        if d < 0:
            out[k, -d:] = values[: t + d]
        else:
            out[k, : t - d] = values[d:]
        k += 1
    return out


def _solve3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve many 3x3 systems a x = b by the adjugate (numpy's batched solve is ~20x slower for
    matrices this small). a: (..., 3, 3), b: (..., 3, D). Singular systems give 0 (their
    predictions are discarded by the caller)."""
    cof = np.empty_like(a)
    for i in range(3):
        for j in range(3):
            r = [k for k in range(3) if k != i]
            c = [k for k in range(3) if k != j]
            minor = a[..., r[0], c[0]] * a[..., r[1], c[1]] - a[..., r[0], c[1]] * a[..., r[1], c[0]]
            cof[..., i, j] = (-1) ** (i + j) * minor
    det = (a[..., 0, :] * cof[..., 0, :]).sum(-1)
    ok = np.abs(det) > 1e-12
    inverse = np.swapaxes(cof, -1, -2) / np.where(ok, det, 1.0)[..., None, None]
    return np.where(ok[..., None, None], inverse @ b, 0.0)


def _neighbour_stats(values: np.ndarray, radius: int = NEIGHBOURS, max_drop: int = 2):
    """What the neighbours say a value should be at frame t.

    A quadratic in time is fitted by least squares to the frames t-radius..t+radius *without*
    frame t, and evaluated at t: it follows genuine motion, even fast and accelerating, which a
    plain median of the neighbours lags behind. The fit is made robust by dropping its worst
    neighbour (up to ``max_drop`` times) while that one is an obvious outlier, so corrupted
    frames next to t (a two- or three-frame swap) do not spoil the prediction. The spread is the
    RMS residual of the fit: large when the motion is more than the quadratic can follow (very
    fast dancing at a low frame rate), which then raises the bar for calling anything a jump.

    values: (T, N, D) -> (prediction (T, N, D), spread (T, N), neighbours used (T, N), nearest
    (T, N): the distance from each value to the closest neighbour the fit kept); a prediction
    needs >= 4 neighbours with at least one on each side (NaN otherwise).
    """
    offsets = np.array([d for d in range(-radius, radius + 1) if d != 0], dtype=np.float64)
    nb = _neighbours(values, radius)  # (K, T, N, D)
    design = np.stack([np.ones_like(offsets), offsets, offsets ** 2], -1)  # (K, 3)
    weight = np.isfinite(nb).all(-1).astype(np.float64)  # (K, T, N)
    y = np.nan_to_num(nb)

    def fit(weight):
        gram = np.einsum("ktn,ki,kj->tnij", weight, design, design) + 1e-9 * np.eye(3)
        rhs = np.einsum("ktn,ki,ktnd->tnid", weight, design, y)
        coef = _solve3(gram, rhs)  # (T, N, 3, D)
        fitted = np.einsum("ki,tnid->ktnd", design, coef)
        residual = np.linalg.norm(y - fitted, axis=-1) * (weight > 0)
        return coef, residual

    coef, residual = fit(weight)
    for _ in range(max_drop):
        used = weight.sum(0)
        worst = residual.argmax(0)  # (T, N)
        worst_res = np.take_along_axis(residual, worst[None], 0)[0]
        others = np.where(weight > 0, residual, np.nan)
        np.put_along_axis(others, worst[None], np.nan, 0)
        typical = _nanmedian(others, axis=0)
        drop = (used > 4) & (worst_res > 3.0 * np.nan_to_num(typical, nan=np.inf) + 1e-9)
        if not drop.any():
            break
        mask = np.zeros_like(weight, dtype=bool)
        np.put_along_axis(mask, worst[None], drop[None], 0)
        weight = np.where(mask, 0.0, weight)
        coef, residual = fit(weight)
    used = weight.sum(0)
    before = weight[offsets < 0].sum(0) > 0
    after = weight[offsets > 0].sum(0) > 0
    valid = (used >= 4) & before & after
    prediction = np.where(valid[..., None], coef[..., 0, :], np.nan)
    spread = np.sqrt((residual ** 2).sum(0) / np.maximum(used - 3, 1))
    spread = np.where(valid, spread, np.nan)
    # A genuine step (a hand snapping to a new place and staying) is predicted half-way, like a
    # jump; unlike a jump, the frame agrees with the neighbours on one side of it.
    gaps = np.where(weight > 0, np.linalg.norm(y - np.nan_to_num(values)[None], axis=-1), np.inf)
    nearest = np.where(valid, gaps.min(0), np.nan)
    return prediction, spread, np.where(valid, used, 0).astype(int), nearest


def body_scale(seq: PoseSequence) -> float:
    """The person's size: median torso length (neck to mid-hips) in units of image height; else
    1.3 x the median shoulder width, else 3 x the median bone length; else 0.3."""
    xy = _height_units(seq.body, seq.aspect)
    neck = xy[:, BODY["neck"]]
    hips = (xy[:, BODY["right_hip"]] + xy[:, BODY["left_hip"]]) / 2
    shoulders = np.linalg.norm(xy[:, BODY["right_shoulder"]] - xy[:, BODY["left_shoulder"]], axis=-1)
    bones = np.linalg.norm(xy[:, [b.child for b in BODY_BONES]] - xy[:, [b.parent for b in BODY_BONES]], axis=-1)
    for values, factor in ((np.linalg.norm(neck - hips, axis=-1), 1.0), (shoulders, 1.3), (bones.ravel(), 3.0)):
        values = values[np.isfinite(values) & (values > 1e-6)]
        if len(values):
            return float(np.median(values) * factor)
    return 0.3


def _fill_gaps(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of at most ``max_gap`` missing frames that have a present frame on both sides by
    linear interpolation of every channel. values: (T, N, C) with NaN x/y for missing points
    (modified in place). Returns the (T, N) mask of filled entries."""
    t_len, n_points = values.shape[:2]
    ok = np.isfinite(values[..., 0]) & np.isfinite(values[..., 1])
    filled = np.zeros((t_len, n_points), dtype=bool)
    if max_gap <= 0 or t_len < 3:
        return filled
    frames = np.arange(t_len)
    for j in range(n_points):
        idx = np.flatnonzero(ok[:, j])
        if len(idx) < 2:
            continue
        missing = np.flatnonzero(~ok[idx[0]: idx[-1] + 1, j]) + idx[0]
        if len(missing) == 0:
            continue
        after = np.searchsorted(idx, missing)
        gap = idx[after] - idx[after - 1] - 1
        missing = missing[gap <= max_gap]
        if len(missing) == 0:
            continue
        for c in range(values.shape[2]):
            values[missing, j, c] = np.interp(missing, frames[idx], values[idx, j, c])
        filled[missing, j] = True
    return filled


def _runs(frames) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for f in sorted(frames):
        if out and out[-1][1] == f - 1:
            out[-1] = (out[-1][0], f)
        else:
            out.append((f, f))
    return out


# ----------------------------------------------------------------------------------------------
# Detection steps (each works in place on arrays and appends events)
# ----------------------------------------------------------------------------------------------


def _fix_swaps(body: np.ndarray, aspect: float, scale: float, events: list[RepairEvent]) -> None:
    """Swap back left/right-swapped limb chains. body: (T, 18, 3) modified in place."""
    xy = _height_units(body, aspect)
    median, spread, count, _ = _neighbour_stats(xy)
    usable = count >= 2
    t_len = body.shape[0]
    swapped_by: dict[str, np.ndarray] = {}
    for name, right_names in SWAP_CHAINS:
        right = [BODY[p] for p in right_names]
        left = [BODY_MIRROR[i] for i in right]
        pts = right + left
        mirror = left + right
        p = xy[:, pts]
        ok = np.isfinite(p).all(-1) & np.isfinite(median[:, pts]).all(-1) & np.isfinite(median[:, mirror]).all(-1)
        ok &= usable[:, pts] & usable[:, mirror]
        n_ok = ok.sum(axis=1)
        d_same = np.where(ok, np.linalg.norm(p - median[:, pts], axis=-1), 0.0).sum(1) / np.maximum(n_ok, 1)
        d_mirror = np.where(ok, np.linalg.norm(p - median[:, mirror], axis=-1), 0.0).sum(1) / np.maximum(n_ok, 1)
        # The neighbours must agree among themselves: while limbs move fast (arms crossing) their
        # spread is large and a mirrored match is no evidence of a swap.
        chain_spread = np.where(ok, np.nan_to_num(spread[:, pts], nan=np.inf), 0.0).sum(1) / np.maximum(n_ok, 1)
        swap = ((n_ok >= min(2, len(pts))) & (d_mirror < SWAP_RATIO * d_same)
                & (d_same - d_mirror > np.maximum(SWAP_MARGIN * scale, JUMP_SPREAD * chain_spread)))
        parent = _CHAIN_PARENT.get(name)
        while parent is not None:  # already swapped as part of a longer chain
            swap &= ~swapped_by.get(parent, np.zeros(t_len, dtype=bool))
            parent = _CHAIN_PARENT.get(parent)
        swapped_by[name] = swap
        for t in np.flatnonzero(swap):
            body[t, pts] = body[t, mirror].copy()
            xy[t, pts] = xy[t, mirror].copy()
    all_major = [swapped_by[c] for c in ("arms", "legs")]
    for t in range(t_len):
        names = [name for name, _ in SWAP_CHAINS if swapped_by[name][t]]
        if not names:
            continue
        if all(m[t] for m in all_major):
            events.append(RepairEvent(t, "body", "left/right swap",
                                      "whole skeleton mirrored back: " + ", ".join(names)))
        else:
            for name in names:
                events.append(RepairEvent(t, name, "left/right swap", f"left and right {name} swapped back"))


def _fix_hand_swaps(body: np.ndarray, hands: np.ndarray, aspect: float, scale: float,
                    events: list[RepairEvent]) -> None:
    """Swap the two hands where each hand's wrist sits on the other side's body wrist."""
    bw = _height_units(body[:, [HAND_WRIST[h] for h in range(2)]], aspect)  # (T, 2, 2)
    hw = _height_units(hands[:, :, 0], aspect)  # (T, 2, 2)
    ok = np.isfinite(hw).all(-1) & np.isfinite(bw).all(-1) & np.isfinite(bw[:, ::-1]).all(-1)
    n_ok = ok.sum(1)
    d_same = np.where(ok, np.linalg.norm(hw - bw, axis=-1), 0).sum(1) / np.maximum(n_ok, 1)
    d_cross = np.where(ok, np.linalg.norm(hw - bw[:, ::-1], axis=-1), 0).sum(1) / np.maximum(n_ok, 1)
    swap = (n_ok >= 1) & (d_cross < SWAP_RATIO * d_same) & (d_same - d_cross > SWAP_MARGIN * scale)
    for t in np.flatnonzero(swap):
        hands[t] = hands[t, ::-1].copy()
        events.append(RepairEvent(int(t), "hands", "hand swap", "left and right hands swapped back"))


def _jump_mask(values: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) values (points (T, N, 2) or lengths (T, N, 1)) further than
    ``max(JUMP_MIN torso lengths, JUMP_SPREAD x spread)`` from their prediction *and* from every
    neighbour the fit kept; returns (mask, distance from the prediction in torso lengths)."""
    prediction, spread, count, nearest = _neighbour_stats(values)
    dist = np.linalg.norm(values - prediction, axis=-1)
    limit = np.maximum(JUMP_MIN * scale, JUMP_SPREAD * np.nan_to_num(spread, nan=np.inf))
    mask = np.isfinite(dist) & (count >= 4) & (dist > limit) & (nearest > limit)
    return mask, np.nan_to_num(dist / scale)


def _remove_jumps(body: np.ndarray, hands: np.ndarray, aspect: float, scale: float,
                  events: list[RepairEvent]) -> set[int]:
    """Remove jumping body points / hands (set missing; gap filling restores them)."""
    flagged_frames: set[int] = set()
    xy = _height_units(body, aspect)
    jumps, dist = _jump_mask(xy, scale)
    why = {}
    for t, j in zip(*np.nonzero(jumps)):
        why[(t, j)] = f"{dist[t, j]:.2f} torso lengths from its neighbours"
    # Bone lengths are rigid: a length that jumps while the neighbours' lengths agree.
    parents = [b.parent for b in BODY_BONES]
    children = [b.child for b in BODY_BONES]
    lengths = np.linalg.norm(xy[:, children] - xy[:, parents], axis=-1)[..., None]  # (T, B, 1)
    bad_bone, ldiff = _jump_mask(lengths, scale)
    for t, b in zip(*np.nonzero(bad_bone)):
        p, c = parents[b], children[b]
        if jumps[t, p] or jumps[t, c]:
            continue
        j = c if dist[t, c] >= dist[t, p] else p
        jumps[t, j] = True
        why[(t, j)] = (f"bone {BODY_KEYPOINTS[p]}-{BODY_KEYPOINTS[c]} length changed by "
                       f"{ldiff[t, b]:.2f} torso lengths")
    n_present = present(body).sum(1)
    for t in sorted(set(np.nonzero(jumps)[0].tolist())):
        flagged_frames.add(t)
        points = np.flatnonzero(jumps[t])
        if len(points) >= 4 and len(points) >= 0.5 * n_present[t]:
            events.append(RepairEvent(t, "body", "jump", f"{len(points)} of {n_present[t]} points off "
                                      "their neighbours (another person?); removed"))
        else:
            for j in points:
                events.append(RepairEvent(t, BODY_KEYPOINTS[j], "jump", why[(t, j)] + "; removed"))
    body[jumps, :2] = np.nan
    body[jumps, 2] = 0.0

    # Hands move as a whole: test each hand's centre relative to its body wrist (which cancels
    # the arm's motion, however fast), or its absolute position where the body wrist is missing.
    centres = _height_units(_nanmean_points(hands), aspect)  # (T, 2, 2)
    wrists = xy[:, [HAND_WRIST[h] for h in range(hands.shape[1])]]  # body after jump removal above
    wrists = np.where(jumps[:, [HAND_WRIST[h] for h in range(hands.shape[1])], None], np.nan, wrists)
    relative = centres - wrists
    rel_jumps, rel_dist = _jump_mask(relative, scale)
    abs_jumps, abs_dist = _jump_mask(centres, scale)
    has_relative = np.isfinite(relative).all(-1)
    # A jump relative to the wrist with the hand itself where its neighbours say is the *wrist*
    # jumping (left to the body test), not the hand.
    hand_jumps = np.where(has_relative, rel_jumps & (abs_dist >= 0.5 * rel_dist), abs_jumps)
    hdist = np.where(has_relative, rel_dist, abs_dist)
    for t, h in zip(*np.nonzero(hand_jumps)):
        flagged_frames.add(int(t))
        events.append(RepairEvent(int(t), f"{HAND_SIDES[h]}_hand", "jump",
                                  f"hand {hdist[t, h]:.2f} torso lengths from its neighbours; removed"))
        hands[t, h, :, :2] = np.nan
        hands[t, h, :, 2:] = 0.0
    return flagged_frames


def _nanmean_points(hands: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(hands[..., :2], axis=-2)


def _collapsed_frames(body: np.ndarray) -> dict[int, tuple[int, float]]:
    """Frames with at most COLLAPSE_RATIO of the body points present *on both sides* of them
    (median count of the NEIGHBOURS frames before, and of those after): the detector lost the
    person for a moment -- not the person leaving the picture."""
    counts = present(body).sum(1).astype(np.float64)
    nb = _neighbours(counts[:, None])[..., 0]  # (2 * NEIGHBOURS, T)
    before = _nanmedian(nb[:NEIGHBOURS], axis=0)
    after = _nanmedian(nb[NEIGHBOURS:], axis=0)
    around = np.fmin(before, after)
    around = np.where(np.isfinite(before) & np.isfinite(after), around, np.nan)
    collapsed = np.isfinite(around) & (around >= COLLAPSE_MIN_POINTS) & (counts <= COLLAPSE_RATIO * around)
    return {int(t): (int(counts[t]), float(around[t])) for t in np.flatnonzero(collapsed)}


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def repair_sequence(seq: PoseSequence, *, max_gap: int = 4) -> tuple[PoseSequence, RepairReport]:
    """Find and repair corrupted frames (see module docstring); returns (repaired copy, report).

    Steps: 1. swap back left/right-swapped limbs and hands; 2. remove jumping points and hands;
    3. note confidence collapses; 4. interpolate gaps of at most ``max_gap`` frames (anything
    removed in 2 included). Points in longer gaps stay missing.
    """
    max_gap = max(0, int(max_gap))
    body = np.array(seq.body, dtype=np.float64)
    hands = np.array(seq.hands, dtype=np.float64)
    face = np.array(seq.face, dtype=np.float64)
    events: list[RepairEvent] = []
    if len(seq) < 3:
        return seq.copy(), RepairReport(events)
    scale = body_scale(seq)

    # 1. Swaps.
    _fix_swaps(body, seq.aspect, scale, events)
    _fix_hand_swaps(body, hands, seq.aspect, scale, events)

    # 2. Jumps.
    _remove_jumps(body, hands, seq.aspect, scale, events)

    # 3. Confidence collapse (counted on the detections as they came).
    collapsed = _collapsed_frames(seq.body)

    # 4. Gaps.
    body_filled = _fill_gaps(body, max_gap)
    t_len = len(seq)
    hands_flat = hands.reshape(t_len, -1, hands.shape[-1])
    hands_filled = _fill_gaps(hands_flat, max_gap).reshape(t_len, 2, -1)
    hands = hands_flat.reshape(hands.shape)
    _fill_gaps(face, max_gap)  # the face is not drawn; filled silently so it does not flicker

    # Say how each flagged frame ended.
    for e in events:
        if e.kind == "jump":
            if e.part in BODY:
                done = body_filled[e.frame, BODY[e.part]]
            elif e.part.endswith("_hand"):
                done = hands_filled[e.frame, HAND_SIDES.index(e.part[: -len("_hand")])].any()
            else:
                done = body_filled[e.frame].any()
            e.detail += ", interpolated" if done else f", left missing (gap longer than {max_gap} or at an end)"
    for t, (n, m) in sorted(collapsed.items()):
        names = [BODY_KEYPOINTS[j] for j in np.flatnonzero(body_filled[t])]
        done = f"{len(names)} points interpolated" if names else "nothing to interpolate from"
        events.append(RepairEvent(t, "body", "confidence collapse",
                                  f"{n} body points vs {m:.0f} in neighbouring frames; {done}"))
    reported = {(e.frame, e.part) for e in events}
    reported_frames = {e.frame for e in events if e.kind in ("jump", "confidence collapse")}
    for t in np.flatnonzero(body_filled.any(1)):
        if t in reported_frames:
            continue
        names = [BODY_KEYPOINTS[j] for j in np.flatnonzero(body_filled[t])]
        events.append(RepairEvent(int(t), "body", "gap", "missing " + ", ".join(names) + " interpolated"))
    for t, h in zip(*np.nonzero(hands_filled.any(-1))):
        part = f"{HAND_SIDES[h]}_hand"
        if (int(t), part) not in reported:
            events.append(RepairEvent(int(t), part, "gap", "missing hand interpolated"))
    events.sort(key=lambda e: (e.frame, e.part))

    report = RepairReport(events)
    meta = dict(seq.meta)
    meta["repair"] = {"summary": report.summary(), "frames": report.frames}
    repaired = seq.replace(body=body.astype(np.float32), hands=hands.astype(np.float32),
                           face=face.astype(np.float32), meta=meta)
    return repaired, report


# ----------------------------------------------------------------------------------------------
# Smoothing
# ----------------------------------------------------------------------------------------------

#: One-Euro minimum cutoff (Hz) at strength 0+ and at strength 1 (log-interpolated between).
MIN_CUTOFF_RANGE = (12.0, 0.2)
#: One-Euro speed coefficient (per torso length per second) at strength 0+ and 1 (log-interpolated).
BETA_RANGE = (8.0, 2.0)
#: One-Euro cutoff (Hz) of the speed estimate.
D_CUTOFF = 1.0


def one_euro_parameters(strength: float) -> tuple[float, float]:
    """(min_cutoff Hz, beta per torso-length/s) for a smoothing strength in (0, 1].

    Both are interpolated geometrically: strength 0.5 -> min_cutoff 1.55 Hz, beta 4.0. The
    cutoff used at each frame is ``min_cutoff + beta * speed``, speed in torso lengths per
    second, so still poses are smoothed hard and fast motion passes through.
    """
    s = float(strength)
    (c0, c1), (b0, b1) = MIN_CUTOFF_RANGE, BETA_RANGE
    return c0 * (c1 / c0) ** s, b0 * (b1 / b0) ** s


def _alpha(cutoff, fps: float):
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * fps)


def _one_euro(xy: np.ndarray, fps: float, min_cutoff: float, beta: float) -> np.ndarray:
    """Causal One-Euro filter of (T, N, 2) points, restarted at the first frame of every present
    run (missing frames stay NaN)."""
    out = np.full_like(xy, np.nan)
    n = xy.shape[1]
    x_hat = np.zeros((n, 2))
    dx_hat = np.zeros((n, 2))
    was_ok = np.zeros(n, dtype=bool)
    a_d = _alpha(D_CUTOFF, fps)
    for t in range(xy.shape[0]):
        x = xy[t]
        ok = np.isfinite(x).all(-1)
        x0 = np.where(ok[:, None], x, 0.0)
        dx = (x0 - x_hat) * fps
        dx_hat = dx_hat + a_d * (dx - dx_hat)
        cutoff = min_cutoff + beta * np.linalg.norm(dx_hat, axis=-1)
        a = _alpha(cutoff, fps)[:, None]
        x_new = x_hat + a * (x0 - x_hat)
        start = ok & ~was_ok
        x_new[start] = x0[start]
        dx_hat[start] = 0.0
        x_hat = np.where(ok[:, None], x_new, x_hat)
        out[t] = np.where(ok[:, None], x_hat, np.nan)
        was_ok = ok
    return out


def smooth_sequence(seq: PoseSequence, strength: float) -> PoseSequence:
    """Smooth detector jitter with strength in [0, 1] (0 = off: an unchanged copy).

    Zero-phase One-Euro filter (see :func:`one_euro_parameters`) of every body, hand and face
    point, in units of torso length with both axes in units of image height; confidences and
    hand depth are kept. Runs of present frames are filtered separately.
    """
    s = float(strength)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise ValueError(f"smoothing strength must be in [0, 1], got {strength}")
    if s == 0.0 or len(seq) < 2:
        return seq.copy()
    min_cutoff, beta = one_euro_parameters(s)
    scale = body_scale(seq)
    t_len = len(seq)
    parts = [seq.body[..., :2], seq.hands[..., :2].reshape(t_len, -1, 2), seq.face[..., :2]]
    sizes = [p.shape[1] for p in parts]
    xy = np.concatenate(parts, axis=1).astype(np.float64)
    xy[..., 0] *= seq.aspect
    xy /= scale
    forward = _one_euro(xy, seq.fps, min_cutoff, beta)
    backward = _one_euro(xy[::-1], seq.fps, min_cutoff, beta)[::-1]
    smooth = (forward + backward) / 2.0 * scale
    smooth[..., 0] /= seq.aspect
    body_xy, hands_xy, face_xy = np.split(smooth, np.cumsum(sizes)[:-1], axis=1)
    body, hands, face = seq.body.copy(), seq.hands.copy(), seq.face.copy()
    body[..., :2] = body_xy
    hands[..., :2] = hands_xy.reshape(seq.hands.shape[:-1] + (2,))
    face[..., :2] = face_xy
    meta = dict(seq.meta)
    meta["smoothing"] = {"strength": s, "min_cutoff_hz": min_cutoff, "beta": beta}
    return seq.replace(body=body, hands=hands, face=face, meta=meta)
