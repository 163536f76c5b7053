"""The app's event handlers, as methods of :class:`Studio` (which holds the configuration it was given).

Each handler's parameters are named after the components that feed it, and its ``outputs`` are
declared next to it (:func:`event`): :mod:`studio.layout` builds every event's input and output lists
from these two declarations, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Optional, Sequence

import gradio as gr
import numpy as np

from steadydancer import settings
from steadydancer.constants import MODEL_FPS, nearest_valid_frame_count
from steadydancer.errors import MissingWeightsError, SteadyDancerInputError
from steadydancer.generation import audio_source, generation_size, prepare_job, write_result
from steadydancer.pose.path import PosePathResult, write_pose_outputs

from . import runtime
from .config import AppConfig
from .errors import GenerationCancelled, user_errors
from .inputs import (
    DrivingSource,
    file_key,
    generation_request,
    pose_options,
    project_motions,
    resolve_driving,
    resolve_image,
)
from .sessions import PoseSession, compute_poses

log = logging.getLogger("steadydancer.app")


def event(*outputs: str) -> Callable:
    """Declare the components a handler returns values for, in order."""

    def mark(fn: Callable) -> Callable:
        fn.outputs = tuple(outputs)
        return fn

    return mark


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def repair_summary(result: PosePathResult, source: DrivingSource) -> str:
    """Markdown: what was extracted, what the repair step changed, how the motion was aligned."""
    seq = result.cleaned.poses
    n_person = int(result.driving.poses.frames_with_person().sum())
    lines = [
        f"**Motion:** {source.label} — {len(seq)} frames at {seq.fps:g} fps "
        f"({len(seq) / seq.fps:.1f} s); a person in {n_person} of {len(result.driving.poses)} frames.",
    ]
    report = result.cleaned.report
    if not result.options.repair:
        lines.append("**Repair:** off.")
    elif report.events:
        lines.append(f"**Repair:** {report.summary()}.")
    else:
        lines.append("**Repair:** nothing to repair — every frame looked consistent.")
    lines.append(f"**Smoothing:** {result.options.smooth:.2f}" + (" (off)" if result.options.smooth == 0 else ""))
    info = result.aligned.info
    align = f"**Alignment:** {info.mode}"
    if getattr(info, "alignment_frames", None) is not None:
        frames = info.alignment_frames
        if isinstance(frames, (list, tuple)) and len(frames) > 6:
            frames = f"{len(frames)} frames"
        align += f", proportions from frame(s) {frames}"
    lines.append(align + ".")
    notes = list(getattr(info, "notes", None) or [])
    if notes:
        items = "\n".join(f"- {note}" for note in notes)
        lines.append(f"<details><summary>Alignment notes ({len(notes)})</summary>\n\n{items}\n</details>")
    if result.aligned.lead_in_frames:
        lines.append(f"**Lead-in:** {result.aligned.lead_in_frames} frames from the character's own pose.")
    return "\n\n".join(lines)


def comparison_frames(result: PosePathResult, positive: Sequence[np.ndarray], frames: Sequence[np.ndarray],
                      height: int = 480) -> list[np.ndarray]:
    """Side by side: the driving frame | the pose condition | the generated frame."""
    from steadydancer.pose.render import side_by_side
    from steadydancer.video import iter_video_frames

    n = len(frames)
    lead = result.aligned.lead_in_frames
    driving = []
    if result.driving.video is not None:
        driving = [f.frame for f in iter_video_frames(result.driving.video, fps=result.options.fps,
                                                      max_frames=max(n - lead, 1), max_side=height)]
    out = []
    for t in range(n):
        panels, labels = [], []
        if driving:
            panels.append(driving[min(max(t - lead, 0), len(driving) - 1)])
            labels.append("driving")
        panels += [positive[min(t, len(positive) - 1)], frames[t]]
        labels += ["pose", "SteadyDancer"]
        out.append(side_by_side(panels, labels, height=height))
    return out


class Studio:
    """The app's behaviour for one configuration: every event handler is a method."""

    def __init__(self, config: AppConfig):
        self.config = config

    # -- sessions --------------------------------------------------------------------------------
    def session(self, session) -> PoseSession:
        return session if isinstance(session, PoseSession) else PoseSession.create(self.config.tmp_root)

    # -- preview ---------------------------------------------------------------------------------
    @event("preview_video", "pose_video", "report", "poses_file", "session")
    @user_errors
    def preview_poses(self, image, driving_video, motion, num_frames, smooth, repair, align_mode, alignment_frame,
                      lead_in_frames, session=None, progress=gr.Progress()):
        """Run the pose path (CPU only) and show what the model will be conditioned on.

        Returns the side-by-side preview (driving | extracted | aligned over the character), the aligned
        pose video (the positive condition), a Markdown report of the repair and alignment, and the
        extracted poses (poses.json, reusable with any character)."""
        options = pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames)
        image = resolve_image(image)
        source = resolve_driving(driving_video, motion)
        session = self.session(session)
        result = compute_poses(session, image, source, options, runtime.progress_adapter(progress, 0.0, 0.6))
        out = session.run_dir("preview")
        paths = write_pose_outputs(result, out, audio_from=audio_source(result),
                                   progress=runtime.progress_adapter(progress, 0.6, 1.0))
        session.last_preview_key = self._preview_key(image, source, options)
        return (str(paths["preview"]), str(paths["positive"]), repair_summary(result, source), str(paths["poses"]),
                session)

    @staticmethod
    def _preview_key(image, source, options) -> tuple:
        return (file_key(image), source.key, dataclasses.astuple(options))

    @event("preview_video", "pose_video", "report", "poses_file", "session")
    def refresh_preview(self, image, driving_video, motion, num_frames, smooth, repair, align_mode,
                        alignment_frame, lead_in_frames, session=None, progress=gr.Progress()):
        """Re-run the preview after a pose control changed -- only once this clip was previewed, so a
        control never starts the detector on a clip by itself (a longer length may read more of it)."""
        skip = (gr.skip(),) * 5
        if not isinstance(session, PoseSession) or session.driving is None:
            return skip
        try:
            source = resolve_driving(driving_video, motion)
            image = resolve_image(image)
            options = pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames)
        except SteadyDancerInputError:
            return skip  # the user is still filling the inputs; Preview will say what is missing
        if session.driving[0][0] != source.key or session.last_preview_key == self._preview_key(image, source, options):
            return skip
        return self.preview_poses(image, driving_video, motion, num_frames, smooth, repair, align_mode,
                                  alignment_frame, lead_in_frames, session, progress)

    @event("preview_video", "pose_video", "report", "poses_file")
    def preview_example(self, image, driving_video, motion):
        """gr.Examples entry point (cached lazily): the preview with default pose settings."""
        outputs = self.preview_poses(image, driving_video, motion, settings.NUM_FRAMES.default,
                                     settings.SMOOTH.default, settings.REPAIR_DEFAULT, settings.ALIGN_MODE.default,
                                     settings.ALIGNMENT_FRAME.default, settings.LEAD_IN_FRAMES.default, None,
                                     progress=None)
        return outputs[:4]

    # -- generation ------------------------------------------------------------------------------
    @event("result_video", "comparison_video", "seed_used", "settings_used", "session")
    @user_errors
    def generate(self, image, driving_video, motion, prompt, negative_prompt, resolution, num_frames,
                 num_inference_steps, guidance_scale, condition_guidance_scale, condition_window_start,
                 condition_window_end, shift, seed, randomize_seed, preset, smooth, repair, align_mode,
                 alignment_frame, lead_in_frames, session=None, progress=gr.Progress()):
        """Animate the character with the driving motion.

        Returns the generated video, a side-by-side comparison (driving | pose | result), the seed used
        and every setting used (JSON)."""
        from steadydancer.video import write_video

        config = self.config
        request = generation_request(prompt, negative_prompt, resolution, num_frames, num_inference_steps,
                                     guidance_scale, condition_guidance_scale, condition_window_start,
                                     condition_window_end, shift, seed, randomize_seed, preset, config.resolutions)
        if config.zero_gpu:
            request = dataclasses.replace(request, preset=config.preset)
        options = pose_options(request.num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames)
        image = resolve_image(image)
        source = resolve_driving(driving_video, motion)
        runtime.check_runtime(config)  # before any work: say what is missing right away
        session = self.session(session)
        session.cancel.clear()

        result = compute_poses(session, image, source, options, runtime.progress_adapter(progress, 0.0, 0.1))
        runtime.progress_adapter(progress)(0.12, "Rendering the pose conditions")
        job = prepare_job(result, max_area=request.max_area, num_frames=request.num_frames)
        if job.num_frames != request.num_frames:
            gr.Info(f"The motion is {len(result.aligned.positive)} frames long: generating {job.num_frames} frames "
                    f"instead of {request.num_frames}.")
            request = dataclasses.replace(request, num_frames=job.num_frames)
        estimate = runtime.estimate_seconds(config, request, job.width, job.height)
        if config.zero_gpu and runtime.duration_for(config, request, job.width, job.height) > config.zero_gpu_max_seconds:
            raise SteadyDancerInputError(
                f"This needs about {format_seconds(estimate)} of GPU time; ZeroGPU allows at most "
                f"{config.zero_gpu_max_seconds} s per call. Use fewer frames, fewer steps, 480p or the fast preset.")
        gr.Info(f"Generating {job.num_frames} frames at {job.width}×{job.height}: about "
                f"{format_seconds(estimate)} of GPU time.")

        if session.cancel.is_set():  # Cancel was pressed while the poses were being prepared
            raise GenerationCancelled()
        started = time.time()
        frames = runtime.run_generation(job, request, config, progress=progress,
                                        cancel=None if config.zero_gpu else session.cancel)
        elapsed = time.time() - started

        runtime.progress_adapter(progress)(0.96, "Writing the videos")
        out = session.run_dir("generate")
        result_path = write_result(out / "steadydancer.mp4", frames, job, result)
        comparison_path = write_video(out / "comparison.mp4", comparison_frames(result, job.positive, frames),
                                      job.fps, audio_from=audio_source(result))
        used = request.to_dict()
        used.update(width=int(frames[0].shape[1]), height=int(frames[0].shape[0]), model=config.model,
                    device=runtime.device_for(config), seconds=round(elapsed, 1),
                    estimated_seconds=round(estimate, 1), motion=source.label, pose=dataclasses.asdict(options))
        return str(result_path), str(comparison_path), request.seed, used, session

    @event()
    def cancel_generation(self, session=None):
        """The Cancel button: stop the running generation of this session at its next step."""
        if isinstance(session, PoseSession):
            session.cancel.set()
        gr.Info("Cancelling after the current step…")

    # -- small helpers of the page ---------------------------------------------------------------
    @event("estimate")
    def estimate_text(self, image, resolution, num_frames, num_inference_steps, guidance_scale,
                      condition_guidance_scale, condition_window_start, condition_window_end, preset) -> str:
        """The estimate shown under the Generate button (updated as settings change)."""
        config = self.config
        try:
            request = generation_request("", "", resolution, num_frames, num_inference_steps, guidance_scale,
                                         condition_guidance_scale, condition_window_start, condition_window_end,
                                         None, 0, False, preset, config.resolutions)
        except SteadyDancerInputError as exc:
            return f"**Check the settings:** {exc}"
        size = (480, 832)
        if image:
            try:
                from PIL import Image

                with Image.open(image) as im:
                    size = im.size
            except Exception:
                size = (832, 480)
        w, h = generation_size(size, request.max_area)
        try:
            seconds = runtime.estimate_seconds(config, request, w, h)
        except Exception as exc:  # the estimate must never break the page
            log.warning("GPU time estimate failed: %s", exc)
            return ""
        n = request.num_frames
        where = "ZeroGPU" if config.zero_gpu else "an H200-class GPU"
        text = (f"Estimated GPU time: **{format_seconds(seconds)}** on {where} for {n} frames "
                f"({n / MODEL_FPS:.1f} s) at {w}×{h}, {request.sampling.num_inference_steps} steps")
        if config.zero_gpu:
            duration = runtime.duration_for(config, request, w, h)
            if duration > config.zero_gpu_max_seconds:
                return text + (f". **Too long:** more than ZeroGPU's {config.zero_gpu_max_seconds} s per call: use "
                               "fewer frames or steps, 480p or the fast preset.")
            text += f" (requests {duration} s)"
        return text + "."

    @event("status")
    def runtime_status(self) -> str:
        """Markdown: where generation would run and whether it can (the details folded away)."""
        head = "**Preview poses:** ready (CPU) · **Generate:** "
        try:
            runtime.check_runtime(self.config)
        except MissingWeightsError as exc:
            first, _, rest = str(exc).partition("\n")
            text = f"{head}unavailable here — {first}"
            if rest.strip():
                text += f"\n\n<details><summary>What to do</summary>\n\n```text\n{rest.strip()}\n```\n</details>"
            return text
        except Exception as exc:  # never break the page over the status line
            log.warning("runtime check failed: %s", exc)
            return f"{head}unknown ({type(exc).__name__}: {exc})"
        if self.config.zero_gpu:
            where = "ZeroGPU"
        elif self.config.generation_slots > 1:
            where = f"{self.config.generation_slots} devices (`{', '.join(self.config.devices)}`, one generation each)"
        else:
            where = f"`{runtime.device_for(self.config)}`"
        return f"{head}ready on {where} with `{self.config.model}`"

    @event("num_inference_steps", "guidance_scale", "condition_guidance_scale", "shift")
    def sampling_defaults(self, preset, resolution) -> tuple[int, float, float, float]:
        """(steps, guidance, condition guidance, shift) a preset samples with: the official settings,
        or the preset's own (fast: 4 steps, no guidance passes)."""
        sampling = settings.SamplingSettings.resolve(settings.PRESET.check(preset))
        default_shift = self.config.resolutions.get(resolution, (0, settings.SHIFT_DEFAULT))[1]
        shift = sampling.shift if sampling.shift is not None else default_shift
        return sampling.num_inference_steps, sampling.guidance_scale, sampling.condition_guidance_scale, shift

    @event("shift")
    def resolution_shift(self, resolution) -> float:
        return self.config.resolutions[resolution][1]

    @event("driving_video")
    def show_motion(self, motion):
        entry = project_motions().get(motion or "")
        if entry is None:
            return gr.skip()
        return str(entry["video"]) if entry["video"] else None

    @event("length_text")
    def length_text(self, num_frames) -> str:
        n = nearest_valid_frame_count(int(num_frames))
        return f"{n} frames = {n / MODEL_FPS:.2f} s at {MODEL_FPS} fps"
