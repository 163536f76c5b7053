"""How the rendered pose frames reach the model: the official chain (default) or the clean render.

The official SteadyDancer path never hands its renders to the generator directly. Its
preprocessing writes the aligned poses as a video, dumps that video to JPEG files, and the
generator reads the JPEGs and resizes them to the reference photo's size. Each step changes the
pixels the model sees, and the model was trained and validated on conditions made this way:

1. **Render** on the official canvas, twice the working size (:mod:`steadydancer.pose.render`).
2. **H.264 round trip** -- ``pose_align.py`` / ``pose_align_withdiffaug.py`` write the frames with
   moviepy's ``ImageSequenceClip(frames, fps).write_videofile(path, fps=fps, codec="libx264")``.
   moviepy runs ffmpeg with ``-f rawvideo -pix_fmt rgb24 -r <fps with 2 decimals> -i -
   -vcodec libx264 -preset medium -pix_fmt yuv420p`` (no bitrate, no CRF: x264's default CRF 23;
   no colour options: ffmpeg's default BT.601 limited-range conversion) at the source clip's
   frame rate. ``dump_video_images.py`` decodes it with decord (ffmpeg's decoder and its default
   yuv420p -> rgb24 conversion).
3. **JPEG round trip** -- each decoded frame is saved with ``cv2.imwrite(path, bgr)``: OpenCV's
   defaults, quality 95 and 4:2:0 chroma subsampling; ``generate_dancer.py`` opens it with PIL.
4. **Resize to the reference's size** -- ``Image.resize(reference.size, Image.Resampling.BICUBIC)``
   (Pillow's bicubic, antialiased when shrinking) to the *original* size of the reference photo.
5. The generator then resizes those frames once more, with non-antialiased torch bicubic, to the
   generation size; that step is the pipeline's (:mod:`steadydancer.pipeline`).

:func:`official_chain` reproduces steps 2-4 in memory (ffmpeg from ``imageio-ffmpeg`` for
H.264 -- the same binary moviepy uses --, OpenCV for the JPEG encode as the official script,
Pillow for the decode and the resize). ``conditioning="clean"`` skips them: the render is resized
(Pillow bicubic) straight to the size asked for, without compression losses -- sharper, more
saturated limbs than the model was trained on. ``benchmarks/conditioning.py`` measures the
difference.

This module is numpy/OpenCV/Pillow only (no torch), like the rest of :mod:`steadydancer.pose`.
"""

from __future__ import annotations

import io
import itertools
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
from PIL import Image

from ..errors import SteadyDancerInputError
from ..settings import CONDITIONING
from ..video import ffmpeg_exe

#: How pose frames reach the model: ``official`` (the chain above, the default) or ``clean``.
CONDITIONING_MODES = tuple(CONDITIONING.choices)
DEFAULT_CONDITIONING = CONDITIONING.default

#: The official pose video writer's settings (moviepy's ``write_videofile(codec="libx264")``).
OFFICIAL_X264_PRESET = "medium"
OFFICIAL_X264_CRF = 23  #: x264's default; moviepy passes no rate option
OFFICIAL_PIX_FMT = "yuv420p"
#: The official frame dump's JPEG settings (``cv2.imwrite`` defaults).
OFFICIAL_JPEG_QUALITY = 95
OFFICIAL_JPEG_SAMPLING = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420

#: Seconds ffmpeg may take per frame before the round trip is abandoned.
_FFMPEG_SECONDS_PER_FRAME = 10.0


def check_conditioning(conditioning: str) -> str:
    """``conditioning`` if it is one of :data:`CONDITIONING_MODES`, else a user error."""
    return CONDITIONING.check(conditioning)


# ----------------------------------------------------------------------------------------------
# The steps
# ----------------------------------------------------------------------------------------------


def _rate(fps: float) -> str:
    """The frame rate as moviepy passes it (two decimals)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return "%.02f" % float(fps)


def h264_roundtrip(frames: Iterable[np.ndarray], fps: float) -> Iterator[np.ndarray]:
    """Encode ``frames`` (uint8 RGB, one size, even sides) as the official pose video writer does
    and decode them back to RGB, one frame at a time.

    The frames are streamed into ffmpeg while they are produced (``frames`` may be a generator
    that renders them), so only the encoded file -- a few hundred kB -- is held, in a temporary
    folder removed afterwards.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    first = _rgb(first)
    h, w = first.shape[:2]
    if w % 2 or h % 2:
        raise ValueError(f"yuv420p needs even sides, got {w}x{h}")
    with tempfile.TemporaryDirectory(prefix="steadydancer-pose-") as tmp:
        path = Path(tmp) / "pose.mp4"
        count = _encode(first, frames, (w, h), fps, path)
        yield from _decode(path, (w, h), count)


def _encode(first: np.ndarray, rest: Iterator[np.ndarray], size: tuple[int, int], fps: float, path: Path) -> int:
    w, h = size
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
        "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}", "-pix_fmt", "rgb24", "-r", _rate(fps),
        "-an", "-i", "-",
        "-vcodec", "libx264", "-preset", OFFICIAL_X264_PRESET, "-crf", str(OFFICIAL_X264_CRF),
        "-pix_fmt", OFFICIAL_PIX_FMT, str(path),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    drain.start()
    count = 0
    try:
        for frame in itertools.chain([first], rest):
            frame = _rgb(frame)
            if frame.shape[:2] != (h, w):
                raise ValueError(f"all frames must be {w}x{h}, got {frame.shape[1]}x{frame.shape[0]}")
            proc.stdin.write(frame.tobytes())
            count += 1
        proc.stdin.close()
        proc.wait(timeout=60 + _FFMPEG_SECONDS_PER_FRAME * count)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    drain.join()
    if proc.returncode != 0:
        message = b"".join(errors).decode("utf-8", "replace").strip()
        raise RuntimeError(f"ffmpeg could not encode the pose video: {message}")
    return count


def _decode(path: Path, size: tuple[int, int], count: int) -> Iterator[np.ndarray]:
    w, h = size
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
        "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    drain.start()
    frame_bytes = w * h * 3
    decoded = 0
    try:
        while True:
            data = proc.stdout.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            decoded += 1
            yield np.frombuffer(data, np.uint8).reshape(h, w, 3)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    drain.join()
    if proc.returncode != 0 or decoded != count:
        message = b"".join(errors).decode("utf-8", "replace").strip()
        raise RuntimeError(f"ffmpeg decoded {decoded} of {count} pose frames: {message}")


def jpeg_roundtrip(frame: np.ndarray) -> np.ndarray:
    """The official frame dump: ``cv2.imwrite`` of the (BGR) frame with OpenCV's default JPEG
    settings, read back with ``PIL.Image.open(...).convert("RGB")`` as the generator does."""
    bgr = cv2.cvtColor(_rgb(frame), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, OFFICIAL_JPEG_QUALITY,
                                          cv2.IMWRITE_JPEG_SAMPLING_FACTOR, OFFICIAL_JPEG_SAMPLING])
    if not ok:
        raise RuntimeError("OpenCV could not encode a pose frame as JPEG")
    with Image.open(io.BytesIO(data.tobytes())) as img:
        return np.asarray(img.convert("RGB"))


def resize_to_reference(frame: np.ndarray, reference_size: tuple[int, int]) -> np.ndarray:
    """``Image.resize(reference_size, BICUBIC)`` as the official generator resizes every pose
    frame to the reference photo's (width, height)."""
    size = (int(reference_size[0]), int(reference_size[1]))
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return np.asarray(Image.fromarray(_rgb(frame)).resize(size, Image.Resampling.BICUBIC))


def official_chain(frames: Iterable[np.ndarray], fps: float, reference_size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Steps 2-4 of the module docstring: H.264 round trip at ``fps``, JPEG round trip, resize
    to ``reference_size`` = (W, H) of the original reference photo."""
    for frame in h264_roundtrip(frames, fps):
        yield resize_to_reference(jpeg_roundtrip(frame), reference_size)


def _rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


# ----------------------------------------------------------------------------------------------
# The conditions of a pose path result
# ----------------------------------------------------------------------------------------------


def handover_size(reference) -> tuple[int, int]:
    """(W, H) at which the condition frames are handed to the pipeline.

    The official generator resizes every pose frame (Pillow bicubic) to the reference photo's own
    size before its torch resize to the generation size; the pipeline does that first resize itself
    for frames of any other size (``SteadyDancerPipeline``, ``resize_antialias=False``, the default).
    So the frames are handed over at the photo's size -- the pipeline then has nothing to redo --
    unless the photo is larger than the official canvas: then at the canvas size, and the pipeline
    makes the same Pillow resize (same pixels), so a 12-megapixel photo does not make every pose
    frame 12 megapixels in memory."""
    from .render import official_canvas_size

    photo = tuple(int(v) for v in reference.image.size)
    canvas = official_canvas_size(*photo)
    return photo if photo[0] * photo[1] <= canvas[0] * canvas[1] else canvas


def condition_videos(reference, aligned, options=None, *, size: tuple[int, int] | None = None,
                     conditioning: str | None = None, num_frames: int | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The positive and negative pose frames handed to the pipeline (the first ``num_frames``
    of them when given: only what will be generated is rendered and compressed), both drawn on the
    official canvas (twice the working size of the photo).

    ``conditioning`` (default ``options.conditioning``):

    * ``"official"`` -- through :func:`official_chain` at the pose sequence's frame rate (H.264,
      JPEG), then Pillow bicubic to :func:`handover_size` (the photo's own size, as the official
      generator); ``size`` is ignored.
    * ``"clean"`` -- the render without the compression steps
      (:func:`steadydancer.pose.path.render_conditions`), Pillow bicubic to ``size`` (default
      :func:`handover_size`: the same hand-over as the official frames, so the two modes differ
      only by the compression).

    The pipeline resizes the frames to the generation size (torch bicubic, as the official
    generator). ``reference`` / ``aligned`` / ``options`` are the pose path's ``ReferencePose``,
    ``AlignedPoses`` and ``PoseOptions``.
    """
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    from .path import PoseOptions, render_conditions
    from .render import official_canvas_size, render_sequence

    options = options or PoseOptions()
    mode = check_conditioning(conditioning or options.conditioning)
    if num_frames is not None:
        if int(num_frames) < 1:
            raise SteadyDancerInputError(f"num_frames must be at least 1, got {num_frames}")
        n = int(num_frames)
        aligned = dataclasses.replace(aligned, positive=aligned.positive[:n], negative=aligned.negative[:n])
    target = handover_size(reference)
    if mode == "clean":
        return render_conditions(reference, aligned, options, size=tuple(size) if size is not None else target)
    canvas_w, canvas_h = official_canvas_size(*reference.image.size)  # from the photo's own size

    def run(seq):
        rendered = render_sequence(seq, canvas_w, canvas_h, draw_face=options.draw_face)
        return list(official_chain(rendered, seq.fps, target))

    # Rendering, the JPEG steps and the two ffmpeg processes overlap across the two sequences.
    with ThreadPoolExecutor(max_workers=2) as pool:
        positive, negative = pool.map(run, (aligned.positive, aligned.negative))
    return positive, negative
