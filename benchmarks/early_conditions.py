"""Could the conditions be rendered while the detector still runs? How many frames would come out
the same if the pose path ran on the part of the clip extracted so far.

    python benchmarks/early_conditions.py --video ../shared/media/driving_seated_gestures.mp4 \
        --image ../shared/media/ref_street.png

The clip is extracted once (at 16 fps and at its own rate, ``--fps``); then, for each prefix (40 %,
60 %, 80 % of the frames), the later stages (repair, smoothing, alignment, negative) run on the
prefix alone, as they would have to when rendering during extraction, and every frame is compared
with the run on the whole clip by what the renderer draws: the truncated pixel coordinates of each
body and hand point on the official canvas and whether the point is drawn. "differ" counts the
frames older than the last ``--margin`` frames of the prefix (the frames a windowed renderer
would have drawn) whose drawing would change once the whole clip is known. The README quotes it
under "Files and previews".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steadydancer.pose import path as pose_path  # noqa: E402
from steadydancer.pose.render import official_canvas_size  # noqa: E402


def drawn(seq, width: int, height: int) -> list[tuple[np.ndarray, ...]]:
    """Per frame: what the renderer's integer coordinates and presence tests depend on."""
    body = np.nan_to_num(np.trunc(seq.body[..., :2] * (width, height)), nan=-1e9)
    hands = np.nan_to_num(np.trunc(seq.hands[..., :2] * (width, height)), nan=-1e9)
    return [(body[t], hands[t], seq.body[t, :, 2] > 0, seq.hands[t, ..., 3] > 0) for t in range(len(seq))]


def same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--image", type=Path, default=REPO / "examples" / "astronaut.png")
    parser.add_argument("--fps", type=float, nargs="+", default=[16.0, 0.0], help="0: the clip's own rate")
    parser.add_argument("--prefixes", type=float, nargs="+", default=[0.4, 0.6, 0.8])
    parser.add_argument("--margin", type=int, default=30, help="frames at the end of a prefix left undrawn")
    args = parser.parse_args(argv)

    for fps in args.fps:
        options = pose_path.PoseOptions(fps=fps)
        whole = pose_path.run_pose_path(args.image, args.video, options)
        width, height = official_canvas_size(*whole.reference.image.size)
        final_pos = drawn(whole.aligned.positive, width, height)
        final_neg = drawn(whole.aligned.negative, width, height)
        count = len(whole.driving.poses)
        print(f"{args.video.name} at {'its own rate' if fps == 0 else f'{fps:g} fps'}: {count} frames, "
              f"alignment {whole.aligned.info.mode}")
        for fraction in args.prefixes:
            m = int(count * fraction)
            part = pose_path.DrivingPoses(poses=whole.driving.poses[:m])
            cleaned = pose_path.clean_driving(part, options)
            aligned = pose_path.align_driving(whole.reference, cleaned, options)
            pos = drawn(aligned.positive, width, height)
            neg = drawn(aligned.negative, width, height)
            early = max(0, m - args.margin)
            differ_pos = sum(not same(pos[t], final_pos[t]) for t in range(early))
            differ_neg = sum(not same(neg[t], final_neg[t]) for t in range(early))
            print(f"  first {fraction:.0%} ({m} frames): of the {early} frames before the last {args.margin}, "
                  f"{differ_pos} positive and {differ_neg} negative frames differ from the whole clip's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
