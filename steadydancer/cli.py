"""``python -m steadydancer pose|generate`` -- the command line wires the package together.

Errors the user can fix (no person found, unreadable video, missing weights) are printed as one
clear line and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import settings
from .errors import MissingWeightsError, SteadyDancerInputError


class _Progress:
    """Progress on stderr: one updating line on a terminal, a line per stage otherwise."""

    def __init__(self, stream=None):
        # sys.stderr at call time, not at import (a test runner may have swapped and closed it since).
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
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


class _Silent:
    """The progress of ranks other than 0 under torchrun: nothing."""

    def __call__(self, fraction: float, message: str) -> None:
        pass

    def done(self, message: str) -> None:
        pass


def _flag(setting) -> str:
    return "--" + setting.name.replace("_", "-")


def _add_range(group, setting, *aliases, default=None, help=None, **kwargs) -> None:
    """An option for a :class:`~steadydancer.settings.Range`: its name, type and help from the table
    (the value is checked against the table's limits when the command runs)."""
    group.add_argument(_flag(setting), *aliases, dest=setting.name, type=int if setting.integer else float,
                       default=default, help=help or f"{setting.help} (default {setting.default})", **kwargs)


def _add_pose_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pose path")
    _add_range(g, settings.FPS, default=None, help=settings.FPS.help)
    g.add_argument(_flag(settings.FRAME_RATE), dest="frame_rate", choices=tuple(settings.FRAME_RATE.choices),
                   default=settings.FRAME_RATE.default, help=settings.FRAME_RATE.help)
    g.add_argument("--max-frames", type=int, default=None, help="read at most this many driving frames")
    _add_range(g, settings.SMOOTH, default=settings.SMOOTH.default)
    g.add_argument("--no-repair", action="store_true", help="do not repair corrupted frames")
    g.add_argument("--align", dest="align_mode", choices=tuple(settings.ALIGN_MODE.choices),
                   default=settings.ALIGN_MODE.default, help=settings.ALIGN_MODE.help)
    _add_range(g, settings.ALIGNMENT_FRAME, default=None, help="driving frame that sets the body proportions "
               "(default: chosen automatically)")
    _add_range(g, settings.LEAD_IN_FRAMES, "--lead-in", default=settings.LEAD_IN_FRAMES.default)
    _add_range(g, settings.SEED, default=settings.SEED.default,
               help=f"seed (negative pose augmentation; and sampling for generate; default {settings.SEED.default})")
    g.add_argument("--draw-face", action="store_true", help="draw face points (the official conditions do not)")


def _pose_options(args):
    from .pose.path import PoseOptions

    if args.frame_rate == "official" and args.fps is not None:
        raise SteadyDancerInputError(
            "--frame-rate official keeps every native frame of the clip: do not give --fps with it.")
    return PoseOptions(
        fps=settings.FPS.default if args.fps is None else args.fps, frame_rate=args.frame_rate,
        conditioning=getattr(args, "conditioning", settings.CONDITIONING.default), max_frames=args.max_frames,
        smooth=args.smooth, repair=not args.no_repair,
        align_mode=args.align_mode, alignment_frame=args.alignment_frame, lead_in_frames=args.lead_in_frames,
        seed=settings.SEED.check(args.seed), draw_face=args.draw_face,
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
    g.add_argument("--model", default=None, help="model folder, Hugging Face repo id, or a GGUF transformer file (x.gguf or repo::x.gguf; see README)")
    g.add_argument("--encoders", default=None,
                   help="Wan2.1-I2V diffusers folder or repo id for the VAE / UMT5 / CLIP (when --model has none)")
    g.add_argument("--offline", action="store_true", help="never download; use local files / the HF cache only")
    s = g.add_argument_group("sampling (defaults: the official values; a preset may change them)")
    _add_range(s, settings.NUM_FRAMES, "--frames", help=settings.NUM_FRAMES.help)
    _add_range(s, settings.NUM_INFERENCE_STEPS, "--steps")
    s.add_argument("--preset", default=settings.PRESET.default, help=" | ".join(settings.PRESET.choices))
    s.add_argument("--resolution", default=settings.RESOLUTION.default, choices=tuple(settings.RESOLUTION.choices),
                   help=settings.RESOLUTION.help)
    s.add_argument("--max-area", type=int, default=None, help="max width*height in pixels (overrides --resolution)")
    s.add_argument("--prompt", default=None, help="text prompt (default: a generic dance prompt)")
    s.add_argument("--negative-prompt", default=None, help="negative prompt (default: the official one)")
    _add_range(s, settings.GUIDANCE_SCALE, "--guidance")
    _add_range(s, settings.CONDITION_GUIDANCE_SCALE, "--condition-guidance")
    _add_range(s, settings.CONDITION_WINDOW_START)
    _add_range(s, settings.CONDITION_WINDOW_END)
    _add_range(s, settings.SHIFT)
    g.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--attention", default=None,
                   help="attention backend (diffusers' dispatcher: native, flash, _native_flash, sage, ...)")
    g.add_argument("--parallel", default=None, metavar="|".join(settings.PARALLEL_MODES), help=settings.PARALLEL_HELP)
    g.add_argument(_flag(settings.NOISE_DEVICE), dest="noise_device", choices=tuple(settings.NOISE_DEVICE.choices),
                   default=settings.NOISE_DEVICE.default, help=settings.NOISE_DEVICE.help)
    g.add_argument(_flag(settings.CONDITIONING), dest="conditioning", choices=tuple(settings.CONDITIONING.choices),
                   default=settings.CONDITIONING.default, help=settings.CONDITIONING.help)
    g.add_argument("--no-audio", action="store_true", help="do not copy the driving clip's audio")
    _add_pose_options(g)
    return parser


def run_pose(args) -> int:
    from .generation import audio_source
    from .pose.helper import start_helpers
    from .pose.path import run_pose_path, write_pose_outputs

    start_helpers()  # starts while the detector runs; draws a condition video beside this process
    progress = _Progress()
    result = run_pose_path(args.image, args.video, _pose_options(args), progress=progress)
    audio = audio_source(result) if args.audio else None
    paths = write_pose_outputs(result, args.out, audio_from=audio, progress=progress)
    progress.done(f"{len(result.aligned.positive)} frames written to {args.out}")
    report = result.cleaned.report.summary()
    if report:
        print(report)
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def run_generate(args) -> int:
    if args.parallel:
        from .parallel import check_preset, distributed_run

        check_preset(args.preset)
        with distributed_run(args.device) as run:
            return _generate(args, run)
    return _generate(args, None)


def _generate(args, run) -> int:
    """The generate command; ``run`` is this process's place in a ``--parallel`` torchrun launch
    (rank 0 runs the pose path, reports progress and writes the video; every rank denoises its share)."""
    from .generation import check_model, frame_rate_note, load_pipeline, prepare_job, run_job, write_result
    from .pose.path import run_pose_path

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise SteadyDancerInputError(f"--out must be an .mp4 file, got {out.name}")
    preset = settings.PRESET.check(args.preset)
    window = None
    if args.condition_window_start is not None or args.condition_window_end is not None:
        window = (settings.CONDITION_WINDOW_START.default if args.condition_window_start is None
                  else args.condition_window_start,
                  settings.CONDITION_WINDOW_END.default if args.condition_window_end is None
                  else args.condition_window_end)
    sampling = settings.SamplingSettings.resolve(
        preset, num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
        condition_guidance_scale=args.condition_guidance_scale, condition_window=window, shift=args.shift)
    if args.num_frames is not None:
        settings.NUM_FRAMES.check(args.num_frames)
    max_area = args.max_area or settings.RESOLUTION_AREAS[settings.RESOLUTION.check(args.resolution)]
    main_rank = run is None or run.is_main
    progress = _Progress() if main_rank else _Silent()
    device, attention, spec = args.device, args.attention, None
    if run is not None:
        from . import parallel

        parallel.quiet_unless_main(run)
        spec = parallel.parse_parallel(args.parallel, run.world_size)
        attention = parallel.attention_backend_for(spec, args.attention)
        device = run.device
    # Fail before the (minutes-long) pose path when the weights or the GPU are not there.
    check_model(args.model, device=device, offline=args.offline or None, encoders=args.encoders, preset=preset)
    found = {}

    def pose_work():
        found["poses"] = run_pose_path(args.image, args.video, _pose_options(args),
                                       progress=lambda f, m: progress(0.1 * f, m))
        job = prepare_job(found["poses"], max_area=max_area, num_frames=args.num_frames,
                          split=spec.world_size if spec else 1)
        progress(0.1, frame_rate_note(found["poses"]))
        return job

    # With --parallel, rank 0 runs the pose path (the CPU-heavy detector) once and hands every rank the job.
    job = pose_work() if run is None else parallel.share_from_main(run, pose_work)
    progress(0.1, f"loading the model ({preset})")
    if run is not None:  # rank 0 downloads what is missing, then every rank loads from the cache
        parallel.share_from_main(run, lambda: parallel.prefetch_weights(args.model, args.encoders, preset,
                                                                         args.offline or None, spec))
    pipe = load_pipeline(args.model, preset=preset, device=device, offline=args.offline or None,
                         encoders=args.encoders, attention_backend=attention)
    if run is not None:
        parallel.quiet_unless_main(run, pipe)
        parallel.enable_context_parallel(pipe, spec)
        progress(0.12, f"{spec.describe()} ({run.world_size} processes)")
    frames = run_job(pipe, job, sampling, prompt=args.prompt or settings.DEFAULT_PROMPT,
                     negative_prompt=args.negative_prompt, seed=args.seed,
                     progress=lambda f, m: progress(0.15 + 0.85 * f, m), noise_device=args.noise_device)
    if not main_rank:
        return 0
    write_result(out, frames, job, found["poses"], audio=not args.no_audio)
    progress.done(f"{len(frames)} frames written to {out} at {job.fps:g} fps")
    print(frame_rate_note(found["poses"]))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "pose":
            return run_pose(args)
        return run_generate(args)
    except (SteadyDancerInputError, MissingWeightsError) as exc:
        # Under torchrun --parallel every rank stops with the same error; rank 0 alone says it.
        if not getattr(args, "parallel", None) or os.environ.get("RANK", "0") == "0":
            print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
