"""``python -m steadydancer pose|generate`` -- the command line wires the package together.

Errors the user can fix (no person found, unreadable video, missing weights) are printed as one
clear line and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .constants import MODEL_FPS
from .errors import MissingWeightsError, SteadyDancerInputError


class _Progress:
    """Progress on stderr: one updating line on a terminal, a line per stage otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.last_message = None
        self.start = time.time()

    def __call__(self, fraction: float, message: str) -> None:
        line = f"[{100 * fraction:5.1f}%] {message}"
        if self.tty:
            self.stream.write("\r" + line.ljust(78)[:78])
            self.stream.flush()
        elif message != self.last_message:
            self.stream.write(line + "\n")
        self.last_message = message

    def done(self, message: str) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.write(f"{message} ({time.time() - self.start:.1f} s)\n")


def _add_pose_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pose path")
    g.add_argument("--fps", type=float, default=MODEL_FPS,
                   help=f"resample the driving clip to this frame rate (default {MODEL_FPS}, the model's; 0 keeps every frame)")
    g.add_argument("--max-frames", type=int, default=None, help="read at most this many driving frames")
    g.add_argument("--smooth", type=float, default=0.3, help="temporal smoothing strength 0..1 (0 = off; default 0.3)")
    g.add_argument("--no-repair", action="store_true", help="do not repair corrupted frames")
    g.add_argument("--align", choices=("auto", "official", "robust"), default="auto",
                   help="alignment: auto (default: the official SteadyDancer/MusePose rule, robust where it "
                        "fails), official, or robust")
    g.add_argument("--alignment-frame", type=int, default=None,
                   help="driving frame that sets the body proportions (default: chosen automatically)")
    g.add_argument("--lead-in", type=int, default=0,
                   help="frames that move from the character's own pose to the first driving pose")
    g.add_argument("--seed", type=int, default=0, help="seed (negative pose augmentation; and sampling for generate)")
    g.add_argument("--draw-face", action="store_true", help="draw face points (the official conditions do not)")


def _pose_options(args):
    from .pose.path import PoseOptions

    return PoseOptions(
        fps=args.fps, max_frames=args.max_frames, smooth=args.smooth, repair=not args.no_repair,
        align_mode=args.align, alignment_frame=args.alignment_frame, lead_in_frames=args.lead_in,
        seed=args.seed, draw_face=args.draw_face,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m steadydancer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pose", help="extract, align and render the pose conditions (CPU)")
    p.add_argument("--image", required=True, help="character image")
    p.add_argument("--video", required=True, help="driving video, or a poses.json written earlier")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--audio", action="store_true", help="copy the driving clip's audio into preview.mp4")
    _add_pose_options(p)

    g = sub.add_parser("generate", help="pose path, then the SteadyDancer pipeline (GPU)")
    g.add_argument("--image", required=True, help="character image")
    g.add_argument("--video", required=True, help="driving video, or a poses.json written by `pose`")
    g.add_argument("--out", required=True, help="output .mp4")
    g.add_argument("--model", default=None, help="model folder or Hugging Face repo id (see README)")
    g.add_argument("--encoders", default=None,
                   help="Wan2.1-I2V diffusers folder or repo id for the VAE / UMT5 / CLIP (when --model has none)")
    g.add_argument("--offline", action="store_true", help="never download; use local files / the HF cache only")
    g.add_argument("--frames", type=int, default=None, help="frames to generate (4n+1; default: the whole clip, up to 81 per window)")
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default 40; the fast preset 4)")
    g.add_argument("--preset", default="quality", help="quality | balanced | low-vram | fast")
    g.add_argument("--resolution", default="720p", choices=("480p", "720p"),
                   help="max area class: 720p = 1024*576 (official, default), 480p = 832*480")
    g.add_argument("--max-area", type=int, default=None, help="max width*height in pixels (overrides --resolution)")
    g.add_argument("--prompt", default=None, help="text prompt (default: a generic dance prompt)")
    g.add_argument("--negative-prompt", default=None, help="negative prompt (default: Wan's)")
    g.add_argument("--guidance", type=float, default=None, help="text guidance scale (default 5.0)")
    g.add_argument("--condition-guidance", type=float, default=None, help="pose-condition guidance scale")
    g.add_argument("--shift", type=float, default=None, help="flow shift (default 5.0; 3.0 advised for 480p)")
    g.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--no-audio", action="store_true", help="do not copy the driving clip's audio")
    _add_pose_options(g)
    return parser


def run_pose(args) -> int:
    from .pose.path import run_pose_path, write_pose_outputs

    progress = _Progress()
    result = run_pose_path(args.image, args.video, _pose_options(args), progress=progress)
    audio = result.driving.video if args.audio else None
    paths = write_pose_outputs(result, args.out, audio_from=audio, progress=progress)
    progress.done(f"{len(result.aligned.positive)} frames written to {args.out}")
    report = result.cleaned.report.summary()
    if report:
        print(report)
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def run_generate(args) -> int:
    from .constants import DEFAULT_PROMPT, MODEL_FPS, RESOLUTION_AREAS, size_for_area
    from .generation import check_model, generate_video, load_pipeline
    from .pose.path import render_conditions, run_pose_path
    from .video import write_video

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise SteadyDancerInputError(f"--out must be an .mp4 file, got {out.name}")
    progress = _Progress()
    # Fail before the (minutes-long) pose path when the weights or the GPU are not there.
    check_model(args.model, device=args.device, offline=args.offline or None, encoders=args.encoders)
    options = _pose_options(args)
    poses = run_pose_path(args.image, args.video, options, progress=lambda f, m: progress(0.1 * f, m))
    max_area = args.max_area or RESOLUTION_AREAS[args.resolution]
    size = size_for_area(*poses.reference.size, max_area)
    positive, negative = render_conditions(poses.reference, poses.aligned, options, size=size)
    progress(0.1, f"loading the model ({args.preset})")
    pipe = load_pipeline(args.model, preset=args.preset, device=args.device, offline=args.offline or None,
                         encoders=args.encoders)
    frames = generate_video(
        pipe, poses.reference.image, positive, negative,
        prompt=args.prompt or DEFAULT_PROMPT, negative_prompt=args.negative_prompt,
        num_frames=args.frames, steps=args.steps, guidance_scale=args.guidance,
        condition_guidance_scale=args.condition_guidance, shift=args.shift, seed=args.seed,
        max_area=max_area, progress=lambda f, m: progress(0.15 + 0.85 * f, m),
    )
    # The driving clip's sound fits only when the video starts with the clip (no lead-in).
    audio = None if args.no_audio or options.lead_in_frames else poses.driving.video
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, frames, MODEL_FPS if options.fps <= 0 else options.fps, audio_from=audio)
    progress.done(f"{len(frames)} frames written to {out}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "pose":
            return run_pose(args)
        return run_generate(args)
    except (SteadyDancerInputError, MissingWeightsError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
