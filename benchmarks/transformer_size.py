"""Size of the SteadyDancer-14B transformer, counted on the meta device (nothing is allocated).

    python benchmarks/transformer_size.py                  # parameter counts and bytes per dtype
    python benchmarks/transformer_size.py --measure-load   # + peak RAM of a low-memory load (mid-size model)

Bytes are given for the load dtypes the pipeline uses: ``torch_dtype=bfloat16`` / ``float16`` keep
diffusers' ``_keep_in_fp32_modules`` (modulation tables, time embedder, affine norms) in float32;
``+ layerwise fp8`` is ``enable_layerwise_casting(storage_dtype=float8_e4m3fn)`` on top of bf16
(patch embeddings, pose modules, embedders and norms stay un-cast).

``--measure-load`` writes a mid-size model (same block layout, fewer/narrower layers) as an
official single file (bf16, then float32, then community-layout GGUF Q8_0 and Q4_0) to a temporary
folder, loads it with ``torch_dtype=bfloat16`` (GGUF: ``GGUFQuantizationConfig(compute_dtype=
bfloat16)``, linear weights kept packed) in a fresh process, reads every weight once (GGUF: each
packed weight dequantized on its own, as a forward pass does), and samples that process's
anonymous memory (``RssAnon``: tensors) and file-backed resident pages (``RssFile``: the safetensors
mmap, reclaimable page cache; a same-dtype load keeps the weights there without a copy) every 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rss import LoadRecording  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from steadydancer.models.loading import _target_dtype, official_state_dict  # noqa: E402
from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel  # noqa: E402

#: The released SteadyDancer-14B transformer (Wan2.1-I2V-14B sizes + in_dim_c 16), official names.
OFFICIAL_14B = {
    "model_type": "i2v", "patch_size": [1, 2, 2], "text_len": 512, "in_dim": 36, "in_dim_c": 16, "dim": 5120,
    "ffn_dim": 13824, "freq_dim": 256, "text_dim": 4096, "out_dim": 16, "num_heads": 40, "num_layers": 40,
    "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6,
}
GROUPS = {
    "transformer blocks": ("blocks.",),
    "pose modules (spatial/temporal/align)": ("condition_embedding_",),
    "patch embeddings (fuse, ref image, ref pose)": ("patch_embedding",),
    "time/text/CLIP embedders": ("condition_embedder.",),
    "output head": ("proj_out.", "scale_shift_table"),
}


def gib(n: int) -> str:
    return f"{n / 2**30:7.2f} GiB"


def dtype_bytes(model, torch_dtype: torch.dtype, layerwise_fp8: bool = False) -> Counter:
    """Bytes per dtype of ``model``'s parameters once loaded in ``torch_dtype`` (meta model in/out)."""
    keep = list(SteadyDancerTransformer3DModel._keep_in_fp32_modules)
    for name, param in list(model.named_parameters()):
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        module._parameters[leaf] = torch.nn.Parameter(
            torch.empty(param.shape, dtype=_target_dtype(name, param.dtype, torch_dtype, keep), device="meta"),
            requires_grad=False,
        )
    if layerwise_fp8:
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch_dtype)
    totals: Counter = Counter()
    for param in model.parameters():
        totals[param.dtype] += param.numel() * param.element_size()
    return totals


def build_meta(config: dict | None = None):
    with torch.device("meta"):
        return SteadyDancerTransformer3DModel(**(config or {}))


def report_14b() -> None:
    from steadydancer.models.loading import official_config_to_diffusers

    config = official_config_to_diffusers(OFFICIAL_14B)
    model = build_meta(config)
    counts = {name: p.numel() for name, p in model.named_parameters()}
    total = sum(counts.values())
    print("SteadyDancer-14B transformer (official config: dim 5120, ffn 13824, 40 heads x 128, 40 layers, "
          "in_dim 36, in_dim_c 16, text_dim 4096, text_len 512)")
    print(f"  tensors: {len(counts)}   parameters: {total:,} ({total / 1e9:.3f} B)")
    for group, prefixes in GROUPS.items():
        n = sum(v for k, v in counts.items() if k.startswith(prefixes))
        print(f"    {group:<46} {n:>15,}")
    extra = sum(v for k, v in counts.items()
                if k.startswith(("condition_embedding_", "patch_embedding_fuse.", "patch_embedding_ref_c.")))
    print(f"  added by SteadyDancer over Wan2.1-I2V-14B: {extra:,} parameters")
    print(f"  official state dict keys: {len(official_state_dict(model))}")

    print("\n  bytes of the parameters (RoPE table, 2 x 1024 x 128 float32 = 1 MiB, not included):")
    rows = [
        ("float32", torch.float32, False),
        ("torch_dtype=bfloat16", torch.bfloat16, False),
        ("torch_dtype=float16", torch.float16, False),
        ("bfloat16 + layerwise fp8 storage", torch.bfloat16, True),
    ]
    for label, dtype, fp8 in rows:
        totals = dtype_bytes(build_meta(config), dtype, fp8)
        detail = ", ".join(f"{str(d).replace('torch.', '')} {gib(b).strip()}" for d, b in sorted(totals.items(), key=str))
        print(f"    {label:<34} {gib(sum(totals.values()))}   ({detail})")


# ------------------------------------------------------------------------------- load measurement
MID_CONFIG = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=8, text_dim=4096)


def _child_load(path: str) -> None:
    # Runs in a fresh process: baseline after imports, then peak while loading and reading every weight.
    recording = LoadRecording()
    start = time.perf_counter()
    if path.endswith(".gguf"):
        from diffusers import GGUFQuantizationConfig
        from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

        model = SteadyDancerTransformer3DModel.from_single_file(
            path, quantization_config=GGUFQuantizationConfig(compute_dtype=torch.bfloat16),
            config=json.loads(os.environ["SD_CONFIG"]))
        seconds = time.perf_counter() - start
        with torch.no_grad():  # touch every weight, dequantizing one at a time as a forward pass does
            checksum = sum(float(dequantize_gguf_tensor(p).float().sum()) for p in model.parameters())
    else:
        model = SteadyDancerTransformer3DModel.from_single_file(path, torch_dtype=torch.bfloat16, config=json.loads(os.environ["SD_CONFIG"]))
        seconds = time.perf_counter() - start
        with torch.no_grad():  # touch every weight, as a forward pass would
            checksum = sum(float(p.float().sum()) for p in model.parameters())
    recording.report(model, seconds, checksum)


def measure_load() -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = SteadyDancerTransformer3DModel(**MID_CONFIG)
    config = json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")})
    largest = max(p.numel() for p in model.parameters())
    print(f"\nlow-memory load (torch_dtype=bfloat16) of a mid-size model {MID_CONFIG}, official names, one file;")
    print("RAM = peak over the post-import baseline, every weight read once after loading:")
    for file_dtype in (torch.bfloat16, torch.float32, "Q8_0", "Q4_0"):
        with tempfile.TemporaryDirectory() as tmp:
            if isinstance(file_dtype, str):  # a community-layout GGUF file
                from tests.gguf_files import write_community_gguf

                path = os.path.join(tmp, "mid.gguf")
                write_community_gguf(model, path, file_dtype)
            else:
                path = os.path.join(tmp, "mid.safetensors")
                weights = {f"model.diffusion_model.{k}": v.to(file_dtype).contiguous() for k, v in official_state_dict(model).items()}
                save_file(weights, path)
                del weights
            file_bytes = os.path.getsize(path)
            result = subprocess.run(
                [sys.executable, __file__, "--_child-load", path], capture_output=True, text=True, check=True,
                env={**os.environ, "SD_CONFIG": config},
            )
        data = json.loads(result.stdout.strip().splitlines()[-1])
        anon = data["peaks"]["RssAnon"] - data["baseline"]["RssAnon"]
        size = data["model_bytes"]
        name = file_dtype if isinstance(file_dtype, str) else str(file_dtype).replace("torch.", "")
        print(f"  {name:>8} file {gib(file_bytes).strip():>10}: model {gib(size).strip()}, "
              f"anonymous RAM {gib(anon).strip()} ({anon / size:.2f} x model), file-backed pages "
              f"{gib(data['peaks']['RssFile']).strip()} (mmap, page cache), load {data['seconds']:.1f} s")
    print(f"  (largest single tensor: {largest * 4 / 2**20:.0f} MiB in float32)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure-load", action="store_true", help="also measure the peak RAM of a load")
    parser.add_argument("--_child-load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child_load:
        _child_load(args._child_load)
        return
    report_14b()
    if args.measure_load:
        measure_load()


if __name__ == "__main__":
    main()
