"""The negative ("null") pose condition: the aligned poses, randomly stretched frame by frame.

What the official preprocessing does (``pose_aug_diff`` in its ``utils_aug.py``), checked in the
code: on the aligned poses *in normalised coordinates* (x / W, y / H of the reference canvas),
for every frame independently draw ``s ~ U(0.7, 1.3)`` and ``a ~ U(0.6, 1.4)``; multiply body
and hand x by ``s * a`` and y by ``s`` (about the origin), then add to body, hands **and face**
the offset that puts the neck back where it was. The face points are therefore not scaled, only
shifted, by ``neck - scaled neck = (nx (1 - s a), ny (1 - s))`` -- a shift that depends on where
the neck is in the frame, reproduced as is. Scaling each axis about the neck is the same in
normalised or aspect-corrected coordinates (per-axis scalings commute), so no aspect handling is
needed. The official code also draws random offsets, but their use is commented out.

Departures: the random numbers come from a seeded numpy Generator (reproducible, independent of
the pose content: all ``s`` then all ``a`` are drawn for the whole sequence); where the neck is
missing the middle of the shoulders, else the mean of the present body points, is the centre
(the official code would scale about its -1 marker); a frame without any body point is kept as
it is (its draws are still consumed). Missing points stay missing.
"""

from __future__ import annotations

import warnings

import numpy as np

from .sequence import PoseSequence, present
from .skeleton import BODY


def _centres(body: np.ndarray) -> np.ndarray:
    """(T, 2) the neck, else the middle of the shoulders, else the mean present body point."""
    neck = body[:, BODY["neck"], :2].astype(np.float64)
    mid = (body[:, BODY["right_shoulder"], :2] + body[:, BODY["left_shoulder"], :2]).astype(np.float64) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(body[..., :2].astype(np.float64), axis=1)
    centre = np.where(np.isfinite(neck).all(-1, keepdims=True), neck, mid)
    return np.where(np.isfinite(centre).all(-1, keepdims=True), centre, mean)


def augment_sequence(aligned: PoseSequence, *, seed: int, scale_range=(0.7, 1.3),
                     aspect_range=(0.6, 1.4)) -> PoseSequence:
    """The negative condition of ``aligned`` (see module docstring); deterministic for a seed.

    The per-frame draws are stored in ``meta["augment"]`` (``scale``, ``aspect`` lists).
    """
    for name, (lo, hi) in (("scale_range", scale_range), ("aspect_range", aspect_range)):
        if not (0 < lo <= hi) or not np.isfinite([lo, hi]).all():
            raise ValueError(f"{name} must be 0 < low <= high, got {(lo, hi)}")
    rng = np.random.default_rng(seed)
    t_len = len(aligned)
    s = rng.uniform(scale_range[0], scale_range[1], size=t_len)
    a = rng.uniform(aspect_range[0], aspect_range[1], size=t_len)
    factor = np.stack([s * a, s], axis=-1)  # (T, 2): x by s*a, y by s

    centre = _centres(aligned.body)  # (T, 2)
    has_centre = np.isfinite(centre).all(-1)
    f = np.where(has_centre[:, None], factor, 1.0)
    c = np.where(has_centre[:, None], centre, 0.0)

    body = aligned.body.astype(np.float64)
    hands = aligned.hands.astype(np.float64)
    face = aligned.face.astype(np.float64)
    body[..., :2] = c[:, None] + f[:, None] * (body[..., :2] - c[:, None])
    hands[..., :2] = c[:, None, None] + f[:, None, None] * (hands[..., :2] - c[:, None, None])
    face[..., :2] = face[..., :2] + (c * (1.0 - f))[:, None]

    for arr, orig in ((body, aligned.body), (hands, aligned.hands), (face, aligned.face)):
        arr[~present(orig), :2] = np.nan
    meta = dict(aligned.meta)
    meta["augment"] = {
        "seed": int(seed),
        "scale_range": [float(v) for v in scale_range],
        "aspect_range": [float(v) for v in aspect_range],
        "scale": s.tolist(),
        "aspect": a.tolist(),
    }
    return aligned.replace(body=body.astype(np.float32), hands=hands.astype(np.float32),
                           face=face.astype(np.float32), meta=meta)
