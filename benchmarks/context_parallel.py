"""Context parallelism: should the text / CLIP / VAE work run once and be shared, or on every rank?

    python benchmarks/context_parallel.py [--repeats 5] [--size 64] [--frames 17]

Runs on the CPU at tiny scale (the tiny pipeline of the tests, random weights): first in this process
alone, then under ``torchrun --nproc_per_node 2`` (gloo), measuring for the conditioning stage of one
video (UMT5 prompt + negative prompt, CLIP of the reference and first pose frame, VAE of ``y``, the
reference blocks, the pose and negative pose videos):

* ``alone``: one process computes it;
* ``every rank``: both ranks compute it at the same time (what ``--parallel`` does);
* ``shared``: rank 0 computes it, then broadcasts the tensors to rank 1 (the alternative), and the
  broadcast alone.

It also prints the size of those tensors for the real model (bf16 text, float32 latents), which is
what sharing would have to send over the interconnect per window. Best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def conditioning(pipe, image, positive, negative, size, frames):
    """The conditioning tensors of one window, as the pipeline computes them."""
    import torch

    from steadydancer.pipeline import _Frames, _image_to_tensor, _resize

    device = torch.device("cpu")
    reference = _resize(_image_to_tensor(image), size, size)
    pos, neg = _Frames(positive, "pose_video"), _Frames(negative, "negative_pose_video")
    first_pose = pos.window(0, 1, size, size)[:, 0]
    prompt, negative_prompt = pipe.encode_prompt("a person dancing", None, True, device=device)
    clip = pipe.encode_image(torch.stack([reference, first_pose]), device)
    ref_x, ref_c = pipe.prepare_reference_latents(reference, first_pose, device)
    y = pipe.prepare_image_condition(reference, frames, device)
    pose = pipe.encode_video(pos.window(0, frames, size, size)[None], device)
    negative_pose = pipe.encode_video(neg.window(0, frames, size, size)[None], device)
    return [prompt, negative_prompt, clip, ref_x, ref_c, y, pose, negative_pose]


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def real_scale_bytes(height=480, width=832, frames=81) -> dict:
    """Bytes of the shared conditioning of one 81-frame window of the real model."""
    f, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    return {
        "text (2 x 512 x 4096, bf16)": 2 * 512 * 4096 * 2,
        "CLIP (2 x 257 x 1280, fp32)": 2 * 257 * 1280 * 4,
        "y (20 ch), pose and negative pose (16 ch) latents, fp32": (20 + 16 + 16) * f * h * w * 4,
        "ref_x, ref_c (2 x 36 ch), fp32": 2 * 36 * h * w * 4,
    }


def worker(args) -> None:
    import torch
    import torch.distributed as dist

    from tiny_pipeline import load_tiny_pipeline, tiny_inputs

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    pipe = load_tiny_pipeline(args.model)
    image, positive, negative = tiny_inputs(args.frames, (args.size, args.size))

    def every_rank():
        dist.barrier()
        conditioning(pipe, image, positive, negative, args.size, args.frames)
        dist.barrier()

    tensors = conditioning(pipe, image, positive, negative, args.size, args.frames)

    def broadcast():
        dist.barrier()
        for tensor in tensors:
            dist.broadcast(tensor.contiguous(), src=0)
        dist.barrier()

    def shared():
        dist.barrier()
        local = conditioning(pipe, image, positive, negative, args.size, args.frames) if rank == 0 else tensors
        for tensor in local:
            dist.broadcast(tensor.contiguous(), src=0)
        dist.barrier()

    results = {"every rank": best(every_rank, args.repeats), "shared (rank 0 + broadcast)": best(shared, args.repeats),
               "broadcast alone": best(broadcast, args.repeats)}
    if rank == 0:
        size = sum(t.numel() * t.element_size() for t in tensors)
        for name, seconds in results.items():
            print(f"  {name:28} {1000 * seconds:8.1f} ms")
        print(f"  (tiny tensors: {size / 1e6:.2f} MB)")
    dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="video side in pixels (tiny pipeline)")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--model", default=None, help="(internal) tiny pipeline folder")
    args = parser.parse_args(argv)
    if "RANK" in os.environ:
        return worker(args)

    import torch

    from tiny_pipeline import build_tiny_pipeline, load_tiny_pipeline, tiny_inputs

    torch.set_num_threads(1)  # as each torchrun rank (OMP_NUM_THREADS=1)
    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_pipeline(Path(folder) / "tiny")
        pipe = load_tiny_pipeline(model)
        image, positive, negative = tiny_inputs(args.frames, (args.size, args.size))
        alone = best(lambda: conditioning(pipe, image, positive, negative, args.size, args.frames), args.repeats)
        print(f"Conditioning stage of one window, tiny pipeline, {args.size}x{args.size}, {args.frames} frames "
              f"(best of {args.repeats}):")
        print(f"  {'alone (1 process)':28} {1000 * alone:8.1f} ms")
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29613",
                   __file__, "--model", str(model), "--repeats", str(args.repeats), "--size", str(args.size),
                   "--frames", str(args.frames)]
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
    print("\nWhat sharing would send per window at the real size (480p, 81 frames):")
    total = 0
    for name, size in real_scale_bytes().items():
        total += size
        print(f"  {name:58} {size / 1e6:8.1f} MB")
    print(f"  {'total':58} {total / 1e6:8.1f} MB")


if __name__ == "__main__":
    main()
