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
import math
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
#: Output rows per band in :func:`resize_pose_frame`.
RESIZE_BAND_ROWS = 32
#: Within a band, figure columns further apart than this (output pixels) are resized separately.
RESIZE_RUN_GAP = 16


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
    width, height = int(width), int(height)
    scale = default_thickness_scale(width, height) if thickness_scale is None else float(thickness_scale)
    if not scale > 0:
        raise ValueError(f"thickness_scale must be positive, got {thickness_scale}")
    stick = _scaled(BODY_STICK_HALF_WIDTH, scale)
    joint_r = _scaled(BODY_JOINT_RADIUS, scale)
    line_w = _scaled(HAND_LINE_THICKNESS, scale)
    hand_r = _scaled(HAND_POINT_RADIUS, scale)
    face_r = _scaled(FACE_POINT_RADIUS, scale)

    canvas = np.zeros((height, width, 3), np.uint8)
    if draw_body:
        _draw_body(canvas, frame.body, stick, joint_r)
    if draw_hands:
        for hand in frame.hands:  # hand 0 (left) first, as the official order
            _draw_hand(canvas, hand, line_w, hand_r)
    if draw_face:
        _draw_points(canvas, frame.face, face_r, FACE_POINT_COLOR)
    return canvas


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
    *image*), so resizing only the rectangles where the figure is (bands of rows, runs of columns,
    plus the kernel's reach) and pasting them on black gives the full resize bit for bit, about 3x
    faster (tests check identity). At other
    scales fractional box offsets round a few pixels differently by one level, so those take the
    plain full resize.
    """
    from PIL import Image

    out_w, out_h = int(size[0]), int(size[1])
    in_h, in_w = frame.shape[:2]
    if (in_w, in_h) == (out_w, out_h):
        return frame
    if in_w % out_w or in_h % out_h:
        return np.asarray(Image.fromarray(frame).resize((out_w, out_h), Image.Resampling.BICUBIC))
    out = np.zeros((out_h, out_w) + frame.shape[2:], np.uint8)
    flat = np.ascontiguousarray(frame).reshape(in_h, -1)  # H x 3W bytes, for OpenCV
    sx, sy = in_w // out_w, in_h // out_h
    # The bicubic kernel reaches 2 * s source pixels; with integer centres that is within 2 + 1
    # output pixels. Each band of output rows is resampled only across the runs of columns where
    # its source rows (kernel reach included) hold something: limbs are thin, so this skips most
    # of the figure's bounding box too.
    reach = 3
    for oy0 in range(0, out_h, RESIZE_BAND_ROWS):
        oy1 = min(out_h, oy0 + RESIZE_BAND_ROWS)
        y0, y1 = max(0, (oy0 - reach) * sy), min(in_h, (oy1 + reach) * sy)
        # Columns of the band's source rows that hold something, grouped into runs: two arms far
        # apart are two small resizes, not one across the empty space between them.
        columns = np.flatnonzero(flat[y0:y1].max(axis=0).reshape(-1, 3).max(axis=1))  # (numpy's SIMD max)
        if columns.size == 0:
            continue
        out_cols = columns // sx
        cuts = np.flatnonzero(np.diff(out_cols) > RESIZE_RUN_GAP)
        cy0, cy1 = max(0, (oy0 - 2 * reach) * sy), min(in_h, (oy1 + 2 * reach) * sy)
        firsts = [int(out_cols[0])] + out_cols[cuts + 1].tolist()
        lasts = out_cols[cuts].tolist() + [int(out_cols[-1])]
        for first, last in zip(firsts, lasts):
            ox0, ox1 = max(0, first - reach), min(out_w, last + 1 + reach)
            # Hand PIL only a crop (it copies what it is given). The crop keeps a margin wider than
            # the kernel, so no kernel is clipped at a crop edge that is not an image edge.
            cx0, cx1 = max(0, (ox0 - 2 * reach) * sx), min(in_w, (ox1 + 2 * reach) * sx)
            band = Image.fromarray(np.ascontiguousarray(frame[cy0:cy1, cx0:cx1])).resize(
                (ox1 - ox0, oy1 - oy0), Image.Resampling.BICUBIC,
                box=(ox0 * sx - cx0, oy0 * sy - cy0, ox1 * sx - cx0, oy1 * sy - cy0),
            )
            out[oy0:oy1, ox0:ox1] = np.asarray(band)
    return out


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
    for i, (a, b) in enumerate(BODY_LIMBS):
        if not (ok[a] and ok[b]):
            continue
        (x0, y0), (x1, y1) = xy[a], xy[b]
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        polygon = cv2.ellipse2Poly((int(mx), int(my)), (int(length / 2), stick), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, DIMMED_BODY_COLORS[i])
    for j in np.flatnonzero(ok):
        cv2.circle(canvas, (int(xy[j, 0]), int(xy[j, 1])), joint_r, BODY_COLORS[j], thickness=-1)


def _visible_pixels(points: np.ndarray, width: int, height: int) -> tuple[list, np.ndarray]:
    """Truncated pixel coordinates and the official eps test (pixel coordinate > 0.01)."""
    xy, ok = _pixels(points, width, height)
    pts = [(int(x), int(y)) for x, y in xy]
    visible = np.array([k and px > EDGE_EPS and py > EDGE_EPS for k, (px, py) in zip(ok, pts)], bool)
    return pts, visible


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
    bg = _as_rgb(background)
    if bg.shape[:2] != (h, w):
        bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_AREA if bg.shape[0] > h else cv2.INTER_CUBIC)
    # Only the figure's bounding box can differ from the background: blend there alone.
    x, y, bw, bh = cv2.boundingRect(np.ascontiguousarray(pose_img).reshape(h, -1))
    out = bg.copy()
    if bw == 0 or bh == 0:
        return out
    x0, x1 = x // 3, -(-(x + bw) // 3)
    pose_box, bg_box = pose_img[y:y + bh, x0:x1], bg[y:y + bh, x0:x1]
    b, g, r = cv2.split(pose_box)
    drawn = cv2.max(cv2.max(b, g), r) > 0  # a pixel is drawn when any channel is
    blended = cv2.addWeighted(pose_box, alpha, bg_box, 1.0 - alpha, 0.0)
    np.copyto(out[y:y + bh, x0:x1], blended, where=drawn[..., None])
    return out


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 height: int = 512) -> np.ndarray:
    """Panels scaled to a common ``height`` (aspect kept) and joined left to right, each with a
    small label in its top-left corner. The result has even width and height (video-ready)."""
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    if labels is not None and len(labels) != len(panels):
        raise ValueError(f"{len(labels)} labels for {len(panels)} panels")
    height = int(height) + int(height) % 2
    scaled = []
    for i, panel in enumerate(panels):
        img = _as_rgb(panel)
        ph, pw = img.shape[:2]
        new_w = max(1, int(round(pw * height / ph)))
        if (new_w, height) != (pw, ph):
            interp = cv2.INTER_AREA if ph > height else cv2.INTER_CUBIC
            img = cv2.resize(img, (new_w, height), interpolation=interp)
        else:
            img = img.copy()
        if labels is not None and labels[i]:
            _put_label(img, str(labels[i]))
        scaled.append(img)
    out = np.concatenate(scaled, axis=1)
    if out.shape[1] % 2:
        out = np.concatenate([out, np.zeros((height, 1, 3), np.uint8)], axis=1)
    return out


def _put_label(img: np.ndarray, text: str) -> None:
    """White text on a dark box, sized to the panel height."""
    h = img.shape[0]
    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = max(0.35, h / 1100)
    thick = max(1, int(round(font_scale * 2)))
    (tw, th), base = cv2.getTextSize(text, font, font_scale, thick)
    pad = max(3, int(th * 0.4))
    x0, y0 = pad, pad
    box = img[y0:y0 + th + base + 2 * pad, x0:x0 + tw + 2 * pad]
    box[:] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken, keep the panel visible
    cv2.putText(img, text, (x0 + pad, y0 + pad + th), font, font_scale, (255, 255, 255), thick, cv2.LINE_AA)


def _as_rgb(img: np.ndarray) -> np.ndarray:
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
