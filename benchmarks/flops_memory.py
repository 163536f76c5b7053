"""Analytic FLOP and memory model of the real SteadyDancer-14B at 480p and 720p (81 frames).

    python benchmarks/flops_memory.py                 # tables from the cost model (instant)
    python benchmarks/flops_memory.py --check         # + check the model against torch's counters
    python benchmarks/flops_memory.py --measure-vae   # + re-measure the VAE FLOPs per pixel (~1 min)
    python benchmarks/flops_memory.py --parallel      # + one video on N = 1, 2, 4, 8 GPUs (estimates)

The model is ``steadydancer.generation`` (tokens, FLOPs per pass by part, weight bytes per
precision, peak activations, GPU-time estimate). ``--check`` builds the real 14B class on the meta
device (parameter count) and runs the tiny configuration under ``torch.utils.flop_counter`` with
explicit-matmul attention (FLOPs of every matmul / convolution), and compares both with the
formulas. ``--measure-vae`` counts the Wan2.1 VAE's FLOPs on 64 x 64 clips of 5 and 9 frames (real
configuration, random weights) and prints the per-pixel-frame slope used by the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steadydancer.costs import (  # noqa: E402
    FIXED_SECONDS,
    NVLINK_GBPS,
    PCIE_GBPS,
    context_parallel_pass,
    H200_TRANSFORMER_TFLOPS,
    H200_VAE_TFLOPS,
    activation_bytes,
    estimate_gpu_seconds,
    transformer_param_count,
    transformer_pass_flops,
    vae_flops,
    weights_bytes,
)
from steadydancer.memory_model import gpu_peak_bytes  # noqa: E402
from steadydancer.plan import count_transformer_passes  # noqa: E402
from steadydancer.settings import SamplingSettings  # noqa: E402

RESOLUTIONS = {"480p": (480, 832), "576p (official 1024*576)": (576, 1024), "720p": (720, 1280)}
PRESETS = ("quality", "balanced", "low_vram", "fast")
GB = 1e9


def passes_per_clip(preset: str) -> int:
    s = SamplingSettings.resolve(preset)
    return count_transformer_passes(s.num_inference_steps, s.guidance_scale, s.condition_guidance_scale,
                                    s.condition_window)


def print_tables() -> None:
    print("SteadyDancer-14B (Wan2.1-I2V-14B + pose modules), 81 frames -> 21 latent frames + 2 reference frames\n")
    print(f"transformer parameters: {transformer_param_count() / 1e9:.3f} B (+0.11 M pose modules)")
    print("\nWeights (GB)            fp32     bf16      fp8")
    for name, sizes in weights_bytes().items():
        cells = "  ".join(f"{sizes[k] / GB:7.2f}" if k in sizes else "      -" for k in ("fp32", "bf16", "fp8"))
        print(f"  {name:20} {cells}")

    print("\nPer transformer pass (batch 1)")
    header = f"  {'resolution':26} {'tokens':>7} {'TFLOP':>8} {'attn %':>7} {'act GB/sample':>14}"
    print(header)
    for label, (h, w) in RESOLUTIONS.items():
        f = transformer_pass_flops(81, h, w)
        attn = f["self_attention_scores"] / f["total"] * 100
        print(f"  {label:26} {f['tokens']:7d} {f['total'] / 1e12:8.1f} {attn:7.1f} "
              f"{activation_bytes(81, h, w) / GB:14.2f}")
    f = transformer_pass_flops(81, 720, 1280)
    print("  720p by part (TFLOP): " + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in f.items()
                                                 if k not in ("total", "tokens")))

    print("\nPer clip of 81 frames, by preset")
    print(f"  {'preset':9} {'steps':>5} {'passes':>6}  " + "  ".join(
        f"{label.split()[0] + ' PFLOP':>11} {'GPU GB':>6} {'est. s':>7}" for label in RESOLUTIONS))
    for preset in PRESETS:
        s = SamplingSettings.resolve(preset)
        cells = []
        for h, w in RESOLUTIONS.values():
            total = passes_per_clip(preset) * transformer_pass_flops(81, h, w)["total"] + vae_flops(81, h, w)
            cells.append(f"{total / 1e15:11.1f} {gpu_peak_bytes(preset, 81, h, w) / GB:6.1f} "
                         f"{estimate_gpu_seconds(81, None, h, w, preset=preset):7.0f}")
        print(f"  {preset:9} {s.num_inference_steps:5d} {passes_per_clip(preset):6d}  " + "  ".join(cells))
    print(f"\n  GPU GB = transformer weights on the GPU + activations of the widest call (3 batched passes in the\n"
          f"  condition window; low_vram: ~2 blocks resident, one pass at a time). Text encoder / CLIP / VAE are\n"
          f"  offloaded while denoising (model offload). est. s = estimate_gpu_seconds: transformer at\n"
          f"  {H200_TRANSFORMER_TFLOPS:.0f} TFLOP/s, VAE at {H200_VAE_TFLOPS:.0f} TFLOP/s (assumed H200 sustained), "
          f"+{FIXED_SECONDS:.0f} s fixed.")


def print_parallel_tables() -> None:
    """One 81-frame video on N GPUs (context parallelism, quality preset): per-GPU memory and time, and
    the bytes each GPU sends per transformer pass -- all estimates of the cost model."""
    layouts = [("1 GPU", (1, 1)), ("Ulysses 2", (1, 2)), ("Ulysses 4", (1, 4)), ("Ulysses 8", (1, 8)),
               ("ring 2", (2, 1)), ("ring 4", (4, 1)), ("ring 8", (8, 1)), ("2x4", (2, 4))]
    weights = weights_bytes()["transformer"]
    print("\nOne video on N GPUs (--parallel), 81 frames, quality preset -- ESTIMATES of the cost model")
    for label, (h, w) in RESOLUTIONS.items():
        print(f"\n  {label}: {transformer_pass_flops(81, h, w)['tokens']} tokens per pass")
        print(f"  {'layout':10} {'tokens/GPU':>10} {'GB sent/GPU/pass':>17} {'GPU GB (bf16 / fp8)':>20} "
              f"{'est. s NVLink':>13} {'est. s PCIe':>11} {'speed-up':>8}")
        single = estimate_gpu_seconds(81, None, h, w, preset="quality")
        for name, (ring, ulysses) in layouts:
            split = context_parallel_pass(81, h, w, ring, ulysses)
            activations = 3 * split["activation_bytes"]  # widest call: 3 passes batched
            nvlink = estimate_gpu_seconds(81, None, h, w, preset="quality", context_parallel=(ring, ulysses))
            pcie = estimate_gpu_seconds(81, None, h, w, preset="quality", context_parallel=(ring, ulysses),
                                        interconnect_gbps=PCIE_GBPS)
            print(f"  {name:10} {split['tokens']:10.0f} {split['comm_bytes'] / GB:17.2f} "
                  f"{(weights['bf16'] + activations) / GB:9.1f} / {(weights['fp8'] + activations) / GB:5.1f}    "
                  f"{nvlink:13.0f} {pcie:11.0f} {single / nvlink:7.2f}x")
    print(f"\n  Every GPU holds the whole transformer (context parallelism splits the tokens, not the weights);\n"
          f"  activations are the widest call's (3 passes batched) share. Time: transformer FLOPs per GPU at\n"
          f"  {H200_TRANSFORMER_TFLOPS:.0f} TFLOP/s + the collectives at {NVLINK_GBPS:.0f} GB/s (NVLink) or "
          f"{PCIE_GBPS:.0f} GB/s (PCIe), not overlapped;\n"
          f"  the VAE ({H200_VAE_TFLOPS:.0f} TFLOP/s) and the fixed {FIXED_SECONDS:.0f} s are not split.")


def check() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from steadydancer.costs import TransformerShape
    from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel
    from tests.tiny_pipeline import build_tiny_components, tiny_transformer_inputs

    with torch.device("meta"):
        model = SteadyDancerTransformer3DModel()
    pose = ("condition_embedding_temporal", "condition_embedding_spatial", "condition_embedding_align")
    counted = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(pose))
    print(f"\ncheck: parameters (meta device, without pose modules) {counted:,} vs formula "
          f"{transformer_param_count():,}")

    tiny = build_tiny_components()["transformer"]
    tiny.set_attention_backend("_native_math")
    f, h, w = 3, 4, 4
    inputs = tiny_transformer_inputs(f, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        tiny(**inputs)
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    pose_flops = sum(counts[f"SteadyDancerTransformer3DModel.{p}"] for p in pose)
    formula = transformer_pass_flops(9, 32, 32, TransformerShape.from_config(tiny.config, 17))["total"]
    print(f"check: tiny forward FLOPs (torch counter, without pose modules) {counter.get_total_flops() - pose_flops:,}"
          f" vs formula {formula:,}")


def measure_vae() -> None:
    import torch
    from diffusers import AutoencoderKLWan
    from torch.utils.flop_counter import FlopCounterMode

    vae = AutoencoderKLWan().eval()
    results = {}
    for frames in (5, 9):
        x = torch.zeros(1, 3, frames, 64, 64)
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                z = vae.encode(x).latent_dist.mode()
            encode = counter.get_total_flops()
            with FlopCounterMode(display=False) as counter:
                vae.decode(z)
            decode = counter.get_total_flops()
        results[frames] = (encode, decode)
    pixels = 4 * 64 * 64
    print(f"\nVAE FLOPs per pixel-frame (slope 5 -> 9 frames): encode {(results[9][0] - results[5][0]) / pixels:.3e}, "
          f"decode {(results[9][1] - results[5][1]) / pixels:.3e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--measure-vae", action="store_true")
    parser.add_argument("--parallel", action="store_true")
    args = parser.parse_args(argv)
    print_tables()
    if args.parallel:
        print_parallel_tables()
    if args.check:
        check()
    if args.measure_vae:
        measure_vae()


if __name__ == "__main__":
    main()
