"""Frames per second of every stage of the pose path, and of the bare mediapipe detector.

    python benchmarks/pose_path.py                                   # synthetic 1280x720 clip
    python benchmarks/pose_path.py --video ../shared/media/driving_seated_gestures.mp4 --frames 112

The synthetic clip is the astronaut photo (examples/astronaut.png) swaying over a 1280x720 stage
at 30 fps, written with H.264 like a real upload. Every stage runs on the same clip, resampled to
16 fps (the model's rate) and cut to ``--frames`` frames:

    decode            ffmpeg decode + resample + downscale to the detection size (steadydancer.video)
    bare detector     one mediapipe Holistic graph (tracking) on those decoded frames: the baseline
    extract 1 worker  extract_sequence on the same frames in memory, one tracking worker
    extract 2 workers the same on two threads / two segments (if the clip is long enough)
    extract from file extract_video_poses: decode and detect together (auto workers)
    clean, align, render  the later stages of steadydancer.pose.path on those poses
    run_pose_path     reference + extract + clean + align, from the file (what the app caches)
    whole path        run_pose_path + render_conditions (positive and negative condition frames)

Each stage is timed ``--repeat`` times and the fastest run is kept (the machine is shared; the
fastest run is the one least disturbed). "x bare" is the stage's time over the bare detector's;
"cpu ms/frame" is the CPU time of all threads and of ffmpeg per frame, which other load disturbs
less than wall time (with C idle cores a stage cannot beat C * 1000 / cpu_ms frames/s).
Note the real seated clip ends with ~3 s of an end card without a person; detection is cheaper
there, so use ``--frames 112`` (the part with the person) for honest numbers.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steadydancer.constants import MODEL_FPS  # noqa: E402
from steadydancer.pose import extract as ex  # noqa: E402

ASTRONAUT = REPO / "examples" / "astronaut.png"
REAL_CLIP = REPO.parent / "shared" / "media" / "driving_seated_gestures.mp4"


def synthesize_clip(path: Path, frames_at_16fps: int, size=(1280, 720), source_fps: int = 30) -> Path:
    """The astronaut (scaled to 2/3 of the frame height) swaying and bobbing on a grey stage."""
    import imageio_ffmpeg
    from PIL import Image

    width, height = size
    side = height * 2 // 3
    person = np.asarray(Image.open(ASTRONAUT).convert("RGB").resize((side, side), Image.BICUBIC))
    count = int(np.ceil(frames_at_16fps / MODEL_FPS * source_fps)) + 1
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=source_fps, codec="libx264",
                                         pix_fmt_out="yuv420p", quality=None, output_params=["-crf", "20"],
                                         macro_block_size=1)
    writer.send(None)
    for t in range(count):
        phase = 2 * np.pi * t / (2 * source_fps)  # one sway every 2 s
        x0 = (width - side) // 2 + int(round(0.25 * width * np.sin(phase)))
        y0 = height - side - 10 + int(round(8 * np.cos(2 * phase)))
        canvas = np.full((height, width, 3), 105, np.uint8)
        canvas[max(y0, 0):y0 + side, x0:x0 + side] = person[max(-y0, 0):height - y0]
        writer.send(canvas)
    writer.close()
    return path


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (ffmpeg)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn, repeat: int):
    """((wall seconds, cpu seconds) of the fastest run, result of the last run)."""
    best, result = (float("inf"), 0.0), None
    for _ in range(repeat):
        cpu, start = cpu_seconds(), time.perf_counter()
        result = fn()
        wall = time.perf_counter() - start
        if wall < best[0]:
            best = (wall, cpu_seconds() - cpu)
    return best, result


def bare_detector(frames: list[np.ndarray]) -> int:
    """mediapipe alone: one tracking Holistic graph, landmarks left as protobufs."""
    from mediapipe.python.solutions import holistic

    found = 0
    with holistic.Holistic(static_image_mode=False, model_complexity=ex.MODEL_COMPLEXITY) as graph:
        for frame in frames:
            found += graph.process(frame).pose_landmarks is not None
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None,
                        help=f"driving clip (default: a synthetic 1280x720 clip; a real one: {REAL_CLIP})")
    parser.add_argument("--frames", type=int, default=160, help="frames at 16 fps (default 160 = 10 s)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per stage, the fastest is kept")
    parser.add_argument("--detect-side", type=int, default=ex.VIDEO_DETECT_MAX_SIDE,
                        help=f"longer side of the frames handed to mediapipe (default {ex.VIDEO_DETECT_MAX_SIDE})")
    parser.add_argument("--image", type=Path, default=ASTRONAUT, help="character image for the whole path")
    args = parser.parse_args(argv)

    from steadydancer.video import iter_video_frames, probe_video

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            video = synthesize_clip(Path(tmp) / "synthetic_720p.mp4", args.frames)
        info = probe_video(video)
        n_req = args.frames
        print(f"clip: {video.name} {info.width}x{info.height} {info.fps:g} fps {info.duration:.1f} s; "
              f"{n_req} frames at {MODEL_FPS} fps; detection side {args.detect_side}; "
              f"{ex.available_cores()} cores; load {os.getloadavg()[0]:.1f}; mediapipe {ex.detector_version()}")

        rows: list[tuple[str, tuple[float, float], int, str]] = []  # (stage, (wall, cpu) s, frames, note)

        def decode():
            return [vf.frame for vf in iter_video_frames(video, fps=MODEL_FPS, max_frames=n_req,
                                                         max_side=args.detect_side, info=info)]

        seconds, frames = timed(decode, args.repeat)
        n = len(frames)
        rows.append(("decode (ffmpeg, 16 fps, downscale)", seconds, n, f"{frames[0].shape[1]}x{frames[0].shape[0]}"))

        bare_s, found = timed(lambda: bare_detector(frames), args.repeat)
        rows.append(("bare detector (Holistic.process)", bare_s, n, f"person in {found}/{n}"))

        common = dict(fps=MODEL_FPS, width=info.width, height=info.height, detect_max_side=args.detect_side)
        seconds, seq = timed(lambda: ex.extract_sequence(frames, workers=1, **common), args.repeat)
        found = seq.meta["frames_with_person"]
        rows.append(("extract, 1 worker (frames in memory)", seconds, n, f"person in {found}/{n}"))
        if ex.plan_segments(n, 2) != [0]:
            seconds, seq2 = timed(lambda: ex.extract_sequence(frames, workers=2, **common), args.repeat)
            starts = seq2.meta["segment_starts"]
            rows.append(("extract, 2 workers (frames in memory)", seconds, n, f"segments {starts}"))
        for workers in (1, None):
            seconds, _ = timed(lambda: ex.extract_video_poses(video, fps=MODEL_FPS, max_frames=n_req, workers=workers,
                                                              detect_max_side=args.detect_side,
                                                              min_person_fraction=0.0), args.repeat)
            rows.append((f"extract from file (decode + detect), workers={workers or 'auto'}", seconds, n, ""))

        try:
            from steadydancer.pose import path as pose_path
        except ImportError as exc:  # the later stages are optional for this benchmark
            print(f"(pose path stages skipped: {exc})")
            pose_path = None
        if pose_path is not None:
            options = pose_path.PoseOptions(max_frames=n_req)
            seconds, reference = timed(lambda: pose_path.prepare_reference(args.image), args.repeat)
            size = f"{reference.size[0]}x{reference.size[1]}"
            rows.append(("reference image (static detection, once)", seconds, 0, size))
            driving = pose_path.DrivingPoses(poses=seq, video=Path(video))
            seconds, cleaned = timed(lambda: pose_path.clean_driving(driving, options), args.repeat)
            rows.append(("clean (repair + smooth)", seconds, n, ""))
            seconds, aligned = timed(lambda: pose_path.align_driving(reference, cleaned, options), args.repeat)
            rows.append(("align (+ negative)", seconds, n, ""))
            seconds, _ = timed(lambda: pose_path.render_conditions(reference, aligned, options), args.repeat)
            rows.append(("render positive + negative", seconds, n, f"at {size}"))

            best = None
            for _ in range(args.repeat):  # both rows from the same (fastest) run
                (path_t, result) = timed(lambda: pose_path.run_pose_path(args.image, video, options), 1)
                (render_t, _) = timed(lambda: pose_path.render_conditions(result.reference, result.aligned, options), 1)
                if best is None or path_t[0] + render_t[0] < best[0][0] + best[1][0]:
                    best = (path_t, render_t, len(result.aligned.positive))
            path_t, render_t, count = best
            rows.append(("run_pose_path (reference+extract+clean+align)", path_t, count, "file -> aligned poses"))
            rows.append(("WHOLE PATH (run_pose_path + render_conditions)",
                         (path_t[0] + render_t[0], path_t[1] + render_t[1]), count, "file -> condition frames"))

        print(f"\n{'stage':52s} {'seconds':>8s} {'frames/s':>9s} {'x bare':>7s} {'cpu ms/frame':>13s}  note")
        for stage, (seconds, cpu), count, note in rows:
            fps = f"{count / seconds:9.1f}" if count and seconds else f"{'-':>9s}"
            ratio = f"{seconds / bare_s[0]:7.2f}"
            cpu_ms = f"{1000 * cpu / count:13.1f}" if count else f"{1000 * cpu:10.1f} ms"
            print(f"{stage:52s} {seconds:8.2f} {fps} {ratio} {cpu_ms}  {note}")
        print("\ncpu ms/frame: CPU time of all threads and of ffmpeg per frame; less disturbed by other "
              "load than wall time\n(on an idle machine with C cores a stage cannot beat "
              "C * 1000 / cpu_ms frames/s).")
        print(f"\nload after: {os.getloadavg()[0]:.1f} (2 cores shared with other work inflate every number)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
