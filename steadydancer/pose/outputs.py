"""The pose path's files, written concurrently: every video rendered and encoded at once.

:func:`write_pose_outputs` writes ``poses.json``, ``aligned_poses.json``, ``aligned_pose.mp4``
(positive condition), ``negative_pose.mp4`` and ``preview.mp4``. How it spends the CPU:

* **Each video is a stream.** Its frames are rendered by one shared pool of render threads
  (OpenCV drawing and PIL resampling release the GIL), in order and a few frames ahead, and
  piped to its own ffmpeg process (:class:`steadydancer.video.VideoWriter`) as they come. The
  encoders run concurrently with rendering and with each other; no video is held whole in
  memory. The calling thread only waits and reports progress.
* **One condition video goes to a helper process** when one is started and idle
  (:mod:`steadydancer.pose.helper`): the Python between the drawing calls holds the GIL, so
  the threads of one process cannot keep two cores busy; the helper draws and encodes that
  video with its own interpreter and writes the same file.
* **Each frame is drawn once** for everything that shows it (an optional short
  ``preview_start.mp4`` with the first frames, for early display, reuses the preview's frames).
* **The driving clip is decoded once**: during extraction, the decoded frames are also kept at
  preview size (:class:`~steadydancer.pose.path.DrivingFrames`); a saved ``poses.json`` with a
  clip to show has them decoded by :func:`~steadydancer.pose.path.keep_preview_frames` (the app
  does it while the character is detected) or, failing that, by the first preview, which keeps
  them for the next one.
* **Encoder settings by purpose** (:mod:`steadydancer.video`): the condition files use
  :data:`~steadydancer.video.CONDITION_ENCODING` (skeleton frames: x264 ultrafast, one thread,
  the master's CRF; generation never reads these files, it renders its conditions in memory);
  the preview, which only people watch, uses :data:`~steadydancer.video.DISPLAY_ENCODING`.

Why nothing is rendered while the detector still runs: no condition pixel is final before the
last detection. Repair thresholds come from the whole sequence's body scale and its fits span
neighbouring frames; the smoothing is zero-phase (its backward pass starts at the last frame);
the alignment takes its scales from the best early frames and checks every part the dance shows.
Rendering a window early would draw poses that can still change, so the pixels would differ.
"""

from __future__ import annotations

import collections
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from ..video import CONDITION_ENCODING, DISPLAY_ENCODING, EncodeSettings, VideoWriter
from .helper import ConditionJob, give_back, take_helper

Progress = Optional[Callable[[float, str], None]]

#: File names written by :func:`write_pose_outputs` (the command line documents them).
OUTPUT_FILES = {
    "poses": "poses.json",
    "aligned_poses": "aligned_poses.json",
    "positive": "aligned_pose.mp4",
    "negative": "negative_pose.mp4",
    "preview": "preview.mp4",
}
#: The short preview of the first frames (only when asked for: ``early_preview_frames``).
EARLY_PREVIEW_FILE = "preview_start.mp4"
#: Encoder profile of each video (see the module docstring).
OUTPUT_ENCODING: dict[str, EncodeSettings] = {
    "positive": CONDITION_ENCODING,
    "negative": CONDITION_ENCODING,
    "preview": DISPLAY_ENCODING,
}
#: Frames each stream renders ahead of its encoder.
RENDER_AHEAD = 4
#: Height of the preview video.
PREVIEW_HEIGHT = 480
#: Line widths in the preview relative to the official canvas. At a faithful scale (~0.27 for a
#: 480-px preview) limbs are 1 px and hard to read; previews are for people, so they are bolder.
PREVIEW_THICKNESS = 0.6
#: The driving clip's preview-size frames are kept in memory up to this many bytes per clip.
DRIVING_FRAMES_MAX_BYTES = 256 * 2**20


def render_threads() -> int:
    """Render threads: one per core, at most 2 (the encoders are busy processes too)."""
    from .extract import available_cores

    return max(1, min(2, available_cores()))


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def render_pool() -> ThreadPoolExecutor:
    """The process's render threads (:func:`render_threads` of them), made on first use and shared
    by every call: long-lived threads reuse their memory from one preview to the next (new threads
    per call would each grow their own allocator arena in a long-running server)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=render_threads(), thread_name_prefix="pose-render")
        return _POOL


def ordered_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, ahead: int = RENDER_AHEAD) -> Iterator:
    """``fn(item)`` for each item, computed on ``pool`` at most ``ahead`` items in advance, yielded
    in order. ``items`` is consumed lazily (it may be a decoder); closing the iterator cancels
    what has not started."""
    pending: collections.deque[Future] = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a decoder behind ``items`` stops now, not when it is garbage-collected


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def condition_geometry(reference, options, size: tuple[int, int] | None = None
                       ) -> tuple[tuple[int, int], tuple[int, int], bool]:
    """(official canvas (W, H), frame size (W, H), draw_face) of the condition frames of
    ``reference``: the canvas is twice the working size, the frame ``size`` (default: the
    working size)."""
    from .render import official_canvas_size

    # The official canvas comes from the photo's own size (the working size is already rounded:
    # rounding it again can change the canvas, e.g. 400x582 -> 1248x1856 instead of 1248x1824).
    canvas = tuple(official_canvas_size(*reference.image.size))
    return canvas, tuple(size or reference.size), bool(options.draw_face)


def condition_renderer(reference, options, size: tuple[int, int] | None = None) -> Callable:
    """A function pose frame -> condition frame (H, W, 3) uint8: the official drawing on the
    official canvas (twice the working size), resized bicubic to ``size`` (default: the
    working size). Pixel for pixel ``resize_pose_frame(render_pose(...), size)``, made without the
    full canvas (:func:`~steadydancer.pose.render.render_resized`)."""
    from .render import render_resized

    canvas, size, draw_face = condition_geometry(reference, options, size)

    def render(frame) -> np.ndarray:
        return render_resized(frame, canvas, size, draw_face=draw_face)

    return render


def condition_job(path, poses, reference, options, fps: float, settings: EncodeSettings) -> ConditionJob:
    """A helper process's job (:mod:`steadydancer.pose.helper`): ``poses`` drawn as
    :func:`condition_renderer` draws them for ``reference`` and ``options``, encoded with
    ``settings`` into ``path``."""
    canvas, size, draw_face = condition_geometry(reference, options)
    return ConditionJob(str(path), poses, canvas, size, draw_face, float(fps), settings)


@dataclass(frozen=True)
class PreviewLayout:
    """Sizes and the fixed background of the three preview panels."""

    drv_size: tuple[int, int]  #: (W, H) of the driving and extracted panels
    ref_size: tuple[int, int]  #: (W, H) of the aligned panel
    background: np.ndarray  #: the character image at ``ref_size``
    height: int
    draw_face: bool


def preview_layout(reference, cleaned, options, max_height: int = PREVIEW_HEIGHT) -> PreviewLayout:
    seq = cleaned.poses
    drv_w = max(16, int(round(max_height * seq.aspect / 2)) * 2)
    ref_w = max(16, int(round(max_height * reference.size[0] / reference.size[1] / 2)) * 2)
    background = np.asarray(reference.image.resize((ref_w, max_height), Image.BICUBIC))
    return PreviewLayout((drv_w, max_height), (ref_w, max_height), background, max_height, options.draw_face)


#: Labels of the three preview panels.
PREVIEW_LABELS = ("driving", "extracted", "aligned")


def preview_frame(layout: PreviewLayout, driving_frame: Optional[np.ndarray], extracted, aligned) -> np.ndarray:
    """One preview frame: driving frame | extracted pose | aligned pose over the character.

    The same pixels as ``side_by_side([driving, render_pose(extracted), overlay(render_pose(aligned),
    background)], PREVIEW_LABELS)``, composed in place: each panel is drawn or copied straight
    into its columns of the frame (tests compare the two)."""
    from .render import (
        as_rgb, draw_pose, even_height, fit_panel, overlay_into, panel_strip, panel_width, put_label, render_pose,
    )

    (drv_w, drv_h), (ref_w, ref_h) = layout.drv_size, layout.ref_size
    height = even_height(layout.height)
    driving = (as_rgb(driving_frame) if driving_frame is not None
               else np.zeros((drv_h, drv_w, 3), np.uint8))
    pose_sizes = [(drv_h, drv_w), (ref_h, ref_w)]
    out, (driving_view, extracted_view, aligned_view) = panel_strip(
        height, [panel_width(shape, height) for shape in [driving.shape[:2], *pose_sizes]])
    fit_panel(driving_view, driving)
    draw = dict(draw_face=layout.draw_face, thickness_scale=PREVIEW_THICKNESS)
    if (drv_h, drv_w) == extracted_view.shape[:2]:
        extracted_view[...] = 0
        draw_pose(extracted_view, extracted, **draw)
    else:  # a layout whose height is not the frame's (odd): drawn at its size, then scaled
        fit_panel(extracted_view, render_pose(extracted, drv_w, drv_h, **draw))
    pose_aligned = render_pose(aligned, ref_w, ref_h, **draw)
    if (ref_h, ref_w) == aligned_view.shape[:2] and layout.background.shape[:2] == (ref_h, ref_w):
        aligned_view[...] = as_rgb(layout.background)
        overlay_into(aligned_view, pose_aligned)
    else:
        from .render import overlay

        fit_panel(aligned_view, overlay(pose_aligned, layout.background))
    for view, label in zip((driving_view, extracted_view, aligned_view), PREVIEW_LABELS):
        put_label(view, label)
    return out


def preview_items(driving, cleaned, aligned, options, max_side: int = PREVIEW_HEIGHT
                  ) -> Iterator[tuple[Optional[np.ndarray], object, object]]:
    """(driving frame or None, extracted pose, aligned pose) for every output frame, in order.

    Driving frames come from ``driving.frames`` when they were kept at this size; otherwise the
    clip is decoded here (once) and the frames are kept in ``driving.frames`` for the next
    preview. A short read (rounding at the end) repeats the last frame."""
    seq = cleaned.poses
    count = len(seq)
    n_lead = aligned.lead_in_frames
    frames = driving_frame_source(driving, count, options, max_side)
    for t in range(len(aligned.positive)):
        src_t = min(max(t - n_lead, 0), count - 1)
        yield (frames(src_t) if frames is not None else None), seq[src_t], aligned.positive[t]


def driving_frame_source(driving, count: int, options, max_side: int) -> Optional[Callable[[int], np.ndarray]]:
    """A function index -> driving frame, longer side ``max_side`` (None: no clip to show). Frames are
    fetched in increasing order; a decoder runs only as far as needed, and what it decoded is
    kept in ``driving.frames`` (shared by every copy of ``driving``) for the next preview."""
    store = driving.frames
    if store.max_side == max_side and store.frames and (store.complete or len(store.frames) >= count):
        kept = store.frames
        return lambda i: kept[min(i, len(kept) - 1)]
    if driving.video is None:
        return None
    from ..video import iter_video_frames

    decoder = iter_video_frames(driving.video, fps=options.fps, max_frames=count, max_side=max_side)
    got: list[np.ndarray] = []

    def keep(complete: bool) -> None:
        if sum(f.nbytes for f in got) <= DRIVING_FRAMES_MAX_BYTES:
            store.keep(got, max_side, complete)

    def get(i: int) -> np.ndarray:
        while len(got) <= i:
            item = next(decoder, None)
            if item is None:  # the clip ended: every frame it has is here
                if got:
                    keep(True)
                break
            got.append(item.frame)
            if len(got) == count:
                keep(False)
        if not got:
            raise ValueError(f"no frame could be decoded from {driving.video}")
        return got[min(i, len(got) - 1)]

    return get


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


class _Stream(threading.Thread):
    """Feeds one video: pulls rendered frames in order and writes them to its encoder(s)."""

    def __init__(self, key: str, frames: Iterator[np.ndarray], writer: VideoWriter, total: int,
                 abort: threading.Event, early: Optional[tuple[VideoWriter, int, threading.Event]] = None):
        super().__init__(daemon=True, name=f"pose-output-{key}")
        self.key, self.frames, self.writer, self.total = key, frames, writer, total
        self.abort, self.early = abort, early
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for frame in self.frames:
                if self.abort.is_set():
                    break
                self.writer.write(frame)
                if self.early is not None:
                    writer, limit, ready = self.early
                    writer.write(frame)
                    if writer.count >= limit:
                        writer.close()
                        ready.set()
                        self.early = None
                self.done += 1
            if self.abort.is_set():
                self._abort_writers()
                return
            if self.early is not None:  # fewer frames than the early preview wanted
                self.early[0].close()
                self.early[2].set()
            self.writer.close()
        except BaseException as exc:  # reported by write_pose_outputs in the calling thread
            self.error = exc
            self.abort.set()
            self._abort_writers()
        finally:
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()

    def _abort_writers(self) -> None:
        self.writer.abort()
        if self.early is not None:
            self.early[0].abort()


class _HelperStream(threading.Thread):
    """Feeds one condition video through a helper process (:mod:`steadydancer.pose.helper`):
    the same frames and file as :class:`_Stream`, drawn outside this process's GIL. If the
    helper ends mid-video, ``local()`` (a :class:`_Stream` for the same video) writes it here."""

    def __init__(self, key: str, helper, job, local: Callable[[], _Stream], abort: threading.Event):
        super().__init__(daemon=True, name=f"pose-output-{key}")
        self.key, self.helper, self.job, self.local = key, helper, job, local
        self.abort = abort
        self.error: BaseException | None = None
        self._done = 0
        self._local: Optional[_Stream] = None

    @property
    def done(self) -> int:
        return self._local.done if self._local is not None else self._done

    def _progress(self, frames: int) -> None:
        self._done = frames

    def run(self) -> None:
        from .helper import HelperGone

        try:
            if self.abort.is_set():
                return
            try:
                self.helper.run(self.job, self.abort, self._progress)
            except HelperGone:
                helper, self.helper = self.helper, None
                give_back(helper)
                self._local = self.local()
                self._local.run()
                self.error = self._local.error
        except BaseException as exc:  # reported by write_pose_outputs in the calling thread
            self.error = exc
            self.abort.set()
        finally:
            if self.helper is not None:
                give_back(self.helper)


def write_pose_outputs(result, out_dir: str | Path, *, audio_from: str | Path | None = None,
                       progress: Progress = None, outputs: Optional[Sequence[str]] = None,
                       encodings: Optional[Mapping[str, EncodeSettings]] = None,
                       early_preview_frames: int = 0,
                       on_ready: Optional[Callable[[str, Path], None]] = None,
                       cancel: Optional[threading.Event] = None) -> dict[str, Path]:
    """Write the pose path's files into ``out_dir``; returns {key: path} of what was written.

    Args:
        result: a :class:`~steadydancer.pose.path.PosePathResult`.
        audio_from: a clip whose audio goes into ``preview.mp4`` (cut to its length).
        outputs: keys of :data:`OUTPUT_FILES` to write (default: all).
        encodings: per-video encoder settings overriding :data:`OUTPUT_ENCODING`.
        early_preview_frames: also write the first N preview frames to ``preview_start.mp4``
            (key ``"preview_start"``), finished as soon as those frames are encoded.
        on_ready: ``on_ready(key, path)`` when a file is complete, called from the calling
            thread (the early preview first, usually long before the rest).
        progress: ``progress(fraction, message)``, called from the calling thread.
        cancel: when set, every stream stops, the unfinished videos are removed and
            :class:`OutputsCancelled` is raised.
    """
    keys = list(OUTPUT_FILES) if outputs is None else list(outputs)
    unknown = set(keys) - set(OUTPUT_FILES)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {list(OUTPUT_FILES)}")
    settings = {**OUTPUT_ENCODING, **(encodings or {})}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / OUTPUT_FILES[key] for key in keys}
    report = progress or (lambda f, m: None)
    ready = on_ready or (lambda key, path: None)

    def write_json() -> None:  # while the video streams run (they render and encode on other threads)
        if "poses" in paths:
            result.driving.poses.save(paths["poses"])
            ready("poses", paths["poses"])
        if "aligned_poses" in paths:
            _aligned_with_meta(result).save(paths["aligned_poses"])
            ready("aligned_poses", paths["aligned_poses"])

    videos = [key for key in ("preview", "positive", "negative") if key in paths]  # preview first: shown first
    if not videos:
        write_json()
        return paths
    aligned = result.aligned
    fps = aligned.positive.fps
    total = len(aligned.positive)
    report(0.0, "rendering and encoding the pose videos")
    abort = threading.Event()
    streams: list[threading.Thread] = []
    early_ready = threading.Event()
    pool = render_pool()  # shared by every call (see render_pool)
    try:
        for key in videos:
            if key == "preview":
                layout = preview_layout(result.reference, result.cleaned, result.options)
                items = preview_items(result.driving, result.cleaned, aligned, result.options)
                frames = ordered_map(pool, lambda item, layout=layout: preview_frame(layout, *item), items)
                writer = VideoWriter(paths[key], fps, settings=settings[key], audio_from=audio_from,
                                     num_frames=total)
                early = None
                if early_preview_frames > 0:
                    paths["preview_start"] = out / EARLY_PREVIEW_FILE
                    early = (VideoWriter(paths["preview_start"], fps, settings=settings[key]),
                             int(early_preview_frames), early_ready)
                streams.append(_Stream(key, frames, writer, total, abort, early))
            else:
                seq = aligned.positive if key == "positive" else aligned.negative
                # Starts at once, beside the early preview (held back until that was out, it was the
                # last file by far): everything is out sooner, the first second a little later
                # (README "Measured numbers").

                def local(seq=seq, key=key) -> _Stream:
                    render = condition_renderer(result.reference, result.options)
                    return _Stream(key, ordered_map(pool, render, seq), VideoWriter(
                        paths[key], fps, settings=settings[key]), total, abort)

                job = condition_job(paths[key], seq, result.reference, result.options, fps, settings[key])
                helper = take_helper()  # an idle helper process draws it outside our GIL, else threads here
                if helper is None:
                    streams.append(local())
                else:
                    streams.append(_HelperStream(key, helper, job, local, abort))
        for stream in streams:
            stream.start()
        write_json()
        early_sent = early_preview_frames <= 0
        pending = list(streams)
        reported = -1
        while pending:
            for stream in pending:
                stream.join(timeout=0.02)
            if cancel is not None and cancel.is_set():
                abort.set()
            if not early_sent and early_ready.is_set() and not abort.is_set():
                early_sent = True
                ready("preview_start", paths["preview_start"])
            for stream in [s for s in pending if not s.is_alive()]:
                pending.remove(stream)
                if stream.error is None and not abort.is_set():
                    ready(stream.key, paths[stream.key])
            done = sum(s.done for s in streams)
            if done != reported:
                reported = done
                report(done / (total * len(streams)), "rendering and encoding the pose videos")
    except BaseException:
        abort.set()
        for stream in streams:
            if stream.is_alive() or stream.ident is not None:
                stream.join()
            elif isinstance(stream, _HelperStream):  # never started: its helper is free again
                give_back(stream.helper)
        raise
    for stream in streams:
        if stream.error is not None:
            raise stream.error
    if abort.is_set():
        raise OutputsCancelled("writing the pose videos was cancelled")
    report(1.0, "done")
    return paths


class OutputsCancelled(Exception):
    """:func:`write_pose_outputs` stopped because its ``cancel`` event was set."""


def iter_pose_outputs(result, out_dir: str | Path, **kwargs) -> Iterator[tuple[str, object]]:
    """:func:`write_pose_outputs` in a worker thread, as events in the caller's thread:
    ``("progress", (fraction, message))``, ``("ready", (key, path))`` as each file is complete
    (the early preview first), and last ``("done", paths)``; its error is raised here. Closing
    the iterator early cancels the work (for a UI that streams results as they come)."""
    import queue

    events: "queue.Queue[tuple[str, object]]" = queue.Queue()
    cancel = threading.Event()

    def work() -> None:
        try:
            paths = write_pose_outputs(result, out_dir, progress=lambda f, m: events.put(("progress", (f, m))),
                                       on_ready=lambda key, path: events.put(("ready", (key, path))),
                                       cancel=cancel, **kwargs)
            events.put(("done", paths))
        except BaseException as exc:  # handed to the caller's thread
            events.put(("error", exc))

    worker = threading.Thread(target=work, daemon=True, name="pose-outputs")
    worker.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "error":
                raise value  # type: ignore[misc]
            yield kind, value
            if kind == "done":
                return
    finally:
        cancel.set()
        worker.join()


def _aligned_with_meta(result):
    """The aligned positive poses with the alignment, the repairs and the lead-in in ``meta``."""
    info = result.aligned.info
    return result.aligned.positive.replace(meta={
        **result.aligned.positive.meta,
        "alignment": {"mode": info.mode, "scales": info.scales, "offset": list(info.offset),
                      "alignment_frames": info.alignment_frames, "notes": info.notes},
        "repairs": result.cleaned.report.to_dict(),
        "lead_in_frames": result.aligned.lead_in_frames,
    })
