"""Read and write video files with the ffmpeg binary that ships inside ``imageio-ffmpeg``.

There is no system ffmpeg on the Space, and OpenCV's VideoCapture neither applies the rotation
of phone clips reliably nor reports timestamps of variable-frame-rate files, so both directions
run ``imageio_ffmpeg.get_ffmpeg_exe()`` in a subprocess and move raw RGB frames through a pipe.

Reading (:func:`iter_video_frames`)
    One ffmpeg process decodes, applies the stream's rotation (ffmpeg's autorotate), downscales
    with its own scaler when ``max_side`` is given and converts to RGB24. A ``showinfo`` filter at
    the end of the chain logs every frame's timestamp and size on stderr, which a thread parses;
    so variable-frame-rate clips are resampled by their real timestamps, not by frame index.
    Read below its rate, a clip's frames that the rule cannot pick are dropped by ffmpeg before
    it scales and converts them (:class:`_DropWindow`: a ``select`` with a margin, checked against
    every decoded frame's real timestamp; a clip whose timestamps fool it is read again without
    dropping, so the frames are the same either way). The decoder runs at a lower priority
    (:data:`DECODER_NICENESS`): what it feeds, the pose detector, is the slower of the two.

    Resampling rule (deterministic): with ``t0`` the timestamp of the first decoded frame and
    source times ``s_i = pts_i - t0``, output frame ``k`` is meant for time ``t_k = k / fps`` and
    shows the source frame whose ``s_i`` is nearest to ``t_k`` (a tie, within 1 us, goes to the
    earlier frame).
    Output frames are produced for every ``t_k < D``, where ``D`` is the end of the last source
    frame (its timestamp plus its duration). ``fps=0`` keeps every source frame.

Writing (:func:`write_video`)
    H.264 (libx264), yuv420p, BT.709, ``+faststart``: plays in every browser. Frames are streamed
    to ffmpeg's stdin, never held in memory. yuv420p needs even sides: an odd width or height is
    **cropped** by one pixel on the right/bottom (a 1-pixel loss is invisible; padding would add
    a visible black line). An audio track can be copied from another file (cut to the video
    length, starting at ``audio_start``; an AAC track is copied as it is, to the nearest ~21 ms
    packet, any other is encoded to AAC: :func:`audio_codec_args`); a source without audio is
    skipped silently.

    :class:`VideoWriter` is the same encoder as an object: frames go to ffmpeg as they are made
    (``write`` per frame), so encoding runs concurrently with whatever produces them. When the
    frame count is known up front (``num_frames``) the audio is muxed in the same ffmpeg run.

Encoder settings (:class:`EncodeSettings`)
    Named profiles by what a video is, so that no two purposes share a knob:
    :data:`MASTER_ENCODING` (x264 ``medium``, CRF 18: generated videos, camera-like content, the
    default of :func:`write_video`), :data:`CONDITION_ENCODING` (the pose condition files) and
    :data:`DISPLAY_ENCODING` (previews); the last two are flat-colour skeletons on black and
    were chosen by ``benchmarks/display_encoding.py``.

Colours
    :class:`VideoWriter` converts each RGB frame to BT.709 limited-range yuv420p itself
    (:func:`rgb_to_yuv420p`, in the thread that writes, only the non-black part of the frame)
    and pipes that: half the bytes of RGB, and no work left for ffmpeg's scaler.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import math
import os
import re
import select
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from .constants import MODEL_FPS
from .errors import SteadyDancerInputError

ProgressCallback = Callable[[float, str], None]
_log = logging.getLogger(__name__)

#: Seconds ffmpeg may stay silent (no frame, no log line) before a read is abandoned as hung.
STALL_TIMEOUT = 60.0
#: Seconds allowed for probing a file (ffmpeg -i only reads the header).
PROBE_TIMEOUT = 60.0
#: Files whose :func:`probe_video` answer is kept (a few clips in use at once; ~1 KB each).
PROBE_CACHE_SIZE = 32
#: Frames ffmpeg may drop before scaling when a clip is read below its rate (_DropWindow): a
#: frame is kept within half a source frame interval plus this fraction of one of an output time,
#: and every frame of the last DROP_TAIL_SECONDS of the header's duration; only from sources
#: DROP_MIN_RATIO times faster than the output rate.
DROP_MARGIN = 0.1
DROP_TAIL_SECONDS = 1.0
DROP_MIN_RATIO = 1.2
#: Nice value of the reading ffmpeg (:func:`iter_video_frames`). Its frames feed the pose
#: detector, ~6x slower than the decoder and slowed by any work beside it on the same cores:
#: niced, the decoder waits for a free core (``benchmarks/pose_path.py``'s "decode" row).
DECODER_NICENESS = 15
#: Audio codecs copied into our MP4s as they are (others are encoded to AAC at AUDIO_BITRATE).
AUDIO_COPY_CODECS = frozenset({"aac"})
AUDIO_BITRATE = "128k"

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)
X264_TUNES = ("film", "animation", "grain", "stillimage", "fastdecode", "zerolatency")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What ``ffmpeg -i`` says about a file's first video stream.

    ``width``/``height`` are the *display* size (after rotation). ``rotation`` is the display
    rotation in degrees as ffmpeg reports it (counter-clockwise, normalised to 0/90/180/270).
    ``num_frames`` is an estimate (duration x fps) unless the probe was asked to count.
    """

    path: str
    fps: float
    num_frames: int
    duration: float
    width: int
    height: int
    rotation: int
    has_audio: bool
    codec: str
    audio_codec: Optional[str] = None  #: the first audio stream's codec (``"aac"``), if any


@dataclass
class VideoFrame:
    """One output frame: its index in the output, the source time it shows (seconds from the
    first frame) and the RGB image (H, W, 3) uint8."""

    index: int
    time: float
    frame: np.ndarray


@dataclass
class VideoClip:
    """A whole clip in memory: ``frames`` (T, H, W, 3) uint8, ``times`` (T,) source seconds,
    ``fps`` the rate of the frames (the requested rate, or the source's for ``fps=0``)."""

    frames: np.ndarray
    times: np.ndarray
    fps: float
    info: VideoInfo

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


# ----------------------------------------------------------------------------------------------
# Probing
# ----------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_STREAM_RE = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)(.*)")
_SIZE_RE = re.compile(r"(?:^|[\s,])(\d{1,5})x(\d{1,5})(?:[\s,\[]|$)")
_RATE_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.MULTILINE)


def _unreadable(path: Path, why: str) -> SteadyDancerInputError:
    return SteadyDancerInputError(
        f"Could not read video {path.name}: {why}. Re-export it as an H.264 .mp4 "
        "(any phone or editor can do this) and try again."
    )


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise SteadyDancerInputError(f"Video file not found: {path}. Upload the video again.")
    if path.stat().st_size == 0:
        raise _unreadable(path, "the file is empty (0 bytes)")
    return path


def _parse_rate(text: str) -> float | None:
    rates = {kind: float(num) * (1000 if k else 1) for num, k, kind in _RATE_RE.findall(text)}
    rate = rates.get("fps") or rates.get("tbr")
    return rate if rate and math.isfinite(rate) and rate > 0 else None


def probe_video(path: str | os.PathLike, *, count_frames: bool = False) -> VideoInfo:
    """Read the header of ``path`` (and count its frames exactly when ``count_frames``).

    A file is read once while it stays the same (path, size and modification time): a preview
    asks about its clip several times (the duration limit, the decoder, the audio of the preview),
    and each ffmpeg run costs ~15 ms.

    Raises :class:`SteadyDancerInputError` when the file is missing, empty, not a video or
    corrupt.
    """
    path = _check_file(path)
    st = path.stat()
    info = _probe_file(str(path.resolve()), st.st_size, st.st_mtime_ns, bool(count_frames))
    return info if info.path == str(path) else dataclasses.replace(info, path=str(path))


@functools.lru_cache(maxsize=PROBE_CACHE_SIZE)
def _probe_file(resolved: str, nbytes: int, mtime_ns: int, count_frames: bool) -> VideoInfo:
    """:func:`probe_video` of one version of a file (``nbytes`` and ``mtime_ns`` only make the key);
    errors are raised, not kept."""
    path = Path(resolved)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", resolved]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise _unreadable(path, f"reading its header took more than {PROBE_TIMEOUT:.0f} s") from exc
    text = proc.stderr.decode("utf-8", "replace")

    container = re.search(r"Input #0, ([\w,]+), from", text)
    if container and (container.group(1) == "image2" or container.group(1).endswith("_pipe")):
        raise SteadyDancerInputError(
            f"{path.name} is a still image, not a video. Upload a video of the dance "
            "(an .mp4 or .mov from a phone works)."
        )

    stream = None
    for line in text.splitlines():
        m = _VIDEO_STREAM_RE.search(line)
        if m and "attached pic" not in line:  # cover art inside audio files is not a video
            stream = m
            break
    if stream is None:
        if "Invalid data found" in text or "moov atom not found" in text or "could not find codec" in text:
            raise _unreadable(path, "it is not a video file, or it is corrupt or incomplete")
        if "Audio:" in text:
            raise _unreadable(path, "it has an audio track but no video")
        raise _unreadable(path, "it is not a video file, or it is corrupt")

    codec = stream.group(1)
    details = stream.group(2)
    size = _SIZE_RE.search(details)
    if size is None:
        raise _unreadable(path, "ffmpeg could not tell its frame size")
    coded_w, coded_h = int(size.group(1)), int(size.group(2))
    fps = _parse_rate(details)

    # The rotation belongs to the first video stream: look only at the lines after it.
    after = text[text.find(stream.group(0)):]
    next_stream = after.find("Stream #", 1)
    stream_block = after if next_stream < 0 else after[:next_stream]
    rotation = 0.0
    m = _ROTATION_RE.search(stream_block)
    if m:
        rotation = float(m.group(1))
    else:
        m = _ROTATE_TAG_RE.search(stream_block)
        if m:  # old-style "rotate" tag is clockwise; the display matrix is counter-clockwise
            rotation = -float(m.group(1))
    rotation_deg = int(round(rotation / 90.0)) * 90 % 360
    width, height = (coded_h, coded_w) if rotation_deg in (90, 270) else (coded_w, coded_h)

    duration = 0.0
    m = _DURATION_RE.search(text)
    if m:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    audio_codec = _audio_codec(text)

    if count_frames:
        num_frames, counted_secs = _count_frames(path)
        if duration <= 0:
            duration = counted_secs
    else:
        num_frames = int(round(duration * fps)) if (fps and duration > 0) else 0
    if fps is None:
        fps = num_frames / duration if (num_frames and duration > 0) else float(MODEL_FPS)

    return VideoInfo(
        path=str(path), fps=float(fps), num_frames=int(num_frames), duration=float(duration),
        width=width, height=height, rotation=rotation_deg, has_audio=audio_codec is not None, codec=codec,
        audio_codec=audio_codec,
    )


def _count_frames(path: Path) -> tuple[int, float]:
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.count_frames_and_secs(str(path))
    except Exception as exc:  # imageio-ffmpeg raises RuntimeError/IOError with ffmpeg's log
        raise _unreadable(path, "ffmpeg could not decode it") from exc


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

_SHOWINFO_FRAME_RE = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:\s*(\S+)")
_SHOWINFO_DURATION_RE = re.compile(r"\bduration_time:\s*(\S+)")
_SHOWINFO_SIZE_RE = re.compile(r"\bs:(\d+)x(\d+)")
_SHOWINFO_TIMEBASE_RE = re.compile(r"config in time_base:\s*(\d+)/(\d+)")


#: ``showinfo`` instance names: every decoded frame (only when frames are dropped before
#: scaling, :class:`_DropWindow`), and every frame sent down the pipe.
_SOURCE_INFO, _OUT_INFO = "showinfo@source", "showinfo@out"


class _StderrReader(threading.Thread):
    """Drains ffmpeg's stderr: per-frame (time, duration, width, height, pts) from ``showinfo``
    lines -- ``frames`` for the frames sent down the pipe, ``sources`` for every decoded frame
    (when a ``showinfo@source`` runs before a ``select``) -- and the last other lines for error
    messages. ``time_bases`` holds each ``showinfo``'s seconds per pts tick (``True``: the source
    one), as exact fractions: ``pts_time`` is printed with 6 digits only."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        # The pipe is unbuffered (bufsize=0 for stdout); buffer it here so that reading lines
        # is not one system call per byte.
        self.stream = io.BufferedReader(stream)
        self.frames: list[tuple[float | None, float | None, int, int, int | None]] = []
        self.sources: list[tuple[float | None, float | None, int, int, int | None]] = []
        self.time_bases: dict[bool, Optional[Fraction]] = {}
        self.log: list[str] = []
        self.done = False
        self.cond = threading.Condition()

    def run(self):
        try:
            for raw in self.stream:
                line = raw.decode("utf-8", "replace").rstrip()
                if "showinfo" not in line:
                    if line.strip():
                        with self.cond:
                            self.log.append(line)
                            del self.log[:-40]
                    continue
                source = line.startswith(f"[{_SOURCE_INFO} ")
                m = _SHOWINFO_TIMEBASE_RE.search(line)
                if m:
                    num, den = int(m.group(1)), int(m.group(2))
                    self.time_bases[source] = Fraction(num, den) if num and den else None
                    continue
                m = _SHOWINFO_FRAME_RE.search(line)
                size = _SHOWINFO_SIZE_RE.search(line)
                if not (m and size):
                    continue
                time_base = self.time_bases.get(source)
                pts = int(m.group(2)) if m.group(2) != "NOPTS" else None
                if pts is not None and time_base is not None:
                    t = float(pts * time_base)
                else:
                    t = _float_or_none(m.group(3))
                d = _SHOWINFO_DURATION_RE.search(line)
                d = _float_or_none(d.group(1)) if d else None
                with self.cond:
                    (self.sources if source else self.frames).append(
                        (t, d, int(size.group(1)), int(size.group(2)), pts))
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait_for(self, n: int, timeout: float, sources: bool = False) -> bool:
        """Wait until the info of frame ``n`` (of ``sources`` or of the piped ``frames``) arrived
        (True) or stderr closed / timeout."""
        entries = self.sources if sources else self.frames
        with self.cond:
            self.cond.wait_for(lambda: len(entries) > n or self.done, timeout=timeout)
            return len(entries) > n

    def tail(self, lines: int = 6) -> str:
        with self.cond:
            return " | ".join(self.log[-lines:])


def _float_or_none(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_exact(stream, buf: memoryview, timeout: float) -> int:
    """Fill ``buf`` from a pipe; returns bytes read (< len at EOF). Raises TimeoutError when the
    pipe stays silent for ``timeout`` seconds (a hung ffmpeg must not hang the app)."""
    fd = stream.fileno()
    got = 0
    total = len(buf)
    while got < total:
        if os.name == "posix":
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError
        n = stream.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def iter_video_frames(
    path: str | os.PathLike,
    fps: float = MODEL_FPS,
    max_frames: int | None = None,
    max_side: int | None = None,
    progress: ProgressCallback | None = None,
    *,
    min_frames: int = 1,
    max_duration: float | None = None,
    info: VideoInfo | None = None,
    drop_early: bool = True,
) -> Iterator[VideoFrame]:
    """Decode ``path`` as RGB frames resampled to ``fps`` (``0``: every source frame).

    Args:
        fps: output rate; frames are picked by the nearest-timestamp rule in the module docstring.
        max_frames: stop after this many output frames (the rest of the clip is not decoded).
        max_side: downscale (never upscale) so the longer side is at most this, aspect kept.
        progress: ``progress(fraction, message)`` called once per output frame.
        min_frames: raise :class:`SteadyDancerInputError` if fewer output frames come out.
        max_duration: raise before decoding if the clip is longer than this many seconds.
        info: a :class:`VideoInfo` from :func:`probe_video`, to skip probing again.
        drop_early: let ffmpeg drop the source frames the rule cannot pick before it scales and
            converts them (:class:`_DropWindow`; the same frames come out either way).

    Yields:
        :class:`VideoFrame` with ``frame`` of shape (H, W, 3) uint8, rotation applied.
    """
    if fps < 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be >= 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    path = _check_file(path)
    info = info or probe_video(path)
    if max_duration is not None and info.duration > max_duration:
        raise SteadyDancerInputError(
            f"Video {path.name} is {info.duration:.1f} s long; the limit is {max_duration:.0f} s. "
            "Trim it to the part you want (the dance moves) and upload that."
        )

    window = _DropWindow.plan(info, fps) if drop_early else None
    emitted = 0
    while True:
        try:
            # closing(): a consumer that stops early (max_frames, an error, closing this generator)
            # stops ffmpeg now, not when the inner generator is garbage-collected
            with contextlib.closing(_decoded(path, info, fps, max_side, window, skip=emitted)) as decoded:
                for time, image in decoded:
                    if max_duration is not None and time > max_duration:
                        raise SteadyDancerInputError(
                            f"Video {path.name} is longer than the {max_duration:.0f} s limit. "
                            "Trim it to the part you want and upload that."
                        )
                    yield VideoFrame(index=emitted, time=time, frame=image)
                    emitted += 1
                    if progress is not None:
                        frac = min(1.0, time / info.duration) if info.duration > 0 else 0.0
                        progress(frac, f"decoding video: frame {emitted}")
                    if max_frames is not None and emitted >= max_frames:
                        return
            break
        except _DroppedTooMuch as exc:
            # The clip's timestamps are not what its header said (a gap, a drift): decode it
            # again with every frame kept, past the frames already given (the same ones).
            _log.info("%s: %s; reading it again without dropping frames", path.name, exc)
            window = None
    if emitted < max(1, min_frames):
        if emitted == 0:
            raise _unreadable(path, "it contains no video frames that ffmpeg can decode")
        rate = fps or info.fps or MODEL_FPS
        raise SteadyDancerInputError(
            f"Video {path.name} gives only {emitted} frame(s) at {rate:g} fps; at least "
            f"{min_frames} are needed. Use a longer clip (at least "
            f"{math.ceil(10 * min_frames / rate) / 10:g} s)."
        )


class _DroppedTooMuch(Exception):
    """A frame the resampling rule picks was dropped by ffmpeg's ``select`` (or ``select`` did
    not do what :meth:`_DropWindow.keeps` predicted)."""


@dataclass(frozen=True)
class _DropWindow:
    """Which decoded frames ffmpeg may drop before it scales and converts them (its ``select``).

    At ``fps`` below the source rate, the nearest-timestamp rule leaves source frames out (a
    30 fps clip read at 16 fps: about half of them; 60 fps: three in four), and scaling and RGB
    conversion are most of the decoder's work beside the H.264 decoding itself, taken from the
    pose detector's cores (``benchmarks/pose_path.py``: its "every source frame scaled" rows). A
    frame at ``s`` seconds from the first is kept when some output time ``k / fps`` lies within
    ``half`` of it (half a source frame interval plus :data:`DROP_MARGIN` of one: timestamps
    jitter), or when it is in the clip's last :data:`DROP_TAIL_SECONDS` by the header's duration
    (the last frame shows until the clip's end). Frames are never picked from this guess: the
    rule runs on every decoded frame's real timestamp (a ``showinfo`` before the ``select``), and
    a frame it picks that was dropped (a gap or a drift the guess did not cover) makes the
    reader decode the clip again without dropping (:class:`_DroppedTooMuch`). Python evaluates
    the same expression on the same doubles (:meth:`keeps`), so it knows which frames come down
    the pipe without waiting for the next frame's line; a disagreement also means reading again."""

    fps: float
    half: float
    tail: float

    @classmethod
    def plan(cls, info: VideoInfo, fps: float) -> "Optional[_DropWindow]":
        """The window for reading ``info``'s clip at ``fps``, or ``None`` where dropping saves
        little or the header gives no rate or duration to plan with."""
        if not (fps and info.fps and info.duration > 0 and info.fps > DROP_MIN_RATIO * fps):
            return None
        return cls(float(fps), (0.5 + DROP_MARGIN) / float(info.fps), float(info.duration) - DROP_TAIL_SECONDS)

    def expression(self) -> str:
        """ffmpeg's ``select`` expression (``t``, ``start_t``: seconds of the frame and of the first)."""
        f, h, e = repr(self.fps), repr(self.half), repr(self.tail)
        return (f"select='gte(t-start_t\\,{e})+lte(ceil((t-start_t-{h})*{f})\\,floor((t-start_t+{h})*{f}))'")

    def keeps(self, pts: int | None, first_pts: int | None, time_base: Optional[Fraction]) -> bool:
        """What the expression says for a frame, computed as ffmpeg computes it (doubles: ``tb``
        is ffmpeg's ``av_q2d``, num / den correctly rounded, as ``float`` of the fraction)."""
        if pts is None or first_pts is None or time_base is None:
            return False  # NaN: compared false (no time base: a disagreement, the clip read again)
        tb = float(time_base)
        s = float(pts) * tb - float(first_pts) * tb
        return s >= self.tail or math.ceil((s - self.half) * self.fps) <= math.floor((s + self.half) * self.fps)


def _decoded(path: Path, info: VideoInfo, fps: float, max_side: int | None, window: Optional[_DropWindow],
             skip: int = 0) -> Iterator[tuple[float, np.ndarray]]:
    """One ffmpeg run: (time, image) of every output frame after the first ``skip``."""
    filters = [f"{_SOURCE_INFO}=checksum=0", window.expression()] if window is not None else []
    if max_side:
        m = int(max_side)
        filters.append(
            f"scale=w='if(gte(iw,ih),min(iw,{m}),-2)':h='if(gte(iw,ih),-2,min(ih,{m}))'"
            ":flags=area"
        )
    filters.append(f"{_OUT_INFO}=checksum=0")
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
        # One decoding thread: the frames are consumed by work several times slower than decoding
        # (the pose detector, previews), so more threads only add CPU (~7% measured) that the
        # consumer needs; H.264 decoding gives the same pixels with any number of threads.
        "-threads", "1",
        "-i", str(path.resolve()),
        "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", ",".join(filters),
        "-fps_mode", "passthrough",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    lower_priority(proc.pid, DECODER_NICENESS)
    log = _StderrReader(proc.stderr)
    log.start()

    try:
        source = _iter_source_frames(proc, log, path, window)
        if fps == 0:
            frames_out = ((t, image) for t, image, _ in source)
        else:
            frames_out = _resample_nearest(source, fps)
        for index, (time, image) in enumerate(frames_out):
            if image is None:
                raise _DroppedTooMuch(f"the frame for {time:.3f} s was dropped")
            if index >= skip:
                yield time, image
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        log.join(timeout=5)
        if proc.stderr and not log.is_alive():
            proc.stderr.close()


def _iter_source_frames(proc, log: _StderrReader, path: Path, window: Optional[_DropWindow] = None
                        ) -> Iterator[tuple[float, Optional[np.ndarray], float]]:
    """(time from first frame, image, frame duration) for every decoded frame, in order; with a
    ``window``, the image is ``None`` for the frames ffmpeg dropped."""
    t0 = None
    n = 0  # decoded frames
    piped = 0  # frames read from the pipe
    first_pts = None
    last_t = 0.0
    size = None
    entries = log.sources if window is not None else log.frames
    while True:
        if not log.wait_for(n, STALL_TIMEOUT, sources=window is not None):
            if not log.done:
                raise _unreadable(path, f"ffmpeg stopped responding for {STALL_TIMEOUT:.0f} s")
            break  # end of stream
        pts, dur, w, h, raw_pts = entries[n]
        if n == 0:
            first_pts = raw_pts
        image = None
        if window is None or window.keeps(raw_pts, first_pts, log.time_bases.get(True)):
            if window is not None:  # its line after select, with the size that comes down the pipe
                if not log.wait_for(piped, STALL_TIMEOUT):
                    if not log.done:
                        raise _unreadable(path, f"ffmpeg stopped responding for {STALL_TIMEOUT:.0f} s")
                    raise _DroppedTooMuch(f"frame {n} did not come down the pipe")
                _, _, w, h, out_pts = log.frames[piped]
                if out_pts != raw_pts:
                    raise _DroppedTooMuch(f"frame {n} is not the one that came down the pipe")
            image = _read_frame(proc, path, w, h)
            if image is None:
                break  # truncated last frame: ffmpeg ended
            piped += 1
            if size is None:
                size = (w, h)
            if (w, h) != size:  # resolution change mid-stream: keep the first size
                import cv2

                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if pts is None:
            t = last_t + (dur or 0.0) if n else 0.0
        else:
            if t0 is None:
                t0 = pts
            t = pts - t0
        last_t = t
        yield t, image, (dur if dur and dur > 0 else 0.0)
        n += 1
    proc.wait()
    if n == 0:
        _log.warning("no frames decoded from %s; ffmpeg said: %s", path, log.tail())
        raise _unreadable(path, "it contains no video frames that ffmpeg can decode")


def _read_frame(proc, path: Path, w: int, h: int) -> Optional[np.ndarray]:
    """The next (h, w, 3) RGB frame from ffmpeg's pipe; ``None`` when the pipe ends before it."""
    image = np.empty((h, w, 3), np.uint8)
    try:
        got = _read_exact(proc.stdout, memoryview(image).cast("B"), STALL_TIMEOUT)
    except TimeoutError:
        raise _unreadable(path, f"ffmpeg stopped responding for {STALL_TIMEOUT:.0f} s") from None
    return image if got == image.nbytes else None


#: Distances equal within this many seconds are a tie (float noise in k / fps vs pts * tb).
_TIE_TOLERANCE = 1e-6


def _resample_nearest(source: Iterator[tuple[float, np.ndarray, float]], fps: float
                      ) -> Iterator[tuple[float, np.ndarray]]:
    """Apply the nearest-timestamp rule (module docstring) to a stream of source frames."""
    k = 0
    prev = None  # (time, image)
    intervals = []
    last_duration = 0.0
    for t, image, duration in source:
        if duration:
            last_duration = duration
        if prev is not None:
            intervals.append(t - prev[0])
            del intervals[:-32]
        while k / fps <= t:
            target = k / fps
            if prev is not None and target - prev[0] <= t - target + _TIE_TOLERANCE:
                yield prev
            else:
                yield t, image
            k += 1
        prev = (t, image)
    if prev is None:
        return
    if not last_duration:
        positive = [d for d in intervals if d > 0]
        last_duration = float(np.median(positive)) if positive else 1.0 / fps
    end = prev[0] + last_duration
    # Times past the last frame (up to its end) show the last frame. A tiny epsilon guards
    # against k / fps landing a hair under ``end`` by float rounding (e.g. 3 * (1/30)).
    while k / fps < end - 1e-9:
        yield prev
        k += 1


def read_video(
    path: str | os.PathLike,
    fps: float = MODEL_FPS,
    max_frames: int | None = None,
    max_side: int | None = None,
    progress: ProgressCallback | None = None,
    *,
    min_frames: int = 1,
    max_duration: float | None = None,
) -> VideoClip:
    """All frames of :func:`iter_video_frames` in one (T, H, W, 3) array, with info and times."""
    info = probe_video(path)
    frames, times = [], []
    for vf in iter_video_frames(path, fps, max_frames, max_side, progress,
                                min_frames=min_frames, max_duration=max_duration, info=info):
        frames.append(vf.frame)
        times.append(vf.time)
    return VideoClip(
        frames=np.stack(frames), times=np.asarray(times, dtype=np.float64),
        fps=float(fps) if fps else info.fps, info=info,
    )


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _rate_arg(fps: float) -> str:
    """fps as an exact ffmpeg rational (29.97 -> 30000/1001)."""
    frac = Fraction(fps).limit_denominator(1001)
    if abs(float(frac) - fps) > 1e-6:
        frac = Fraction(fps).limit_denominator(1_000_000)
    return f"{frac.numerator}/{frac.denominator}"


def _run_ffmpeg(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
        raise RuntimeError(f"ffmpeg failed while {what}: {' | '.join(tail)}")


# ----------------------------------------------------------------------------------------------
# Colour conversion
# ----------------------------------------------------------------------------------------------


def _bt709_tv_matrix() -> np.ndarray:
    """RGB (0..255) -> BT.709 limited-range Y'CbCr as a 3x4 affine matrix (rows Y, Cb, Cr; the
    last column the offsets 16, 128, 128): Y spans 16..235 and Cb/Cr 16..240 (ITU-R BT.709-6)."""
    kr, kb = 0.2126, 0.0722
    luma = np.array([kr, 1.0 - kr - kb, kb])
    y = 219.0 / 255.0 * luma
    cb = 224.0 / 255.0 * 0.5 * (np.array([0.0, 0.0, 1.0]) - luma) / (1.0 - kb)
    cr = 224.0 / 255.0 * 0.5 * (np.array([1.0, 0.0, 0.0]) - luma) / (1.0 - kr)
    return np.column_stack([np.stack([y, cb, cr]), [16.0, 128.0, 128.0]])


#: The conversion :class:`VideoWriter` applies before x264 (the files are tagged BT.709 "tv").
BT709_TV_MATRIX = _bt709_tv_matrix()
_YCC_MATRIX = BT709_TV_MATRIX.astype(np.float32)
#: Y, Cb, Cr of RGB black: the planes start from it and only the lit part is converted.
YUV_BLACK = (16, 128, 128)


def lit_box(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), the bounding box of the pixels that are not pure black, grown to even
    coordinates (a box of whole 2x2 chroma blocks); ``None`` for an all-black frame."""
    import cv2

    h, w = frame.shape[:2]
    # Non-zero *bytes* of the (H, W*3) view: the x range comes out in bytes.
    x, y, bw, bh = cv2.boundingRect(frame.reshape(h, w * 3))
    if bw == 0 or bh == 0:
        return None
    x0, x1 = x // 3, (x + bw - 1) // 3 + 1  # pixels [x0, x1)
    return y & ~1, min(h, (y + bh + 1) & ~1), x0 & ~1, min(w, (x1 + 1) & ~1)


def _channel_into(src: np.ndarray, channel: int, dst: np.ndarray) -> None:
    """``dst[...] = src[..., channel]`` with OpenCV (~5x faster than numpy's strided copy)."""
    import cv2

    got = cv2.extractChannel(src, channel, dst=dst)
    if not np.may_share_memory(got, dst):  # OpenCV made its own array: copy it over
        dst[...] = got


def rgb_to_yuv420p(frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8 with even sides as BT.709 limited-range yuv420p: the planar
    bytes ffmpeg's ``-pix_fmt yuv420p`` raw input expects (Y plane, then Cb, then Cr), as a flat
    uint8 array (``out`` is reused when given).

    Every pixel is converted (rounded to the nearest code); each chroma sample is the mean of
    its 2x2 block's (rounded) Cb/Cr, rounded again: at most one code off the exact mean.
    Only the bounding box of the non-black pixels is converted: black is exactly
    :data:`YUV_BLACK`, so for skeleton frames (mostly black) most of the work is a fill. Done in
    the producer's thread with OpenCV (it releases the GIL), this is cheaper than ffmpeg's
    swscale on RGB input and halves the bytes piped to ffmpeg (``benchmarks/display_encoding.py``).
    """
    import cv2

    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even sides, got {w}x{h}")
    size = h * w
    if out is None:
        out = np.empty(size * 3 // 2, np.uint8)
    luma = out[:size].reshape(h, w)
    cb = out[size:size * 5 // 4].reshape(h // 2, w // 2)
    cr = out[size * 5 // 4:].reshape(h // 2, w // 2)
    box = lit_box(frame)
    if box is None or box != (0, h, 0, w):
        luma.fill(YUV_BLACK[0])
        out[size:].fill(YUV_BLACK[1])  # Cb and Cr are both 128
    if box is None:
        return out
    y0, y1, x0, x1 = box
    # One 3x4 transform (OpenCV vectorises 3-channel output; a 1-channel one is ~5x slower).
    ycc = cv2.transform(frame[y0:y1, x0:x1], _YCC_MATRIX)
    _channel_into(ycc, 0, luma[y0:y1, x0:x1])
    blocks = cv2.resize(ycc, ((x1 - x0) // 2, (y1 - y0) // 2), interpolation=cv2.INTER_AREA)
    _channel_into(blocks, 1, cb[y0 // 2:y1 // 2, x0 // 2:x1 // 2])
    _channel_into(blocks, 2, cr[y0 // 2:y1 // 2, x0 // 2:x1 // 2])
    return out


@dataclass(frozen=True)
class EncodeSettings:
    """libx264 settings of one kind of output video (always H.264, yuv420p, BT.709, faststart).

    ``preset`` and ``crf`` are x264's; ``tune`` an x264 tune (``None``: none); ``keyint`` the
    longest distance between keyframes in frames (``None``: x264's default, 250), which sets how
    finely a browser can seek; ``threads`` x264's threads (``None``: x264's choice, about 1.5 per
    core plus lookahead threads). Small videos encoded side by side (the pose files) spend less CPU
    with one thread each: they run concurrently anyway, and x264's frame threads only add work.
    """

    preset: str = "medium"
    crf: int = 18
    tune: Optional[str] = None
    keyint: Optional[int] = None
    threads: Optional[int] = None

    def __post_init__(self):
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {X264_PRESETS}, got {self.preset!r}")
        if not 0 <= int(self.crf) <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if self.tune is not None and self.tune not in X264_TUNES:
            raise ValueError(f"tune must be one of {X264_TUNES} or None, got {self.tune!r}")
        if self.keyint is not None and int(self.keyint) < 1:
            raise ValueError(f"keyint must be >= 1, got {self.keyint}")
        if self.threads is not None and int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def ffmpeg_args(self) -> list[str]:
        args = ["-c:v", "libx264", "-preset", self.preset, "-crf", str(int(self.crf))]
        if self.tune:
            args += ["-tune", self.tune]
        if self.keyint:
            args += ["-g", str(int(self.keyint))]
        if self.threads:
            args += ["-threads", str(int(self.threads))]
        return args


#: Generated videos (camera-like content): x264's defaults at a visually lossless CRF. Nothing
#: about previews or pose files may change these.
MASTER_ENCODING = EncodeSettings(preset="medium", crf=18)
#: Videos only people look at (pose previews, the pose video shown in the app): flat-colour
#: skeletons on black. Chosen with ``benchmarks/display_encoding.py`` (README "Measured
#: numbers"): every preset gives the same PSNR on such frames (the 4:2:0 chroma loss dominates);
#: ``ultrafast`` takes about a third of ``medium``'s encoder CPU for 2-3x the bytes, which at
#: 1.5-2.5 Mbit/s still streams progressively on any broadband link; ``tune animation`` and
#: shorter keyframe intervals only cost bytes here.
DISPLAY_ENCODING = EncodeSettings(preset="ultrafast", crf=18)
#: The pose condition *files* (aligned_pose.mp4, negative_pose.mp4: for people and external
#: tools; generation renders its own conditions in memory, steadydancer.pose.conditioning).
#: Chosen with ``benchmarks/display_encoding.py`` on the example's 768x768 condition (81 frames,
#: encode CPU incl. the RGB -> yuv420p conversion, cheapest of 5): ``ultrafast`` with one thread
#: 0.16 s, 876 KiB, 39.9 dB PSNR against the rendered frames; ``medium`` (the master profile,
#: which these files used before) 0.61 s, 278 KiB, 39.5 dB; ``superfast`` 0.27 s, 544 KiB,
#: 39.8 dB. Flat colours on black: the 4:2:0 chroma loss sets the PSNR, not the preset, so the
#: cheapest preset loses nothing; 1.4 Mbit/s is no concern for local files. ``tune stillimage``
#: and a 16-frame keyframe interval cost the same CPU (keyint adds 6 % bytes). One thread: these
#: files are encoded side by side with the preview and the rendering (-12 % CPU vs x264's own
#: threading). The CRF stays the master's 18, so an external tool reads the same picture.
CONDITION_ENCODING = EncodeSettings(preset="ultrafast", crf=18, threads=1)


class VideoWriter:
    """An H.264 mp4 written frame by frame: RGB frames (H, W, 3) uint8 of one size are piped to
    ffmpeg as they come, so the encoder works while the caller makes the next frame.

    ``with VideoWriter(path, fps) as w: w.write(frame) ...`` -- leaving the block normally
    finishes the file (and raises if ffmpeg failed); an exception inside it removes the file.
    Odd sides are cropped by one pixel (right/bottom). ``audio_from``: that file's first audio
    track from ``audio_start`` seconds, as AAC (:func:`audio_codec_args`) cut to the video's
    length -- muxed in the same ffmpeg run when ``num_frames`` says how long the video will be,
    else in a second pass that copies the video; a file without audio is ignored. The ffmpeg
    process starts with the first frame.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, settings: EncodeSettings = MASTER_ENCODING,
                 audio_from: str | os.PathLike | None = None, audio_start: float = 0.0,
                 num_frames: int | None = None):
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be positive, got {fps}")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self.settings = settings
        self.audio_start = max(0.0, float(audio_start))
        self.num_frames = num_frames
        self.audio_from = None
        self._audio_args: list[str] = []
        if audio_from is not None:
            try:
                codec = probe_video(audio_from).audio_codec
            except SteadyDancerInputError:
                codec = _audio_stream_codec(Path(audio_from))
            self.audio_from = Path(audio_from).resolve() if codec is not None else None
            self._audio_args = audio_codec_args(codec)
        # Audio in the same run needs the length up front; otherwise a second pass adds it.
        self._mux_now = self.audio_from is not None and num_frames is not None
        self._target = (self.path if self.audio_from is None or self._mux_now
                        else self.path.with_name(f".{self.path.stem}.video.tmp.mp4"))
        self._proc: subprocess.Popen | None = None
        self._errfile = None
        self._size: tuple[int, int] | None = None  # (h, w) of the input frames
        self._yuv: np.ndarray | None = None  # the converted frame, reused
        self.count = 0
        self._closed = False

    def _start(self, h: int, w: int) -> None:
        out_h, out_w = _even_size(h, w)
        # The frames come as BT.709 limited-range yuv420p (rgb_to_yuv420p), tagged so, so that
        # browsers and ffmpeg agree on the colours; ffmpeg converts nothing.
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{out_w}x{out_h}",
            "-framerate", _rate_arg(self.fps), "-i", "pipe:0",
        ]
        if self._mux_now:
            cmd += ["-ss", f"{self.audio_start:.6f}", "-i", str(self.audio_from),
                    "-map", "0:v:0", "-map", "1:a:0?", *self._audio_args,
                    "-t", f"{self.num_frames / self.fps:.6f}"]
        else:
            cmd += ["-an"]
        cmd += [
            "-vf", "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv",
            *self.settings.ffmpeg_args(), "-pix_fmt", "yuv420p",
            "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
            "-color_range", "tv",
            "-movflags", "+faststart",
            str(self._target),
        ]
        self._errfile = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errfile)
        self._size = (h, w)
        self._yuv = np.empty(out_h * out_w * 3 // 2, np.uint8)

    def write(self, frame: np.ndarray) -> None:
        """Send one frame (H, W, 3) uint8; every frame must have the first frame's size. It is
        converted to yuv420p here, in the caller's thread (:func:`rgb_to_yuv420p`)."""
        if self._closed:
            raise ValueError("VideoWriter: write after close")
        frame = _check_frame(frame, self._size)
        if self._proc is None:
            self._start(*frame.shape[:2])
        yuv = rgb_to_yuv420p(_to_even(frame), self._yuv)
        try:
            self._proc.stdin.write(memoryview(yuv))  # blocks until ffmpeg has it all: _yuv is reusable
        except BrokenPipeError:
            pass  # ffmpeg died; close() reports its error
        self.count += 1

    def close(self) -> Path:
        """Finish the file and return its path (raises when ffmpeg failed or no frame came)."""
        if self._closed:
            return self.path
        self._closed = True
        if self._proc is None:
            raise ValueError("write_video: no frames to write")
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self._proc.wait()
        try:
            if rc != 0:
                self._errfile.seek(0)
                tail = self._errfile.read().decode("utf-8", "replace").strip().splitlines()[-6:]
                self._target.unlink(missing_ok=True)
                raise RuntimeError(f"ffmpeg failed while encoding {self.path.name}: {' | '.join(tail)}")
        finally:
            self._errfile.close()
        if self.audio_from is not None and not self._mux_now:
            try:
                _run_ffmpeg([
                    ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                    "-i", str(self._target),
                    "-ss", f"{self.audio_start:.6f}", "-i", str(self.audio_from),
                    "-map", "0:v:0", "-map", "1:a:0?",
                    "-c:v", "copy", *self._audio_args,
                    "-t", f"{self.count / self.fps:.6f}",
                    "-movflags", "+faststart",
                    str(self.path),
                ], f"adding the audio of {self.audio_from.name}")
            finally:
                self._target.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file."""
        self._closed = True
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            if self._proc.stdin:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
        if self._errfile is not None:
            self._errfile.close()
        self._target.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    audio_from: str | os.PathLike | None = None,
    audio_start: float = 0.0,
    crf: int | None = None,
    preset: str | None = None,
    settings: EncodeSettings | None = None,
    num_frames: int | None = None,
) -> Path:
    """Encode RGB frames (each (H, W, 3) uint8, all the same size) as a browser-playable mp4.

    ``settings`` (default :data:`MASTER_ENCODING`) picks the encoder profile; ``crf`` / ``preset``
    override one field of it. Odd sides are cropped by one pixel (right/bottom). With
    ``audio_from``, that file's first audio track from ``audio_start`` seconds is muxed in as AAC
    (:func:`audio_codec_args`)
    and cut to the video's length (in the same ffmpeg run when ``num_frames`` is given or
    ``frames`` has a length); a file without audio is ignored. Returns the output path.
    """
    settings = settings or MASTER_ENCODING
    if crf is not None or preset is not None:
        settings = dataclasses.replace(settings, preset=settings.preset if preset is None else preset,
                                       crf=settings.crf if crf is None else crf)
    if num_frames is None and hasattr(frames, "__len__") and len(frames) > 0:  # type: ignore[arg-type]
        num_frames = len(frames)  # type: ignore[arg-type]
    writer = VideoWriter(path, fps, settings=settings, audio_from=audio_from, audio_start=audio_start,
                         num_frames=num_frames)
    with writer:
        for frame in frames:
            writer.write(frame)
        if writer.count == 0:
            raise ValueError("write_video: no frames to write")
    if num_frames is not None and writer.count != num_frames and writer.audio_from is not None:
        # The audio was cut for num_frames; a different count would leave it too long or short.
        _log.warning("write_video: %s got %d frames, %d announced", writer.path.name, writer.count, num_frames)
    return writer.path


def _audio_codec(ffmpeg_log: str) -> Optional[str]:
    """The codec of the first audio stream ``ffmpeg -i`` lists (``"aac"``), or ``None``."""
    m = re.search(r"Stream #\d+:\d+.*?: Audio: (\w+)", ffmpeg_log)
    return m.group(1) if m else None


def _audio_stream_codec(path: Path) -> Optional[str]:
    """:func:`_audio_codec` of a file probe_video rejects (audio only); ``None`` if it has none."""
    if not path.is_file():
        return None
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path.resolve())],
                          capture_output=True, timeout=PROBE_TIMEOUT)
    return _audio_codec(proc.stderr.decode("utf-8", "replace"))


def audio_codec_args(codec: Optional[str]) -> list[str]:
    """ffmpeg's audio codec arguments for a source track of ``codec`` in an MP4: AAC is copied
    (cut at its ~21 ms packets: no decode, no re-encode, no second generation of loss), anything
    else is encoded to AAC (:data:`AUDIO_BITRATE`)."""
    if codec in AUDIO_COPY_CODECS:
        return ["-c:a", "copy"]
    return ["-c:a", "aac", "-b:a", AUDIO_BITRATE]


def lower_priority(pid: int, niceness: int) -> None:
    """Raise the nice value of process ``pid`` (each of its threads: Linux niceness is per
    thread) to ``niceness``; a no-op where the OS has no such call or refuses it."""
    if not hasattr(os, "setpriority"):
        return
    tasks = [pid]
    try:
        tasks += [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    except OSError:
        pass
    for task in tasks:
        try:
            os.setpriority(os.PRIO_PROCESS, task, max(os.getpriority(os.PRIO_PROCESS, task), niceness))
        except OSError:  # ended already, or not allowed
            pass


def _even_size(h: int, w: int) -> tuple[int, int]:
    """(H, W) made even for yuv420p: odd sides lose their last row/column, 1-pixel sides become 2."""
    return max(2, h - h % 2), max(2, w - w % 2)


def _to_even(frame: np.ndarray) -> np.ndarray:
    """``frame`` cropped by one pixel on the right/bottom where a side is odd (a 1-pixel loss is
    invisible; padding would add a visible line); 1-pixel sides are padded with black."""
    h, w = frame.shape[:2]
    if h < 2 or w < 2:
        frame = np.pad(frame, ((0, max(0, 2 - h)), (0, max(0, 2 - w)), (0, 0)))
    out_h, out_w = _even_size(h, w)
    return frame[:out_h, :out_w]


def _check_frame(frame, size: tuple[int, int] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"write_video: frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"write_video: all frames must be {size[1]}x{size[0]}, got "
                         f"{frame.shape[1]}x{frame.shape[0]}")
    return np.ascontiguousarray(frame)
