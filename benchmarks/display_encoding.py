"""x264 settings for the videos people look at: flat-colour skeletons on black.

    python benchmarks/display_encoding.py                  # the shipped example motion, 81 frames
    python benchmarks/display_encoding.py --repeat 5

Renders the shipped example (examples/astronaut.png + examples/dance_keyframes.poses.json) the
way the pose path does -- the positive condition at the working size and the three-panel preview
-- and encodes both with each candidate setting through ``steadydancer.video.write_video``. Per
setting: the encoder's CPU time (ffmpeg's user + system time, which other load on a shared
machine disturbs less than wall time), the file size, the bitrate and the PSNR of the decoded
frames against the rendered ones (what the viewer loses). All candidates stay H.264 yuv420p
with +faststart (browser-playable); ``keyint`` is the longest keyframe distance (seeking).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steadydancer.video import DISPLAY_ENCODING, MASTER_ENCODING, EncodeSettings, read_video, write_video  # noqa: E402

CANDIDATES = {
    "medium (master)": MASTER_ENCODING,
    "veryfast": EncodeSettings("veryfast", 18),
    "superfast": EncodeSettings("superfast", 18),
    "ultrafast": EncodeSettings("ultrafast", 18),
    "veryfast, tune animation": EncodeSettings("veryfast", 18, tune="animation"),
    "superfast, tune animation": EncodeSettings("superfast", 18, tune="animation"),
    "superfast, keyint 16": EncodeSettings("superfast", 18, keyint=16),
    "ultrafast, keyint 16": EncodeSettings("ultrafast", 18, keyint=16),
    "veryfast, keyint 16": EncodeSettings("veryfast", 18, keyint=16),
    "superfast, crf 23": EncodeSettings("superfast", 23),
}


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def example_frames(num_frames: int):
    from steadydancer.pose import path as pose_path

    options = pose_path.PoseOptions(max_frames=num_frames)
    result = pose_path.run_pose_path(REPO / "examples" / "astronaut.png",
                                     REPO / "examples" / "dance_keyframes.poses.json", options)
    video = REPO / "examples" / "dance_keyframes.mp4"
    result.driving.video = video if video.is_file() else None
    positive, _ = pose_path.render_conditions(result.reference, result.aligned, options)
    preview = pose_path.render_preview(result.reference, result.driving, result.cleaned, result.aligned, options)
    return {"positive condition": positive, "preview panel": preview}, result.aligned.positive.fps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--repeat", type=int, default=3, help="encodes per setting; the cheapest is kept")
    args = parser.parse_args(argv)

    videos, fps = example_frames(args.frames)
    chosen = [k for k, v in CANDIDATES.items() if v == DISPLAY_ENCODING]
    print(f"display profile in steadydancer.video: {DISPLAY_ENCODING} ({', '.join(chosen) or 'not a candidate'})")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, frames in videos.items():
            h, w = frames[0].shape[:2]
            print(f"\n{kind}: {len(frames)} frames {w}x{h} at {fps:g} fps")
            print(f"{'setting':28s} {'cpu s':>6s} {'x medium':>8s} {'wall s':>7s} {'KiB':>6s} {'kbit/s':>7s} {'PSNR dB':>8s}")
            base = None
            for name, settings in CANDIDATES.items():
                best = (float("inf"), 0.0)
                for _ in range(args.repeat):
                    cpu0, t0 = child_cpu(), time.perf_counter()
                    path = write_video(Path(tmp) / "out.mp4", frames, fps, settings=settings)
                    cost = (child_cpu() - cpu0, time.perf_counter() - t0)
                    best = min(best, cost)
                size = path.stat().st_size
                decoded = read_video(path, fps=0).frames
                quality = np.mean([psnr(a, b) for a, b in zip(decoded, frames)])
                base = base or best[0]
                print(f"{name:28s} {best[0]:6.2f} {best[0] / base:8.2f} {best[1]:7.2f} {size / 1024:6.0f} "
                      f"{size * 8 / 1000 / (len(frames) / fps):7.0f} {quality:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
