"""What the official conditioning chain does to the pose pixels, compared with the clean render.

    python benchmarks/conditioning.py                          # ../shared/media (academic-use media)
    python benchmarks/conditioning.py --media DIR --frames 81 --image ref_third.png

1. **Model input, official vs clean.** The character photo (``--image``) and the driving clip of
   the media folder go through the pose path (auto alignment, 16 fps). The positive condition is
   then made both ways, as the product hands it to the pipeline, and brought to the generation size
   (1024x576 area) as the pipeline does (torch bicubic without antialiasing, the official resize):

   * clean    -- the render on the official canvas, Pillow bicubic to the photo's own size;
   * official -- the render through H.264 (moviepy's libx264 settings), JPEG (cv2.imwrite
     defaults), then Pillow bicubic to the photo's own size.

   Both in [-1, 1] (x / 127.5 - 1, as the pipeline). *Limb pixels* are the pixels the clean
   model input lights (max channel >= 32 of 255). Reported: the mean absolute
   difference over the limb pixels (all three channels), and the mean HSV saturation of the limb
   pixels in each (relative change = official / clean - 1).

2. **Check against the official frames.** The official example frames of the media folder
   (``dwpose_style/positive_*.jpg``: frames of an official pose video as the official
   preprocessing dumped them, on the 1312x1792 canvas) are compared with our render of the
   pose-path frames on the same canvas, clean and after the H.264 + JPEG steps: mean saturation
   of the lit pixels (max channel >= 32). The official frames come from another clip, so only
   the statistics are comparable.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LIT = 32  #: a pixel belongs to a limb when its brightest channel reaches this (of 255)


def saturation(pixels: np.ndarray) -> np.ndarray:
    """HSV saturation of uint8 RGB pixels (..., 3)."""
    p = pixels.astype(np.float64)
    mx, mn = p.max(axis=-1), p.min(axis=-1)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-9), 0.0)


def to_model_input(frames: list[np.ndarray], size: tuple[int, int]):
    """uint8 frames -> float [F, 3, H, W] in [-1, 1], torch bicubic (no antialias) to size = (W, H)."""
    import torch
    import torch.nn.functional as F

    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if tuple(video.shape[-2:]) != (size[1], size[0]):
        video = F.interpolate(video, size=(size[1], size[0]), mode="bicubic", align_corners=False)
    return video


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--image", default="ref_street.png")
    parser.add_argument("--video", default="driving_seated_gestures.mp4")
    parser.add_argument("--frames", type=int, default=81)
    args = parser.parse_args(argv)
    if not (args.media / args.image).is_file():
        print(f"media not found: {args.media / args.image} (academic-use media, never committed)")
        return 1

    from steadydancer.constants import DEFAULT_MAX_AREA, size_for_area
    from steadydancer.pose.conditioning import condition_videos, h264_roundtrip, jpeg_roundtrip
    from steadydancer.pose.path import PoseOptions, run_pose_path
    from steadydancer.pose.render import official_canvas_size, render_sequence

    options = PoseOptions(max_frames=args.frames)
    result = run_pose_path(args.media / args.image, args.media / args.video, options)
    ref = result.reference.image
    gen = size_for_area(ref.width, ref.height, DEFAULT_MAX_AREA)
    print(f"{args.image} ({ref.width}x{ref.height}) x {args.video}: {len(result.aligned.positive)} frames, "
          f"alignment {result.aligned.info.mode}, canvas {official_canvas_size(*result.reference.size)}, "
          f"generation size {gen[0]}x{gen[1]}")

    t0 = time.perf_counter()
    clean, _ = condition_videos(result.reference, result.aligned, options, conditioning="clean")
    t1 = time.perf_counter()
    official, _ = condition_videos(result.reference, result.aligned, options, conditioning="official")
    t2 = time.perf_counter()
    print(f"time for positive + negative: clean {t1 - t0:.1f} s, official chain {t2 - t1:.1f} s "
          f"({(t2 - t1) / max(t1 - t0, 1e-9):.1f}x)")

    clean_in = to_model_input(clean, gen).numpy()
    official_in = to_model_input(official, gen).numpy()
    to_u8 = lambda x: np.clip(np.round((x.transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255).astype(np.uint8)  # noqa: E731
    lit = to_u8(clean_in).max(axis=-1) >= LIT  # [F, H, W]
    lit_t = lit[:, None].repeat(3, axis=1)
    diff = np.abs(official_in - clean_in)[lit_t]
    sat_clean = saturation(to_u8(clean_in))[lit].mean()
    sat_official = saturation(to_u8(official_in))[lit].mean()
    print("\n1. model input at the generation size, limb pixels "
          f"({lit.mean() * 100:.2f} % of the pixels)")
    print(f"   mean |official - clean| in [-1, 1]: {diff.mean():.4f} (median {np.median(diff):.4f}, "
          f"95th percentile {np.percentile(diff, 95):.4f})")
    print(f"   mean limb saturation: clean {sat_clean:.4f}, official {sat_official:.4f} "
          f"({(sat_official / sat_clean - 1) * 100:+.1f} %)")
    print(f"   value range: clean [{clean_in.min():.3f}, {clean_in.max():.3f}], "
          f"official [{official_in.min():.3f}, {official_in.max():.3f}]")

    style = sorted((args.media / "dwpose_style").glob("positive_*.jpg"))
    if style:
        from PIL import Image

        canvas = official_canvas_size(*result.reference.size)
        rendered = list(render_sequence(result.aligned.positive[: min(16, len(result.aligned.positive))], *canvas))
        compressed = [jpeg_roundtrip(f) for f in h264_roundtrip(rendered, result.aligned.positive.fps)]
        print(f"\n2. saturation of the lit pixels on the official canvas {canvas[0]}x{canvas[1]}")
        for path in style:
            frame = np.asarray(Image.open(path).convert("RGB"))
            print(f"   official {path.name} ({frame.shape[1]}x{frame.shape[0]}): "
                  f"{saturation(frame)[frame.max(axis=-1) >= LIT].mean():.4f}")
        stack = np.stack(rendered)
        mask = stack.max(axis=-1) >= LIT
        print(f"   ours, clean render ({len(rendered)} frames): {saturation(stack)[mask].mean():.4f}")
        stack = np.stack(compressed)
        mask = stack.max(axis=-1) >= LIT
        print(f"   ours, after H.264 + JPEG: {saturation(stack)[mask].mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
