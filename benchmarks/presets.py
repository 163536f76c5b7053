"""Transformer passes per clip for each preset, counted on a real run (tiny pipeline, CPU).

    python benchmarks/presets.py                      # 81 and 161 frames, every preset
    python benchmarks/presets.py --frames 81 --presets quality fast

Each preset is applied to the tiny test pipeline exactly as on a GPU (dtype, fp8 storage, group
offloading with the CPU as onload device, LoRA fused -- the fast preset gets a tiny LoRA in the
official key format), then a clip is generated with the preset's sampling settings while every
transformer call is recorded. Printed per preset: steps, windows, transformer calls, passes (=
samples through the transformer), the batch sizes seen, the count the cost model predicts, the
wall time here (tiny model, meaningless for speed) and the estimated H200 seconds of the real model
at 480p.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def write_tiny_lora(path: str, dim: int = 24, rank: int = 4) -> None:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for block in range(2):
        for module in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.o"):
            key = f"diffusion_model.blocks.{block}.{module}"
            tensors[f"{key}.lora_down.weight"] = torch.randn(rank, dim, generator=g) * 0.1
            tensors[f"{key}.lora_up.weight"] = torch.randn(dim, rank, generator=g) * 0.1
            tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, path)


def run_preset(preset: str, frames: int, model_path) -> dict:
    from steadydancer.costs import estimate_gpu_seconds
    from steadydancer.generation import generate_video, load_pipeline
    from steadydancer.plan import count_transformer_passes, plan_windows
    from steadydancer.settings import SamplingSettings
    from tests.tiny_pipeline import tiny_inputs

    pipe = load_pipeline(model_path, preset=preset, device="cpu", offline=True)
    pipe.set_progress_bar_config(disable=True)
    batches: list[int] = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: batches.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    image, positive, negative = tiny_inputs(frames)
    start = time.perf_counter()
    generate_video(pipe, image, positive, negative, prompt="a person dancing", max_area=32 * 32, seed=0)
    wall = time.perf_counter() - start
    handle.remove()
    s = SamplingSettings.resolve(preset)
    windows = plan_windows(frames)
    predicted = len(windows) * count_transformer_passes(
        s.num_inference_steps, s.guidance_scale, s.condition_guidance_scale, s.condition_window
    )
    return {
        "steps": s.num_inference_steps,
        "windows": len(windows),
        "calls": len(batches),
        "passes": sum(batches),
        "batches": dict(sorted(Counter(batches).items())),
        "predicted": predicted,
        "wall": wall,
        "h200_480p": estimate_gpu_seconds(frames, None, 480, 832, preset=preset),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[81, 161])
    parser.add_argument("--presets", nargs="+", default=["quality", "balanced", "low_vram", "fast"])
    args = parser.parse_args(argv)

    from tests.tiny_pipeline import shared_tiny_pipeline_path

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        lora = os.path.join(folder, "tiny_distill_lora.safetensors")
        write_tiny_lora(lora)
        os.environ["STEADYDANCER_FAST_LORA"] = lora
        model_path = shared_tiny_pipeline_path()
        print(f"{'preset':9} {'frames':>6} {'steps':>5} {'windows':>7} {'calls':>5} {'passes':>6} "
              f"{'predicted':>9}  {'batch sizes (count)':24} {'tiny CPU s':>10} {'est. H200 s @480p':>18}")
        for frames in args.frames:
            for preset in args.presets:
                r = run_preset(preset, frames, model_path)
                batches = ", ".join(f"{b}x{n}" for b, n in r["batches"].items())
                print(f"{preset:9} {frames:6d} {r['steps']:5d} {r['windows']:7d} {r['calls']:5d} {r['passes']:6d} "
                      f"{r['predicted']:9d}  {batches:24} {r['wall']:10.2f} {r['h200_480p']:18.0f}")


if __name__ == "__main__":
    main()
