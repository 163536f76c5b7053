"""Which alignment ``auto`` picks for real photo / clip pairs, and why.

    python benchmarks/alignment_auto.py                        # ../shared/media (academic-use media)
    python benchmarks/alignment_auto.py --media DIR --images ref_street.png ref_third.png

For every character photo x the driving clip (read as the product does by default: 16 fps,
``--frames`` frames, repaired and smoothed), the official alignment is computed and judged on its
result (:func:`steadydancer.pose.align.official_failures`). Printed per pair: the mode ``auto``
picks and the reasons, the official scales (``*`` = the official rule could not measure the group
and set it to 1), the spread of the measured scales (max / min over the median: broken beyond
0.5..2), the share of points thrown more than half a canvas off the frame (broken above 5 %), the
points lost, and how far the official and the robust result lie apart (median distance of the
body points, % of the frame height).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--images", nargs="+", default=["ref_street.png", "ref_third.png"])
    parser.add_argument("--video", default="driving_seated_gestures.mp4")
    parser.add_argument("--frames", type=int, default=None, help="driving frames to read (default: all)")
    args = parser.parse_args(argv)
    if not (args.media / args.video).is_file():
        print(f"media not found: {args.media / args.video} (academic-use media, never committed)")
        return 1

    from steadydancer.pose.align import (
        AUTO_OFF_CANVAS_FRACTION, CANVAS_MARGIN, MEASURES, _official_ratios, align_sequence, official_failures)
    from steadydancer.pose.path import PoseOptions, clean_driving, extract_driving, prepare_reference
    from steadydancer.pose.sequence import present

    options = PoseOptions(max_frames=args.frames)
    cleaned = clean_driving(extract_driving(args.media / args.video, options), options)
    drv = cleaned.poses
    print(f"{args.video}: {len(drv)} frames at {drv.fps:g} fps, a person in {int(drv.frames_with_person().sum())}")
    for name in args.images:
        reference = prepare_reference(args.media / name)
        size = reference.size
        official = align_sequence(drv, reference.pose, size, mode="official")
        robust, _ = align_sequence(drv, reference.pose, size, mode="robust")
        auto, info = align_sequence(drv, reference.pose, size, mode="auto")
        reasons = official_failures(reference.pose, size, drv, 0, result=official)
        raw = _official_ratios(reference.pose, size, drv, 0)
        scales = official[1].scales
        measured = {g: scales[g] for g in MEASURES if math.isfinite(raw[g]) and raw[g] > 0}
        median = float(np.median(list(measured.values()))) if measured else float("nan")
        points = np.concatenate([official[0].body[..., :2].reshape(-1, 2), official[0].hands[..., :2].reshape(-1, 2)])
        ok = np.isfinite(points).all(axis=-1)
        far = ((points[ok] < -CANVAS_MARGIN) | (points[ok] > 1 + CANVAS_MARGIN)).any(axis=-1).mean()
        lost = sum(int((present(getattr(drv, p)) & ~present(getattr(official[0], p))).sum())
                   for p in ("body", "hands", "face"))
        both = present(official[0].body) & present(robust.body)
        gap = np.linalg.norm((official[0].body[..., :2] - robust.body[..., :2])
                             * np.array([size[0] / size[1], 1.0]), axis=-1)[both]
        print(f"\n{name} ({reference.image.width}x{reference.image.height}, working size {size[0]}x{size[1]}): "
              f"auto -> {info.mode}")
        print("  reasons: " + ("; ".join(reasons) if reasons else "none -- the official result is sound"))
        print("  official scales: " + ", ".join(
            f"{g} {v:.3g}{'' if g in measured or g == 'hand' else '*'}" for g, v in scales.items()))
        if measured:
            print(f"  measured scales / median {median:.3g}: {min(measured.values()) / median:.2f} .. "
                  f"{max(measured.values()) / median:.2f} (broken outside 0.50 .. 2.00)")
        print(f"  points > {CANVAS_MARGIN:g} canvas off: {far * 100:.2f} % (broken above "
              f"{AUTO_OFF_CANVAS_FRACTION * 100:g} %); points lost: {lost}")
        print(f"  official vs robust: median body-point distance {np.median(gap) * 100:.2f} % of the frame height")
    return 0


if __name__ == "__main__":
    sys.exit(main())
