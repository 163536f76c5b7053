"""Draw poses exactly as the official SteadyDancer preprocessing did, plus preview helpers.

The official drawing (``preprocess/pose/script/util.py`` of MCG-NJU/SteadyDancer, a MusePose /
DWPose derivative with fixed widths) is reproduced operation by operation, because the model
only ever saw that drawing (see ``shared/design/pose_rendering.md``):

1. A black canvas. The official code draws the palette as written into an array it later treats
   as BGR (``cv2.cvtColor(BGR2RGB)`` before writing the video), so red and blue of every colour
   end up swapped. Every drawing operation acts on each channel independently, so drawing with
   pre-swapped colours (what this module does) gives the same pixels.
2. Body limbs, in ``BODY_LIMBS`` order, each skipped unless both ends exist: with ``x = px * W``
   and ``y = py * H`` (float), a polygon from ``cv2.ellipse2Poly(centre=(int(mean x),
   int(mean y)), axes=(int(length / 2), 4), angle=int(degrees(atan2(dy, dx))), 0, 360, delta=1)``
   filled with ``cv2.fillConvexPoly`` in ``BODY_PALETTE[i]``. ``int`` truncates toward zero.
3. The whole canvas times 0.6, truncated to uint8 (``(canvas * 0.6).astype(uint8)``; done here
   with an identical 256-entry lookup table).
4. Body joints: every present point ``j`` a filled ``cv2.circle`` of radius 4 at
   ``(int(x), int(y))`` in ``BODY_PALETTE[j]``.
5. Hands, left (hand 0) then right: for each of the 20 edges, a ``cv2.line`` of thickness 2 in
   ``hsv_to_rgb(e / 20, 1, 1) * 255`` (float colour; OpenCV rounds it half-to-even), then every
   point a filled circle of radius 4 in (0, 0, 255) as written -- red after the swap. A hand point
   counts as missing when its truncated pixel coordinate ``int(x * W)`` or ``int(y * H)`` is not
   above 0.01, i.e. is 0 or negative (the official ``eps`` test runs on pixels).
6. Face (off by default; the official videos have none): white dots of radius 3, same test.

Sizes: the official canvas is twice the generation size, ``2 x size_for_area(ref, 1024*576)``
(:func:`official_canvas_size`); widths and radii above are pixels on that canvas. Drawing at
another size scales them by ``thickness_scale`` (default: canvas width / official width for the
canvas's aspect ratio), so a preview at generation size looks like the official frames after
their bicubic downscale.

Coordinates are normalised (x / width, y / height of the frame the canvas represents); missing
points are NaN (see :mod:`steadydancer.pose.sequence`).
"""

from __future__ import annotations

import colorsys
import functools
import math
import threading
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..constants import DEFAULT_MAX_AREA, size_for_area
from .sequence import PoseFrame, PoseSequence, present
from .skeleton import BODY_LIMBS, BODY_PALETTE, HAND_EDGES

#: Official sizes, in pixels on the official (2x) canvas.
BODY_STICK_HALF_WIDTH = 4
BODY_JOINT_RADIUS = 4
HAND_LINE_THICKNESS = 2
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3
#: Limbs are dimmed by this factor before the joints are drawn.
LIMB_DIM = 0.6
#: The official skips hand/face points whose truncated pixel coordinate is not above this.
EDGE_EPS = 0.01
#: Coordinates further than this many canvases away are clamped (OpenCV needs int32 pixels);
#: such points are far off-canvas, so nothing visible changes.
_COORD_LIMIT = 16.0


def _swap_rb(color: Sequence[float]) -> tuple[float, float, float]:
    return (color[2], color[1], color[0])


#: Colours as they appear in the frames the model saw (red and blue swapped; see step 1).
BODY_COLORS = tuple(_swap_rb(c) for c in BODY_PALETTE)
#: Hand edge colours: floats as the official passes them to OpenCV, then swapped.
HAND_EDGE_COLORS = tuple(
    _swap_rb(tuple(v * 255 for v in colorsys.hsv_to_rgb(e / float(len(HAND_EDGES)), 1.0, 1.0)))
    for e in range(len(HAND_EDGES))
)
HAND_POINT_COLOR = _swap_rb((0, 0, 255))
FACE_POINT_COLOR = (255, 255, 255)
_DIM_LUT = (np.arange(256) * LIMB_DIM).astype(np.uint8)
#: The limb colours after the official ``(canvas * 0.6).astype(uint8)``, channel by channel.
DIMMED_BODY_COLORS = tuple(tuple(int(_DIM_LUT[int(v)]) for v in color) for color in BODY_COLORS)
#: Output rows per band in :func:`resize_pose_frame` (a multiple of ``_RESIZE_REACH``).
RESIZE_BAND_ROWS = 24
#: Within a band, figure columns further apart than this (output pixels) are resized separately.
RESIZE_RUN_GAP = 16
#: Output pixels a bicubic kernel reaches at a whole-number scale s (with margin): its 2 * s
#: source pixels around a centre at (x + 0.5) * s lie within 2 + 1 output pixels. Crops keep twice
#: this; figure rows are found in blocks of this many output rows.
_RESIZE_REACH = 3
#: Output pixels around the figure that a whole-scale bicubic resize can light. Only the kernel's
#: positive lobe (|t| < 1, t in output pixels) can make an output pixel non-black: every sample is
#: >= 0 and PIL clips each pass (horizontal, then vertical) to [0, 255] after rounding
#: ``(sum + 2**21) >> 22``, so a pixel whose positive taps all read black gets a sum <= 0, i.e. 0
#: (clipping the kernel at the image edge renormalises by a positive sum: signs stay). Source
#: pixel p = q * s + r is under a positive tap of output x only when |p + 0.5 - (x + 0.5) s| < s,
#: i.e. x in {q - 1, q, q + 1}: one pixel per pass and direction.
_LIT_REACH = 1


def official_canvas_size(ref_width: int, ref_height: int) -> tuple[int, int]:
    """(W, H) of the official pose canvas for a reference image: twice its generation size."""
    w, h = size_for_area(ref_width, ref_height, DEFAULT_MAX_AREA)
    return 2 * w, 2 * h


def default_thickness_scale(width: int, height: int) -> float:
    """Canvas width over the official canvas width of the same aspect ratio."""
    return width / official_canvas_size(width, height)[0]


def render_pose(
    frame: PoseFrame,
    width: int,
    height: int,
    *,
    draw_body: bool = True,
    draw_hands: bool = True,
    draw_face: bool = False,
    thickness_scale: float | None = None,
) -> np.ndarray:
    """The official drawing of one pose on a black (height, width, 3) uint8 RGB canvas.

    At the official canvas size (and ``thickness_scale`` 1, the default there) the result is
    pixel-identical to the official code given the same coordinates.
    """
    canvas = np.zeros((int(height), int(width), 3), np.uint8)
    draw_pose(canvas, frame, draw_body=draw_body, draw_hands=draw_hands, draw_face=draw_face,
              thickness_scale=thickness_scale)
    return canvas


def draw_pose(
    canvas: np.ndarray,
    frame: PoseFrame,
    *,
    draw_body: bool = True,
    draw_hands: bool = True,
    draw_face: bool = False,
    thickness_scale: float | None = None,
) -> None:
    """:func:`render_pose`'s drawing onto a given black canvas (H, W, 3 or 4) uint8, in place.

    Every drawing operation acts on each channel independently, so a 4-channel canvas gets the
    RGB pixels of :func:`render_pose` plus a fourth channel left at 0 (the layout PIL can read
    without a copy, see :func:`render_resized`). The canvas may be a view into a larger image
    (a preview panel): OpenCV clips at the view's borders, as at a canvas's.
    """
    height, width = canvas.shape[:2]
    scale = default_thickness_scale(width, height) if thickness_scale is None else float(thickness_scale)
    if not scale > 0:
        raise ValueError(f"thickness_scale must be positive, got {thickness_scale}")
    if draw_body:
        _draw_body(canvas, frame.body, _scaled(BODY_STICK_HALF_WIDTH, scale), _scaled(BODY_JOINT_RADIUS, scale))
    if draw_hands:
        line_w, hand_r = _scaled(HAND_LINE_THICKNESS, scale), _scaled(HAND_POINT_RADIUS, scale)
        for hand in frame.hands:  # hand 0 (left) first, as the official order
            _draw_hand(canvas, hand, line_w, hand_r)
    if draw_face:
        _draw_points(canvas, frame.face, _scaled(FACE_POINT_RADIUS, scale), FACE_POINT_COLOR)


def render_sequence(seq: PoseSequence, width: int, height: int, **kwargs) -> Iterator[np.ndarray]:
    """:func:`render_pose` for every frame of ``seq`` (keyword arguments passed through)."""
    for frame in seq:
        yield render_pose(frame, width, height, **kwargs)


def resize_frames(frames: Iterable[np.ndarray], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Resize frames to ``size`` = (W, H) the way the official generator resizes the pose frames:
    ``PIL.Image.resize(size, BICUBIC)`` -- pixel for pixel (see :func:`resize_pose_frame`)."""
    size = (int(size[0]), int(size[1]))
    for frame in frames:
        yield resize_pose_frame(frame, size)


def resize_pose_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``PIL.Image.resize(size, BICUBIC)`` of a mostly black pose frame, computed only where the
    figure is.

    A bicubic output pixel depends only on the source pixels under its kernel, so where those are
    all black it is black. When the scale is a whole number (the default path: the official canvas
    is exactly twice the working size), PIL's ``box=`` resize of a sub-rectangle uses exactly the
    coefficients of the full-image resize (integer box offsets, same scale, kernels clipped to the
    *image*), so resizing only the rectangles where the figure is (:func:`_figure_runs`) and
    pasting them on black gives the full resize bit for bit, about 3x faster (tests check
    identity). At other scales fractional box offsets round a few pixels differently by one level,
    so those take the plain full resize. :func:`render_resized` does the same from a pose without
    the copies a 3-channel frame needs.
    """
    from PIL import Image

    out_w, out_h = int(size[0]), int(size[1])
    in_h, in_w = frame.shape[:2]
    if (in_w, in_h) == (out_w, out_h):
        return frame
    if in_w % out_w or in_h % out_h:
        return np.asarray(Image.fromarray(frame).resize((out_w, out_h), Image.Resampling.BICUBIC))
    out = np.zeros((out_h, out_w) + frame.shape[2:], np.uint8)
    flat = np.ascontiguousarray(frame).reshape(in_h, -1)  # H x 3W bytes
    sx, sy = in_w // out_w, in_h // out_h
    blocks = _row_block_max(flat, _RESIZE_REACH * sy)
    margin = 2 * _RESIZE_REACH
    for (ox0, oy0, ox1, oy1), _ in _figure_runs(blocks, flat.shape[1] // in_w, (in_w, in_h), (out_w, out_h)):
        # PIL copies an RGB array into its own 4-byte pixels: hand it only a crop. The crop keeps
        # a margin wider than the kernel, so no kernel is clipped at a crop edge that is not an
        # image edge.
        cy0, cy1 = max(0, (oy0 - margin) * sy), min(in_h, (oy1 + margin) * sy)
        cx0, cx1 = max(0, (ox0 - margin) * sx), min(in_w, (ox1 + margin) * sx)
        band = Image.fromarray(np.ascontiguousarray(frame[cy0:cy1, cx0:cx1])).resize(
            (ox1 - ox0, oy1 - oy0), Image.Resampling.BICUBIC,
            box=(ox0 * sx - cx0, oy0 * sy - cy0, ox1 * sx - cx0, oy1 * sy - cy0),
        )
        out[oy0:oy1, ox0:ox1] = np.asarray(band)
    return out


def render_resized(frame: PoseFrame, canvas_size: tuple[int, int], size: tuple[int, int],
                   **draw_kwargs) -> np.ndarray:
    """``resize_pose_frame(render_pose(frame, *canvas_size, **draw_kwargs), size)``, pixel for
    pixel, without making the full canvas: the condition frames' path.

    When the scale is a whole number, the pose is drawn on this thread's reusable 4-channel canvas
    (:class:`_ResampleScratch`; the fourth channel stays 0). PIL reads that layout in place
    (its RGB images are 4 bytes a pixel), so each :func:`_figure_runs` rectangle is one
    ``box=`` resize of the whole canvas image -- no crop copies, and kernels are clipped at the
    canvas edges exactly as in the full resize. Afterwards only the drawn rectangles are cleared.
    A fresh canvas would cost more than the drawing itself: its pages are first touched by the
    drawing. The returned frame is new each call; the scratch never leaves its thread.
    """
    canvas_w, canvas_h = int(canvas_size[0]), int(canvas_size[1])
    out_w, out_h = int(size[0]), int(size[1])
    if (canvas_w, canvas_h) == (out_w, out_h) or canvas_w % out_w or canvas_h % out_h:
        return resize_pose_frame(render_pose(frame, canvas_w, canvas_h, **draw_kwargs), (out_w, out_h))
    scratch = _scratch((canvas_w, canvas_h), (out_w, out_h))
    try:
        draw_pose(scratch.canvas, frame, **draw_kwargs)
        out = scratch.resample()
    except BaseException:
        scratch.reset()
        raise
    scratch.clear()
    return out


def _row_block_max(rows: np.ndarray, step: int) -> np.ndarray:
    """Column-wise maximum of each block of ``step`` rows of a 2-D array (the last may be short),
    with numpy's SIMD max over whole rows (``np.maximum.reduceat`` is many times slower)."""
    if rows.shape[0] % step == 0:
        return rows.reshape(rows.shape[0] // step, step, -1).max(axis=1)
    blocks = rows[0::step].copy()
    for k in range(1, step):
        part = rows[k::step]
        np.maximum(blocks[:len(part)], part, out=blocks[:len(part)])
    return blocks


def _figure_runs(blocks: np.ndarray, channels: int, in_size: tuple[int, int], out_size: tuple[int, int]
                 ) -> Iterator[tuple]:
    """Rectangles of a whole-scale resize that can be non-black, band of output rows by band.

    ``blocks`` (:func:`_row_block_max` of the frame's rows, ``channels`` values a pixel): row k is
    nonzero where source rows ``k * r * sy ...`` (``r`` = ``_RESIZE_REACH`` output rows) hold
    something. Each band of :data:`RESIZE_BAND_ROWS` output rows is resampled only across the
    runs of columns where its source rows, one block on each side included, hold something,
    widened by ``_LIT_REACH``: limbs are thin and two arms far apart are two small rectangles, not
    one across the empty space between them (runs closer than :data:`RESIZE_RUN_GAP` output
    pixels merge). All bands are planned with a few array operations. Yields ``((ox0, oy0, ox1,
    oy1), (y0, y1, x0, x1))``: the output rectangle (disjoint from the others) and the source
    rectangle holding the run's drawn pixels (every drawn pixel is in one of them)."""
    (in_w, in_h), (out_w, out_h) = in_size, out_size
    sx, sy = in_w // out_w, in_h // out_h
    reach = _RESIZE_REACH
    per = RESIZE_BAND_ROWS // reach  # blocks per band
    n_blocks, n_cols = blocks.shape
    n_bands = -(-n_blocks // per)
    # Occupancy (0/1 bytes) with a zero block before and after, and a zero column at both ends.
    padded = np.zeros((n_bands * per + 2, n_cols + 2), np.uint8)
    np.not_equal(blocks, 0, out=padded[1:n_blocks + 1, 1:-1].view(bool))
    occupied = padded[1:-1].reshape(n_bands, per, -1).max(axis=1)
    occupied |= padded[0:n_bands * per:per]  # the block above each band
    occupied |= padded[per + 1::per]  # the block below
    # Stretches of occupied columns from where occupancy switches (few), band by band.
    switches = np.diff(occupied.view(np.int8), axis=1).ravel()  # (1-D: np.nonzero is slow in 2-D)
    begin = np.flatnonzero(switches == 1)  # band * n_cols + first occupied column
    if begin.size == 0:
        return
    bands, begin = np.divmod(begin, n_cols + 1)
    end = np.flatnonzero(switches == -1) % (n_cols + 1)  # one past the last
    first_px, last_px = begin // channels, (end - 1) // channels
    first_col, last_col = first_px // sx, last_px // sx
    starts = np.ones(bands.size, bool)
    starts[1:] = (bands[1:] != bands[:-1]) | (first_col[1:] - last_col[:-1] > RESIZE_RUN_GAP)
    firsts = np.flatnonzero(starts)
    lasts = np.append(firsts[1:] - 1, bands.size - 1)
    for band, c0, c1, p0, p1 in zip(bands[firsts].tolist(), first_col[firsts].tolist(), last_col[lasts].tolist(),
                                    first_px[firsts].tolist(), last_px[lasts].tolist()):
        oy0 = band * RESIZE_BAND_ROWS
        oy1 = min(out_h, oy0 + RESIZE_BAND_ROWS)
        yield ((max(0, c0 - _LIT_REACH), oy0, min(out_w, c1 + 1 + _LIT_REACH), oy1),
               (max(0, (oy0 - reach) * sy), min(in_h, (oy1 + reach) * sy), p0, p1 + 1))


class _ResampleScratch:
    """One thread's canvas for :func:`render_resized`: an (H, W, 4) uint8 array that PIL sees as
    an RGB image without a copy (``map_buffer``), and an output staging image the same way."""

    def __init__(self, canvas_size: tuple[int, int], size: tuple[int, int]):
        from PIL import Image

        (cw, ch), (ow, oh) = canvas_size, size
        self.canvas_size, self.size = canvas_size, size
        self.canvas = np.zeros((ch, cw, 4), np.uint8)
        self.words = self.canvas.view(np.uint32)[..., 0]  # one word a pixel: nonzero where drawn
        self.staging = np.zeros((oh, ow, 4), np.uint8)
        self.source, self.target = _map_pixels(self.canvas), _map_pixels(self.staging)
        self.drawn: list[tuple[int, int, int, int]] = []

    def resample(self) -> np.ndarray:
        """The bicubic resize of the canvas to ``size`` as a new (H, W, 3) array."""
        from PIL import Image

        (ow, oh), (cw, ch) = self.size, self.canvas_size
        sx, sy = cw // ow, ch // oh
        out = np.zeros((oh, ow, 3), np.uint8)
        blocks = _row_block_max(self.words, _RESIZE_REACH * sy)
        for (ox0, oy0, ox1, oy1), source in _figure_runs(blocks, 1, (cw, ch), (ow, oh)):
            self.drawn.append(source)
            part = self.source.resize((ox1 - ox0, oy1 - oy0), Image.Resampling.BICUBIC,
                                      (ox0 * sx, oy0 * sy, ox1 * sx, oy1 * sy))
            self.target.paste(part, (ox0, oy0, ox1, oy1))
            # RGBX -> RGB into the frame's rectangle (OpenCV writes through the view)
            cv2.cvtColor(self.staging[oy0:oy1, ox0:ox1], cv2.COLOR_RGBA2RGB, dst=out[oy0:oy1, ox0:ox1])
        return out

    def clear(self) -> None:
        """Black again after :meth:`resample`: every drawn pixel lies in a source rectangle it
        found (each row is in some band's rows, each drawn column of those rows in a run)."""
        for y0, y1, x0, x1 in self.drawn:
            self.words[y0:y1, x0:x1] = 0
        self.drawn.clear()

    def reset(self) -> None:
        """Black again after a failure (drawn on, maybe not resampled): the whole canvas."""
        self.canvas[...] = 0
        self.drawn.clear()


def _map_pixels(array: np.ndarray):
    """A PIL image core over an (H, W, 4) uint8 array's memory (no copy; writes go through).

    As mode RGB (PIL stores RGB in 4 bytes a pixel, so its rows can point into the array), whose
    resampling computes 3 channels; where Pillow's ``map_buffer`` does not take that mode, the
    public RGBX mapping, which also resamples the unused fourth channel (~12% slower)."""
    from PIL import Image

    h, w = array.shape[:2]
    try:
        return Image.core.map_buffer(array, (w, h), "raw", 0, ("RGB", 4 * w, 1))
    except Exception:  # an internal of Pillow: fall back on the documented frombuffer modes
        return Image.frombuffer("RGBX", (w, h), array, "raw", "RGBX", 0, 1).im


_SCRATCH = threading.local()


def _scratch(canvas_size: tuple[int, int], size: tuple[int, int]) -> _ResampleScratch:
    """This thread's :class:`_ResampleScratch` for these sizes (one kept per thread: a thread
    renders one video's frames, all at one size)."""
    scratch = getattr(_SCRATCH, "scratch", None)
    if scratch is None or (scratch.canvas_size, scratch.size) != (canvas_size, size):
        scratch = _SCRATCH.scratch = _ResampleScratch(canvas_size, size)
    return scratch


# ----------------------------------------------------------------------------------------------
# Drawing steps
# ----------------------------------------------------------------------------------------------


def _scaled(pixels: int, scale: float) -> int:
    return pixels if scale == 1.0 else max(1, int(round(pixels * scale)))


def _pixels(points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 pixel coordinates (x * W, y * H) and the presence mask."""
    ok = present(points)
    xy = np.clip(np.nan_to_num(points[..., :2].astype(np.float64)), -_COORD_LIMIT, _COORD_LIMIT)
    return xy * (float(width), float(height)), ok


def _draw_body(canvas: np.ndarray, body: np.ndarray, stick: int, joint_r: int) -> None:
    """Limbs, the dimming, then the joints, on a black canvas. The official fills the limbs and
    then multiplies the whole canvas by 0.6; a fill replaces the pixels it covers (no blending),
    so every limb pixel ends up as its last limb's colour dimmed, and black stays black: filling
    with the dimmed colours directly gives the same pixels without a pass over the canvas."""
    h, w = canvas.shape[:2]
    xy, ok = _pixels(body, w, h)
    xy, ok = xy.tolist(), ok.tolist()  # Python floats: the same values, cheaper arithmetic
    for i, (a, b) in enumerate(BODY_LIMBS):
        if not (ok[a] and ok[b]):
            continue
        (x0, y0), (x1, y1) = xy[a], xy[b]
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        polygon = cv2.ellipse2Poly((int(mx), int(my)), (int(length / 2), stick), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, DIMMED_BODY_COLORS[i])
    for j, ((x, y), present_j) in enumerate(zip(xy, ok)):
        if present_j:
            cv2.circle(canvas, (int(x), int(y)), joint_r, BODY_COLORS[j], thickness=-1)


def _visible_pixels(points: np.ndarray, width: int, height: int) -> tuple[list, np.ndarray]:
    """Truncated pixel coordinates and the official eps test (pixel coordinate > 0.01)."""
    xy, ok = _pixels(points, width, height)
    pixels = xy.astype(np.int64)  # truncates toward zero, as ``int``; |xy| <= 16 canvases: no overflow
    visible = ok & (pixels > EDGE_EPS).all(axis=1)
    return [(x, y) for x, y in pixels.tolist()], visible


def _draw_hand(canvas: np.ndarray, hand: np.ndarray, line_w: int, point_r: int) -> None:
    h, w = canvas.shape[:2]
    pts, visible = _visible_pixels(hand, w, h)
    for e, (a, b) in enumerate(HAND_EDGES):
        if visible[a] and visible[b]:
            cv2.line(canvas, pts[a], pts[b], HAND_EDGE_COLORS[e], thickness=line_w)
    for k in np.flatnonzero(visible):
        cv2.circle(canvas, pts[k], point_r, HAND_POINT_COLOR, thickness=-1)


def _draw_points(canvas: np.ndarray, points: np.ndarray, radius: int, color) -> None:
    h, w = canvas.shape[:2]
    pts, visible = _visible_pixels(points, w, h)
    for k in np.flatnonzero(visible):
        cv2.circle(canvas, pts[k], radius, color, thickness=-1)


# ----------------------------------------------------------------------------------------------
# Preview composition
# ----------------------------------------------------------------------------------------------


def overlay(pose_img: np.ndarray, background: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The pose drawn over a (dimmed) photo/frame: where the pose canvas is not black, blend
    ``alpha`` of the pose with ``1 - alpha`` of the background; elsewhere the background.
    The background is resized (bicubic) to the pose image when sizes differ."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = pose_img.shape[:2]
    bg = as_rgb(background)
    if bg.shape[:2] != (h, w):
        bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_AREA if bg.shape[0] > h else cv2.INTER_CUBIC)
    out = bg.copy()
    overlay_into(out, pose_img, alpha)
    return out


def overlay_into(dst: np.ndarray, pose_img: np.ndarray, alpha: float = 0.6) -> None:
    """:func:`overlay` in place: ``dst`` (H, W, 3) uint8, which may be a view into a larger
    image, holds the background at the pose image's size and gets the pose blended over it."""
    h = pose_img.shape[0]
    # Only the figure's bounding box can differ from the background: blend there alone.
    x, y, bw, bh = cv2.boundingRect(np.ascontiguousarray(pose_img).reshape(h, -1))
    if bw == 0 or bh == 0:
        return
    x0, x1 = x // 3, -(-(x + bw) // 3)
    pose_box, dst_box = pose_img[y:y + bh, x0:x1], dst[y:y + bh, x0:x1]
    b, g, r = cv2.split(pose_box)
    drawn = cv2.max(cv2.max(b, g), r)  # a pixel is drawn when any channel is (nonzero mask)
    blended = cv2.addWeighted(pose_box, alpha, dst_box, 1.0 - alpha, 0.0)
    cv2.copyTo(blended, drawn, dst_box)  # in place (numpy's copyto with ``where`` is ~100x slower)


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 height: int = 512) -> np.ndarray:
    """Panels scaled to a common ``height`` (aspect kept) and joined left to right, each with a
    small label in its top-left corner. The result has even width and height (video-ready)."""
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    if labels is not None and len(labels) != len(panels):
        raise ValueError(f"{len(labels)} labels for {len(panels)} panels")
    height = even_height(height)
    images = [as_rgb(panel) for panel in panels]
    out, views = panel_strip(height, [panel_width(img.shape[:2], height) for img in images])
    for i, (img, view) in enumerate(zip(images, views)):
        fit_panel(view, img)
        if labels is not None and labels[i]:
            put_label(view, str(labels[i]))
    return out


def even_height(height: int) -> int:
    """The height :func:`side_by_side` uses: ``height`` rounded up to even."""
    return int(height) + int(height) % 2


def panel_width(shape: tuple[int, int], height: int) -> int:
    """Width of an (h, w) panel scaled to ``height``, aspect kept."""
    ph, pw = shape
    return max(1, int(round(pw * height / ph)))


def panel_strip(height: int, widths: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """An uninitialised (height, even width, 3) image for panels of these widths side by side,
    and a view of each panel's columns (the padding column, if any, is black)."""
    total = int(sum(widths))
    out = np.empty((height, total + total % 2, 3), np.uint8)
    out[:, total:] = 0
    edges = np.cumsum([0, *widths]).tolist()
    return out, [out[:, a:b] for a, b in zip(edges[:-1], edges[1:])]


def fit_panel(view: np.ndarray, img: np.ndarray) -> None:
    """``img`` scaled to the view's size (bicubic up, area down), written into the view."""
    height, width = view.shape[:2]
    ph, pw = img.shape[:2]
    if (width, height) != (pw, ph):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if ph > height else cv2.INTER_CUBIC)
    view[...] = img


def put_label(img: np.ndarray, text: str) -> None:
    """White text on a dark box in the top-left corner, sized to the panel height (in place;
    ``img`` may be a view of one panel)."""
    font, font_scale, thick, (tw, th), base, pad = _label_geometry(text, img.shape[0])
    x0, y0 = pad, pad
    box = img[y0:y0 + th + base + 2 * pad, x0:x0 + tw + 2 * pad]
    box[:] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken, keep the panel visible
    cv2.putText(img, text, (x0 + pad, y0 + pad + th), font, font_scale, (255, 255, 255), thick, cv2.LINE_AA)


@functools.lru_cache(maxsize=64)
def _label_geometry(text: str, height: int) -> tuple:
    """Font, scale, thickness, text size, baseline and padding of a label (same every frame)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = max(0.35, height / 1100)
    thick = max(1, int(round(font_scale * 2)))
    (tw, th), base = cv2.getTextSize(text, font, font_scale, thick)
    pad = max(3, int(th * 0.4))
    return font, font_scale, thick, (tw, th), base, pad


def as_rgb(img: np.ndarray) -> np.ndarray:
    """A uint8 image as contiguous (H, W, 3) RGB: grey repeated, an alpha channel dropped."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[..., :3])
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
