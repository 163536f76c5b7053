"""CPU per frame of the pose drawing: condition frames (official canvas + bicubic resize) and previews.

    python benchmarks/pose_render.py                      # against the plain operations
    python benchmarks/pose_render.py --before b8a55ad     # and against that commit's code (the
                                                          # drawing before render_resized)

The shipped example (photo ``examples/astronaut.png``, motion ``examples/dance_keyframes.poses.json``
through the pose path's clean and align stages, ``--frames`` frames). Rows, in ms of this thread's
CPU per frame (``time.thread_time``: other load on a shared machine disturbs it less than wall time):

    render_pose      the official drawing on a fresh official canvas (1536x1536 for this photo)
    resize           resize_pose_frame of those canvases to the photo's size
    condition        condition_renderer: what each condition video frame costs
    preview_frame    one 892x480 preview frame (driving | extracted | aligned over the character)

and, as references, the plain operations the fast paths must equal: ``plain resize`` (PIL's full
``resize(size, BICUBIC)``) and ``plain condition`` (render_pose, then that full resize).
``--before REF`` loads ``steadydancer/pose/render.py`` and ``outputs.py`` as they are at the git
commit REF and times the same rows with them. Rounds alternate between the versions and the
fastest round of each is kept (``--repeat``); every row is checked for identical pixels first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_version(ref: str) -> tuple[types.ModuleType, types.ModuleType]:
    """(render, outputs) modules of the pose package as they are at git commit ``ref``, loaded next
    to the current package (their relative imports of other modules resolve to the current ones)."""
    modules = []
    for name in ("render", "outputs"):
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:steadydancer/pose/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        source = source.replace("from .render import", "from ._before_render import")
        module = types.ModuleType(f"steadydancer.pose._before_{name}")
        module.__package__ = "steadydancer.pose"
        sys.modules[module.__name__] = module
        exec(compile(source, f"{ref}:steadydancer/pose/{name}.py", "exec"), module.__dict__)
        modules.append(module)
    return modules[0], modules[1]


def cpu_ms_per_frame(fn, items) -> float:
    start = time.thread_time()
    for item in items:
        fn(item)
    return (time.thread_time() - start) * 1000 / len(items)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="git commit whose render.py / outputs.py to compare with")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    from PIL import Image

    from steadydancer.pose import outputs, render
    from steadydancer.pose.path import PoseOptions, align_driving, clean_driving, extract_driving, prepare_reference

    options = PoseOptions(max_frames=args.frames)
    reference = prepare_reference(REPO / "examples" / "astronaut.png")
    driving = extract_driving(REPO / "examples" / "dance_keyframes.poses.json", options)
    cleaned = clean_driving(driving, options)
    aligned = align_driving(reference, cleaned, options)
    poses = list(aligned.positive)
    canvas = render.official_canvas_size(*reference.image.size)
    size = tuple(reference.size)
    previews = list(outputs.preview_items(driving, cleaned, aligned, options))
    print(f"{len(poses)} frames, canvas {canvas[0]}x{canvas[1]} -> {size[0]}x{size[1]}")

    def rows(r, o):
        """name -> (function of one item, items) for render module ``r`` and outputs module ``o``."""
        canvases = [r.render_pose(p, *canvas) for p in poses]
        condition = o.condition_renderer(reference, options)
        layout = o.preview_layout(reference, cleaned, options)
        return {
            "render_pose": (lambda p: r.render_pose(p, *canvas), poses),
            "resize": (lambda c: r.resize_pose_frame(c, size), canvases),
            "condition": (condition, poses),
            "preview_frame": (lambda item: o.preview_frame(layout, *item), previews),
        }

    def plain_resize(c):
        return np.asarray(Image.fromarray(c).resize(size, Image.Resampling.BICUBIC))

    versions = {"now": rows(render, outputs)}
    if args.before:
        versions["before"] = rows(*load_version(args.before))
    plain = {
        "plain resize": (plain_resize, versions["now"]["resize"][1]),
        "plain condition": (lambda p: plain_resize(render.render_pose(p, *canvas)), poses),
    }

    # Same pixels everywhere before any timing.
    expected = {name: [fn(x) for x in items] for name, (fn, items) in versions["now"].items()}
    expected["resize"] = expected["condition"] = [plain_resize(c) for c in versions["now"]["resize"][1]]
    for version in versions.values():
        for name, (fn, items) in version.items():
            assert all(np.array_equal(fn(x), e) for x, e in zip(items, expected[name])), name

    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeat):
        for label, table in [*versions.items(), ("plain", plain)]:
            for name, (fn, items) in table.items():
                ms = cpu_ms_per_frame(fn, items)
                best[label, name] = min(best.get((label, name), np.inf), ms)

    print(f"{'cpu ms/frame':16s}{'now':>9s}" + (f"{'before':>9s}{'before/now':>12s}" if args.before else ""))
    for name in versions["now"]:
        line = f"{name:16s}{best['now', name]:9.3f}"
        if args.before:
            line += f"{best['before', name]:9.3f}{best['before', name] / best['now', name]:11.2f}x"
        print(line)
    for name in plain:
        print(f"{name:16s}{best['plain', name]:9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
