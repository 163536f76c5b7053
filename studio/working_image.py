"""A working-size copy of the character photo: what a session keeps instead of the full photo.

Every later stage reads the photo at most at the generation size (the preview at 480 px, the
model at its resolution class), and reads the photo's *own* size only through
:func:`steadydancer.constants.size_for_area` (the generation size, the official pose canvas). So a
session keeps a copy whose area is at most ``max_area`` and whose ``size_for_area`` is the same as
the photo's for every area that matters: the same generation size, the same canvas, the same poses
(detections are normalised), a fraction of the memory (a 9000x9000 photo: 243 MB -> 7 MB).
"""

from __future__ import annotations

import math
from typing import Iterable

from PIL import Image

from steadydancer.constants import size_for_area


def working_size(width: int, height: int, max_area: int, areas: Iterable[int]) -> tuple[int, int]:
    """(W, H) of the copy (the photo's own size when its area is at most ``max_area``), such that
    ``size_for_area(W, H, a) == size_for_area(width, height, a)`` for every ``a`` in ``areas``.

    Among the sizes up to 16 pixels below the exact scale, the one closest in aspect ratio that keeps
    every rounded size is used. For the few photos whose aspect ratio sits on a rounding edge, a copy
    of 2x or 4x the area is tried; if none fits either (5 in 100,000 random sizes from 1500 to 12000
    px), the plain scaled size is used -- the bound on memory holds always, and the generation size
    of such a photo may then be one 16-pixel step off the full photo's."""
    if width * height <= max_area:
        return width, height
    areas = sorted(set(int(a) for a in areas))
    wanted = [size_for_area(width, height, a) for a in areas]
    for bound in (max_area, 2 * max_area, 4 * max_area):  # rarely, a slightly larger copy fits
        if width * height <= bound:
            break
        scale = math.sqrt(bound / (width * height))
        w0, h0 = width * scale, height * scale
        candidates = sorted(
            ((int(math.floor(w0)) - dw, int(math.floor(h0)) - dh) for dw in range(16) for dh in range(16)),
            key=lambda wh: abs(wh[0] / wh[1] - width / height),
        )
        for w, h in candidates:
            if w >= 1 and h >= 1 and all(size_for_area(w, h, a) == s for a, s in zip(areas, wanted)):
                return w, h
    scale = math.sqrt(max_area / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def working_copy(image: Image.Image, max_area: int, areas: Iterable[int]) -> Image.Image:
    """``image`` reduced to :func:`working_size` (Lanczos, like a careful manual resize); the image
    itself when it is already small enough."""
    size = working_size(image.width, image.height, max_area, areas)
    if size == image.size:
        return image
    return image.resize(size, Image.LANCZOS, reducing_gap=3.0)
