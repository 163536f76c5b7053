"""x264 settings for the skeleton videos: the pose condition files and the previews.

    python benchmarks/display_encoding.py                  # the shipped example motion, 81 frames
    python benchmarks/display_encoding.py --repeat 5

Renders the shipped example (examples/astronaut.png + examples/dance_keyframes.poses.json) the
way the pose path does -- the positive condition at the working size and the three-panel preview
-- and encodes both with each candidate setting through ``steadydancer.video.write_video``.

Per setting: the encode's CPU time (ffmpeg's user + system time plus this process's, i.e. the
RGB -> yuv420p conversion the writer does before piping; other load on a shared machine disturbs
CPU time less than wall time), the file size, the bitrate and the PSNR of the decoded frames
against the rendered ones (what the viewer loses). All candidates stay H.264 yuv420p, BT.709,
with +faststart (browser-playable); ``keyint`` is the longest keyframe distance (seeking);
``1 thread`` is ``EncodeSettings.threads=1``.

The rows marked "rgb24 pipe" are the writer as it was before the conversion moved out of ffmpeg:
RGB frames piped and converted by ffmpeg's scaler (``scale=out_color_matrix=bt709``), with the
same x264 settings -- the "before" of the pose files (condition: medium; preview: ultrafast).
The rows marked by ``<-`` are the profiles :mod:`steadydancer.video` ships.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steadydancer.video import (  # noqa: E402
    CONDITION_ENCODING, DISPLAY_ENCODING, MASTER_ENCODING, EncodeSettings, ffmpeg_exe, read_video, write_video,
)

#: (name, settings, rgb24 pipe?)
CANDIDATES = [
    ("medium (master), rgb24 pipe", MASTER_ENCODING, True),
    ("ultrafast, rgb24 pipe", EncodeSettings("ultrafast", 18), True),
    ("medium (master)", MASTER_ENCODING, False),
    ("veryfast", EncodeSettings("veryfast", 18), False),
    ("superfast", EncodeSettings("superfast", 18), False),
    ("ultrafast", EncodeSettings("ultrafast", 18), False),
    ("veryfast, 1 thread", EncodeSettings("veryfast", 18, threads=1), False),
    ("superfast, 1 thread", EncodeSettings("superfast", 18, threads=1), False),
    ("ultrafast, 1 thread", EncodeSettings("ultrafast", 18, threads=1), False),
    ("superfast, animation, 1 thread", EncodeSettings("superfast", 18, tune="animation", threads=1), False),
    ("ultrafast, stillimage, 1 thread", EncodeSettings("ultrafast", 18, tune="stillimage", threads=1), False),
    ("ultrafast, keyint 16, 1 thread", EncodeSettings("ultrafast", 18, keyint=16, threads=1), False),
    ("superfast, keyint 16, 1 thread", EncodeSettings("superfast", 18, keyint=16, threads=1), False),
]


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (ffmpeg)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def write_rgb_pipe(path: Path, frames, fps: float, settings: EncodeSettings) -> Path:
    """The writer before: rgb24 frames piped, converted to BT.709 yuv420p by ffmpeg's scaler."""
    h, w = frames[0].shape[:2]
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{fps:g}", "-i", "pipe:0", "-an",
        "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
               "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
        *settings.ffmpeg_args(), "-pix_fmt", "yuv420p",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-movflags", "+faststart", str(path),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for frame in frames:  # frame by frame, like VideoWriter
        proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg failed")
    return path


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
    parser.add_argument("--repeat", type=int, default=3,
                        help="encodes per setting, interleaved over the settings; the cheapest is kept")
    args = parser.parse_args(argv)

    videos, fps = example_frames(args.frames)
    shipped = {"positive condition": CONDITION_ENCODING, "preview panel": DISPLAY_ENCODING}
    print(f"profiles in steadydancer.video: condition files {CONDITION_ENCODING}, previews {DISPLAY_ENCODING}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, frames in videos.items():
            frames = [np.ascontiguousarray(f) for f in frames]
            h, w = frames[0].shape[:2]
            best = {name: (float("inf"), 0.0) for name, _, _ in CANDIDATES}
            files = {}
            for rep in range(args.repeat):  # interleaved: a slow spell of the machine hits every setting
                for i, (name, settings, rgb_pipe) in enumerate(CANDIDATES):
                    path = Path(tmp) / f"{i}.mp4"
                    cpu0, t0 = cpu_seconds(), time.perf_counter()
                    if rgb_pipe:
                        write_rgb_pipe(path, frames, fps, settings)
                    else:
                        write_video(path, frames, fps, settings=settings)
                    best[name] = min(best[name], (cpu_seconds() - cpu0, time.perf_counter() - t0))
                    files[name] = path
            print(f"\n{kind}: {len(frames)} frames {w}x{h} at {fps:g} fps; cheapest of {args.repeat}")
            print(f"{'setting':34s} {'cpu s':>6s} {'x first':>7s} {'wall s':>7s} {'KiB':>6s} {'kbit/s':>7s} "
                  f"{'PSNR dB':>8s}")
            base = None
            for name, settings, rgb_pipe in CANDIDATES:
                cpu, wall = best[name]
                size = files[name].stat().st_size
                decoded = read_video(files[name], fps=0).frames
                quality = np.mean([psnr(a, b) for a, b in zip(decoded, frames)])
                base = base or cpu
                mark = "  <-" if settings == shipped[kind] and not rgb_pipe else ""
                print(f"{name:34s} {cpu:6.3f} {cpu / base:7.2f} {wall:7.3f} {size / 1024:6.0f} "
                      f"{size * 8 / 1000 / (len(frames) / fps):7.0f} {quality:8.2f}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
