"""The app's event handlers, as methods of :class:`Studio` (which holds the configuration it was given).

Each handler's parameters are named after the components that feed it, and its ``outputs`` are
declared next to it (:func:`event`): :mod:`studio.layout` builds every event's input and output lists
from these two declarations, so they cannot drift apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from typing import Callable, Optional, Sequence

import gradio as gr
import numpy as np

from steadydancer import settings
from steadydancer.constants import MODEL_FPS, nearest_valid_frame_count
from steadydancer.errors import MissingWeightsError, SteadyDancerInputError
from steadydancer.generation import audio_source, frame_rate_note, generation_size, prepare_job, write_result
from steadydancer.pose.helper import start_helpers
from steadydancer.pose.outputs import iter_pose_outputs
from steadydancer.pose.path import PosePathResult

from . import runtime
from .config import AppConfig
from .disconnect import CANCELLED, DISCONNECTED, ClientGone, event_watch
from .errors import GenerationCancelled, PreviewCancelled, user_errors
from .inputs import (
    DrivingSource,
    file_key,
    generation_request,
    is_blank,
    pose_options,
    project_motions,
    resolve_driving,
    resolve_image,
)
from .memory import fix_mmap_threshold, release_free_memory
from .session_store import SessionStore
from .sessions import (
    PoseSession,
    compute_poses,
    decode_on_arrival,
    delete_session,
    session_character,
    sweep_old_sessions,
)

log = logging.getLogger("steadydancer.app")

#: What a preview writes: the files it shows (the positive video with the condition files'
#: settings, like the CLI's), and no negative video: nothing shows it and nothing reads it (the
#: preview never returned it, so Gradio never served it; generation renders its own conditions).
PREVIEW_OUTPUTS = dict(outputs=("poses", "aligned_poses", "positive", "preview"))
#: The preview's first frames (one second at 16 fps), shown while the rest is rendered and encoded.
EARLY_PREVIEW_FRAMES = 16


def event(*outputs: str) -> Callable:
    """Declare the components a handler returns values for, in order."""

    def mark(fn: Callable) -> Callable:
        fn.outputs = tuple(outputs)
        return fn

    return mark


def _stop_aware(progress, session: PoseSession):
    """The event's gr.Progress for the denoising loop: raises when the client has gone, and turns a
    Gradio-side cancel into the session's Cancel flag (run_generation checks it at every step)."""
    watch = event_watch()

    def call(fraction, desc=None, **kwargs):
        status = watch()
        if status == DISCONNECTED:
            raise ClientGone()
        if status == CANCELLED:
            session.cancel.set()
        return progress(fraction, desc=desc, **kwargs)

    return call


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def repair_summary(result: PosePathResult, source: DrivingSource, people: Optional[str] = None) -> str:
    """Markdown: what was extracted, what the repair step changed, how the motion was aligned (and,
    for a photo of several people, which one is animated)."""
    seq = result.cleaned.poses
    n_person = int(result.driving.poses.frames_with_person().sum())
    lines = [f"**Character:** {people}"] if people else []
    lines += [
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
    lines.append(frame_rate_note(result).replace("Frame rate:", "**Frame rate:**", 1))
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
    from steadydancer.pose.outputs import driving_frame_source
    from steadydancer.pose.render import side_by_side

    n = len(frames)
    lead = result.aligned.lead_in_frames
    # The clip's frames kept by the extraction or the preview (decoded only if there are none).
    driving = driving_frame_source(result.driving, max(n - lead, 1), result.options, height)
    out = []
    for t in range(n):
        panels, labels = [], []
        if driving is not None:
            panels.append(driving(max(t - lead, 0)))
            labels.append("driving")
        panels += [positive[min(t, len(positive) - 1)], frames[t]]
        labels += ["pose", "SteadyDancer"]
        out.append(side_by_side(panels, labels, height=height))
    return out


def watched(progress_fn: Callable[[float, str], None], session: PoseSession,
            cancelled: type[Exception]) -> Callable[[float, str], None]:
    """A progress callback that stops the work (raises) once the client has gone or Cancel was
    pressed -- checked at every update (every frame of the pose path, every denoising step)."""
    watch = event_watch()

    def call(fraction: float, message: str) -> None:
        status = watch()
        if status == DISCONNECTED:
            raise ClientGone()
        if status == CANCELLED or session.cancel.is_set():
            raise cancelled()
        progress_fn(fraction, message)

    return call


class Studio:
    """The app's behaviour for one configuration: every event handler is a method.

    Sessions live in :attr:`sessions` (a :class:`~studio.session_store.SessionStore` keyed by Gradio's
    session hash, one per tab or API client): handlers take the ``gr.Request`` and hold their session
    while they run. Called directly with a :class:`PoseSession` (tests, tools), a handler uses that one
    and returns it after its outputs."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.server_loop = None  #: the server's event loop, once it runs (studio.layout.server_lifespan)
        self.sessions: SessionStore[PoseSession] = SessionStore(
            lambda key: PoseSession.create(config.tmp_root), delete_session, max_sessions=config.max_sessions,
            idle_seconds=config.session_idle_seconds)
        start_helpers()  # a process that draws the pose video beside this one's threads (pose.helper)
        fix_mmap_threshold()  # freed photo-sized blocks go back to the system (studio.memory)

    # -- sessions --------------------------------------------------------------------------------
    def session(self, session) -> PoseSession:
        return session if isinstance(session, PoseSession) else PoseSession.create(self.config.tmp_root)

    @contextlib.contextmanager
    def held_session(self, session, gr_request) -> PoseSession:
        """The event's session: the one passed in, else the request's (created on first use), held
        while the event runs; when its client disconnects mid-event the session closes (files go)."""
        gone = None
        try:
            if isinstance(session, PoseSession):
                yield session
                return
            key = getattr(gr_request, "session_hash", None) or f"anonymous-{uuid.uuid4().hex}"
            with self.sessions.use(key) as held:
                try:
                    yield held
                except ClientGone:
                    gone = key
                    raise
        finally:
            if gone is not None:  # released above: closed now (no output files to hand over)
                self.sessions.end(gone)
            # The full-size photo decode, the detector's buffers: freed, but kept by the allocator in
            # this worker thread's arena unless given back (studio.memory).
            release_free_memory()

    def request_session(self, gr_request) -> Optional[PoseSession]:
        """The open session of a request, if any (never created)."""
        return self.sessions.get(getattr(gr_request, "session_hash", None) or "")

    @event()
    def end_session(self, gr_request: gr.Request = None):
        """demo.unload: the tab closed (its heartbeat stopped) -- its session and files go now."""
        key = getattr(gr_request, "session_hash", None)
        if key:
            self.sessions.end(key)

    def sweep(self) -> None:
        """The timer's work: close idle sessions, then remove folders no live session owns."""
        self.sessions.sweep()
        live = [s.workdir for s in self.sessions.values() if s.workdir is not None]
        sweep_old_sessions(self.config.tmp_root, self.config.session_idle_seconds, keep=live)

    @property
    def photo_areas(self) -> list[int]:
        return [area for area, _ in self.config.resolutions.values()]

    # -- preview ---------------------------------------------------------------------------------
    @event()
    @user_errors
    def detect_character(self, image, session=None, gr_request: gr.Request = None):
        """The photo arrived (upload, paste, an example): detect the character now, while the user
        picks a motion, so that Preview only reads the clip; a photo without a person is reported
        at once, and for a photo of several people a note says which one is animated. A cleared
        photo does nothing."""
        if is_blank(image):
            return
        image = resolve_image(image)
        with self.held_session(session, gr_request) as held:
            session_character(held, image, self.photo_areas)
            note = held.people_note
        if note:
            gr.Info(note)

    @event()
    @user_errors
    def check_driving(self, driving_video):
        """A clip was uploaded: read its header now, so that a clip that is too long or is not a
        video says so at once, and Preview finds it read (``probe_video`` keeps the answer)."""
        if not is_blank(driving_video):
            resolve_driving(driving_video, "")

    @event()
    @user_errors
    def decode_driving(self, driving_video, num_frames, lead_in_frames, frame_rate=settings.FRAME_RATE.default,
                       session=None, gr_request: gr.Request = None):
        """A clip was uploaded: decode the frames its first preview's detector reads now, with the
        length and frame rate set (``sessions.decode_on_arrival``), so that Preview detects from
        memory; a Preview clicked meanwhile reads them as they come. Silent: :meth:`check_driving`
        reports a clip that cannot be used, Preview any other input."""
        try:
            source = resolve_driving(driving_video, "")
            options = pose_options(num_frames, settings.SMOOTH.default, settings.REPAIR_DEFAULT,
                                   settings.ALIGN_MODE.default, settings.ALIGNMENT_FRAME.default, lead_in_frames,
                                   frame_rate)
        except SteadyDancerInputError:
            return
        with self.held_session(session, gr_request) as held:
            decode_on_arrival(held, source, options)

    @event("preview_video", "pose_video", "report", "poses_file")
    @user_errors
    def preview_poses(self, image, driving_video, motion, num_frames, smooth, repair, align_mode, alignment_frame,
                      lead_in_frames, frame_rate=settings.FRAME_RATE.default, session=None, progress=gr.Progress(),
                      gr_request: gr.Request = None):
        """Run the pose path (CPU only) and show what the model will be conditioned on.

        Returns the side-by-side preview (driving | extracted | aligned over the character), the aligned
        pose video (the positive condition), a Markdown report of the repair and alignment, and the
        extracted poses (poses.json, reusable with any character). Streams: as soon as the poses are
        aligned and the preview's first second is encoded, that second is shown (with the report and
        poses.json) while the rest is rendered and encoded; then everything. Stops at the next frame
        when the client disconnects or presses Cancel."""
        options = pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames, frame_rate)
        image = resolve_image(image)
        source = resolve_driving(driving_video, motion)

        def shown(outputs: tuple) -> tuple:
            return outputs + (session,) if isinstance(session, PoseSession) else outputs

        with self.held_session(session, gr_request) as held:
            held.cancel.clear()
            start_helpers()  # replaces a helper that has ended, while the detector runs
            result = compute_poses(held, image, source, options,
                                   watched(runtime.progress_adapter(progress, 0.0, 0.6), held, PreviewCancelled),
                                   areas=self.photo_areas)
            out = held.run_dir("preview")
            summary = repair_summary(result, source, held.people_note)
            files = watched(runtime.progress_adapter(progress, 0.6, 1.0), held, PreviewCancelled)
            early = EARLY_PREVIEW_FRAMES if len(result.aligned.positive) > EARLY_PREVIEW_FRAMES else 0
            ready: dict = {}
            for kind, value in iter_pose_outputs(result, out, audio_from=audio_source(result),
                                                 early_preview_frames=early, **PREVIEW_OUTPUTS):
                if kind == "progress":
                    files(*value)  # raises on Cancel / disconnect: closing the stream stops the work
                elif kind == "ready":
                    key, path = value
                    ready[key] = str(path)
                    if key == "preview_start":  # the alignment is visible now; the pose video follows
                        yield shown((ready[key], None, summary, ready.get("poses", gr.skip())))
            held.last_preview_key = self._preview_key(image, source, options)
        yield shown((ready["preview"], ready["positive"], summary, ready["poses"]))

    @staticmethod
    def _preview_key(image, source, options) -> tuple:
        return (file_key(image), source.key, dataclasses.astuple(options))

    @event("preview_video", "pose_video", "report", "poses_file")
    def refresh_preview(self, image, driving_video, motion, num_frames, smooth, repair, align_mode,
                        alignment_frame, lead_in_frames, frame_rate=settings.FRAME_RATE.default, session=None,
                        progress=gr.Progress(), gr_request: gr.Request = None):
        """Re-run the preview after a pose control changed -- only once this clip was previewed, so a
        control never starts the detector on a clip by itself (a longer length may read more of it).
        Streams like :meth:`preview_poses`."""
        direct = isinstance(session, PoseSession)
        skip = (gr.skip(),) * (5 if direct else 4)
        if not direct:
            session = self.request_session(gr_request)
        if session is None or session.driving is None:
            yield skip
            return
        try:
            source = resolve_driving(driving_video, motion)
            image = resolve_image(image)
            options = pose_options(num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames,
                                   frame_rate)
        except SteadyDancerInputError:
            yield skip  # the user is still filling the inputs; Preview will say what is missing
            return
        if session.driving[0][0] != source.key or session.last_preview_key == self._preview_key(image, source, options):
            yield skip
            return
        yield from self.preview_poses(image, driving_video, motion, num_frames, smooth, repair, align_mode,
                                      alignment_frame, lead_in_frames, frame_rate, session=session if direct else None,
                                      progress=progress, gr_request=gr_request)

    @event("preview_video", "pose_video", "report", "poses_file")
    def preview_example(self, image, driving_video, motion):
        """gr.Examples entry point (cached lazily): the preview with default pose settings (its final
        outputs: a cached example has nothing to stream)."""
        outputs = None
        for outputs in self.preview_poses(image, driving_video, motion, settings.NUM_FRAMES.default,
                                          settings.SMOOTH.default, settings.REPAIR_DEFAULT, settings.ALIGN_MODE.default,
                                          settings.ALIGNMENT_FRAME.default, settings.LEAD_IN_FRAMES.default,
                                          session=PoseSession.create(self.config.tmp_root), progress=None):
            pass
        return outputs[:4]  # its folder goes with the sweep, once Gradio has cached the outputs

    # -- generation ------------------------------------------------------------------------------
    @event("result_video", "comparison_video", "seed_used", "settings_used")
    @user_errors
    def generate(self, image, driving_video, motion, prompt, negative_prompt, resolution, num_frames,
                 num_inference_steps, guidance_scale, condition_guidance_scale, condition_window_start,
                 condition_window_end, shift, seed, randomize_seed, preset, smooth, repair, align_mode,
                 alignment_frame, lead_in_frames, frame_rate=settings.FRAME_RATE.default,
                 conditioning=settings.CONDITIONING.default, noise_device=settings.NOISE_DEVICE.default, session=None,
                 progress=gr.Progress(), gr_request: gr.Request = None):
        """Animate the character with the driving motion.

        Returns the generated video, a side-by-side comparison (driving | pose | result), the seed used
        and every setting used (JSON)."""
        config = self.config
        request = generation_request(prompt, negative_prompt, resolution, num_frames, num_inference_steps,
                                     guidance_scale, condition_guidance_scale, condition_window_start,
                                     condition_window_end, shift, seed, randomize_seed, preset, config.resolutions,
                                     noise_device)
        if config.zero_gpu:
            request = dataclasses.replace(request, preset=config.preset)
        options = pose_options(request.num_frames, smooth, repair, align_mode, alignment_frame, lead_in_frames,
                               frame_rate, conditioning)
        image = resolve_image(image)
        source = resolve_driving(driving_video, motion)
        runtime.check_runtime(config)  # before any work: say what is missing right away
        with self.held_session(session, gr_request) as held:
            held.cancel.clear()
            outputs = self._generate(held, request, options, image, source, progress)
        return outputs + (session,) if isinstance(session, PoseSession) else outputs

    def _generate(self, session: PoseSession, request, options, image, source, progress):
        from steadydancer.video import write_video

        config = self.config
        result = compute_poses(session, image, source, options,
                               watched(runtime.progress_adapter(progress, 0.0, 0.1), session, GenerationCancelled),
                               areas=self.photo_areas)
        if session.people_note:
            gr.Warning(session.people_note)
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
        if not config.zero_gpu and progress is not None:  # ZeroGPU forwards gr.Progress itself, nothing else
            progress = _stop_aware(progress, session)
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
                    estimated_seconds=round(estimate, 1), motion=source.label, pose=dataclasses.asdict(options),
                    fps=job.fps, frame_rate_note=frame_rate_note(result),
                    noise_device_used=runtime.noise_device_for(config, request.noise_device))
        return str(result_path), str(comparison_path), request.seed, used

    @event()
    def cancel_generation(self, session=None, gr_request: gr.Request = None):
        """The Cancel button: stop this session's running preview or generation at its next progress
        update (a frame of the pose path, a denoising step)."""
        if not isinstance(session, PoseSession):
            session = self.request_session(gr_request)
        if isinstance(session, PoseSession):
            session.cancel.set()
        gr.Info("Cancelling after the current step…")

    # -- small helpers of the page ---------------------------------------------------------------
    @event("estimate")
    def estimate_text(self, image, resolution, num_frames, num_inference_steps, guidance_scale,
                      condition_guidance_scale, condition_window_start, condition_window_end, preset) -> str:
        """The estimate shown under the Generate button (updated as settings change). The page runs
        it without Gradio's preprocessing (``preprocess=False``: ``image`` is the upload's file data), so
        an unreadable photo is reported once, by Preview / Generate, not a second time by the estimate."""
        config = self.config
        if isinstance(image, dict):
            image = image.get("path")
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
