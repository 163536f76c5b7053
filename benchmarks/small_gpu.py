"""Which weights and preset fit a machine: GPU and RAM peaks per preset and per GGUF file (480p, 81 frames).

    python benchmarks/small_gpu.py             # tables from steadydancer.memory_model (instant)
    python benchmarks/small_gpu.py --measure   # + the small_gpu code path on the CPU at tiny size

The tables are computed (steadydancer.memory_model: file sizes from the 14B parameter count and each
type's bits per weight; peaks from the weights as loaded and the activations of one call).
``--measure`` runs the real small_gpu path -- a GGUF file in the community layout, the tiny
pipeline's encoders, leaf-level group offloading of every model, passes one by one -- on the CPU in
a fresh process, samples its RAM (anonymous and file-backed pages) every 5 ms, and compares it
with the same model's prediction at that size: the GGUF file is memory-mapped (file-backed pages,
no copy) and the packed weights stay packed while offloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rss import sample_rss  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steadydancer.memory_model import (  # noqa: E402
    GGUF_TYPES,
    GPU_RESERVE,
    RUNTIME_RAM_BYTES,
    SYSTEM_RAM_RESERVE,
    cpu_peak_bytes,
    gguf_file_bytes,
    gpu_peak_bytes,
    recommend,
)

GB = 1e9
MACHINES = [(8, 32), (12, 16), (12, 32), (12, 64), (16, 32), (16, 64), (24, 32), (24, 64), (48, 64), (80, 128)]


def print_tables(frames: int = 81, height: int = 480, width: int = 832) -> None:
    print(f"SteadyDancer-14B at {width}x{height}, {frames} frames (computed)\n")
    print("GGUF transformer files (uniform type; 2-D matrices quantized, the rest F32):")
    for t in GGUF_TYPES:
        print(f"  {t:5} {gguf_file_bytes(t) / GB:6.1f} GB")
    print("\nPeaks while generating             GPU GB   RAM GB")
    for preset in ("quality", "balanced", "low_vram", "fast"):
        print(f"  {preset + ' (bf16 weights)':32} {gpu_peak_bytes(preset, frames, height, width) / GB:6.1f}"
              f"   {cpu_peak_bytes(preset, frames, height, width) / GB:6.1f}")
    for t in GGUF_TYPES:
        for preset in ("quality", "small_gpu"):
            print(f"  {preset + ' + ' + t + ' GGUF':32} {gpu_peak_bytes(preset, frames, height, width, t) / GB:6.1f}"
                  f"   {cpu_peak_bytes(preset, frames, height, width, t) / GB:6.1f}")
    print(f"\nYour GPU / RAM -> weights and preset (fits GPU - {GPU_RESERVE / GB:.0f} GB, RAM - "
          f"{SYSTEM_RAM_RESERVE / GB:.0f} GB for the system; runtime {RUNTIME_RAM_BYTES / GB:.0f} GB included)")
    for gpu, ram in MACHINES:
        choice = recommend(gpu * GB, ram * GB, frames, height, width)
        if choice is None:
            print(f"  {gpu:3} GB / {ram:3} GB  -> nothing fits")
            continue
        size = f"{gguf_file_bytes(choice.gguf_type) / GB:.1f} GB" if choice.gguf_type else "65 GB fp32 shards"
        print(f"  {gpu:3} GB / {ram:3} GB  -> {choice.file:22} ({size:>17}) {choice.preset:10} "
              f"GPU {choice.gpu_bytes / GB:5.1f}  RAM {choice.cpu_bytes / GB:5.1f}")


# ----------------------------------------------------------------------------------- measurement
_sample = sample_rss  # (benchmarks/rss.py)


def _status() -> dict:
    with open("/proc/self/status") as status:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status
                if line.startswith(("RssAnon:", "RssFile:"))}


def _child(path: str, encoders: str) -> None:
    import numpy as np
    import torch

    from steadydancer.generation import load_pipeline
    from tests.tiny_pipeline import tiny_inputs

    torch.set_num_threads(2)
    # Import everything loading will need first, so the baseline holds the libraries, not the weights.
    import diffusers.quantizers.gguf.utils  # noqa: F401
    import transformers.models.clip.modeling_clip  # noqa: F401
    import transformers.models.umt5.modeling_umt5  # noqa: F401
    from diffusers import AutoencoderKLWan, GGUFQuantizationConfig  # noqa: F401

    import steadydancer.models.gguf  # noqa: F401
    import steadydancer.pipeline  # noqa: F401

    baseline = _status()
    peaks: dict = {}
    stop = threading.Event()
    thread = threading.Thread(target=_sample, args=(stop, peaks), daemon=True)
    thread.start()
    start = time.perf_counter()
    pipe = load_pipeline(path, preset="small_gpu", device="cpu", offline=True, encoders=encoders)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - start
    after_load = dict(peaks)
    image, positive, negative = tiny_inputs(9, (64, 64))
    start = time.perf_counter()
    frames = pipe(image, positive, negative, prompt="a person dancing", max_area=64 * 64, num_inference_steps=3,
                  generator=torch.Generator().manual_seed(0)).frames
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    transformer = sum(p.numel() * p.element_size() for p in pipe.transformer.parameters())
    others = sum(p.numel() * p.element_size() for name in ("text_encoder", "image_encoder", "vae")
                 for p in getattr(pipe, name).parameters())
    print(json.dumps({"baseline": baseline, "after_load": after_load, "peaks": peaks, "load_s": loaded,
                      "run_s": seconds, "transformer_bytes": transformer, "other_bytes": others,
                      "finite": bool(np.isfinite(frames).all())}))


def measure() -> None:
    from tests.gguf_files import write_community_gguf
    from tests.tiny_pipeline import build_tiny_components, shared_tiny_pipeline_path

    from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel

    encoders = str(shared_tiny_pipeline_path())
    tiny = build_tiny_components()["transformer"]
    config = {k: v for k, v in tiny.config.items() if not k.startswith("_")}
    # A mid-size transformer with the tiny encoders' widths: ~0.9 B values, so weights dominate the RAM.
    config.update(num_attention_heads=16, attention_head_dim=128, ffn_dim=8192, num_layers=6)
    model = SteadyDancerTransformer3DModel(**config)
    values = sum(p.numel() for p in model.parameters())
    print(f"\nsmall_gpu path on the CPU: a {values / 1e9:.2f} B-value transformer as GGUF + the tiny encoders, "
          "9 frames at 64x64, 3 steps")
    with tempfile.TemporaryDirectory() as tmp:
        for qtype in ("Q8_0", "Q4_0"):
            path = os.path.join(tmp, f"mid-{qtype}.gguf")
            write_community_gguf(model, path, qtype)
            size = os.path.getsize(path)
            out = subprocess.run([sys.executable, __file__, "--_child", path, encoders], capture_output=True,
                                 text=True, check=True)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            anon = data["peaks"]["RssAnon"] - data["baseline"]["RssAnon"]
            anon_load = data["after_load"].get("RssAnon", 0) - data["baseline"]["RssAnon"]
            files = data["peaks"]["RssFile"] - data["baseline"]["RssFile"]
            # The memory model's prediction at this size: the file (memory-mapped) + the other models' weights.
            predicted = size + data["other_bytes"]
            print(f"  {qtype}: file {size / GB:.3f} GB, transformer in memory {data['transformer_bytes'] / GB:.3f} GB, "
                  f"encoders/VAE {data['other_bytes'] / GB:.3f} GB; RAM over the post-import baseline: anonymous "
                  f"{anon_load / GB:.3f} GB after load, {anon / GB:.3f} GB peak, file-backed pages "
                  f"+{files / GB:.3f} GB; total peak {(anon + files) / GB:.3f} GB = {(anon + files) / predicted:.2f} x "
                  f"the model's weights term ({predicted / GB:.3f} GB); load {data['load_s']:.1f} s, generate "
                  f"{data['run_s']:.1f} s, frames finite: {data['finite']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        _child(*args._child)
        return
    print_tables()
    if args.measure:
        measure()


if __name__ == "__main__":
    main()
