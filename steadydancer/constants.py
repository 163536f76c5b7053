"""The model's geometry (frame rate, strides, the 4n + 1 rule, the size rule): defined once, here.

Defaults and limits of the product live in :mod:`steadydancer.settings`."""

#: SteadyDancer (Wan2.1) was trained on 16 fps clips; pose sequences are resampled to this rate.
MODEL_FPS = 16

#: The Wan VAE compresses time by 4 (first frame kept): pixel frame counts must be 4n + 1.
VAE_TEMPORAL_STRIDE = 4
#: ... and space by 8; with the transformer's 2x2 patches, sides must be multiples of 16.
VAE_SPATIAL_STRIDE = 8
SIZE_MULTIPLE = 16

#: The official generator's max area (1024*576). Every other default lives in :mod:`steadydancer.settings`.
DEFAULT_MAX_AREA = 1024 * 576


def is_valid_frame_count(num_frames: int) -> bool:
    """True for the frame counts the Wan VAE accepts: 1, 5, 9, ... (4n + 1)."""
    return num_frames >= 1 and (num_frames - 1) % VAE_TEMPORAL_STRIDE == 0


def nearest_valid_frame_count(num_frames: int, round_up: bool = False) -> int:
    """The 4n + 1 count nearest to ``num_frames`` (at most ``num_frames`` unless ``round_up``)."""
    if num_frames < 1:
        return 1
    n, rem = divmod(num_frames - 1, VAE_TEMPORAL_STRIDE)
    if round_up and rem:
        n += 1
    return n * VAE_TEMPORAL_STRIDE + 1


def latent_frame_count(num_frames: int) -> int:
    """Latent frames for a 4n + 1 pixel clip."""
    return (num_frames - 1) // VAE_TEMPORAL_STRIDE + 1


def size_for_area(width: int, height: int, max_area: int = DEFAULT_MAX_AREA,
                  multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(W, H) with the aspect ratio of ``width x height``, area <= ``max_area``, sides multiples
    of ``multiple`` -- the official Wan rule: h = floor(sqrt(area * H/W) / m) * m, w likewise."""
    import math

    aspect = height / width
    h = int(math.sqrt(max_area * aspect) // multiple) * multiple
    w = int(math.sqrt(max_area / aspect) // multiple) * multiple
    return max(w, multiple), max(h, multiple)
