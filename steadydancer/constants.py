"""Constants that more than one module needs: defined once, here."""

#: SteadyDancer (Wan2.1) was trained on 16 fps clips; pose sequences are resampled to this rate.
MODEL_FPS = 16

#: The Wan VAE compresses time by 4 (first frame kept): pixel frame counts must be 4n + 1.
VAE_TEMPORAL_STRIDE = 4
#: ... and space by 8; with the transformer's 2x2 patches, sides must be multiples of 16.
VAE_SPATIAL_STRIDE = 8
SIZE_MULTIPLE = 16

#: The official generator's frame count and max area (1024*576).
DEFAULT_NUM_FRAMES = 81
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

#: Max areas of the resolution presets: the official 1024*576 ("720p" class) and Wan's 832*480.
RESOLUTION_AREAS = {"720p": 1024 * 576, "480p": 832 * 480}

#: The prompt used when the user gives none: it describes what every SteadyDancer video is.
DEFAULT_PROMPT = (
    "A person dancing with natural, fluid movements, consistent appearance and clothing, "
    "steady camera, sharp details, high quality."
)
