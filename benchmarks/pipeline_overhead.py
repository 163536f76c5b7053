"""CPU overhead of SteadyDancerPipeline around its model calls (goal: wall time <= 1.15 x the sum of
the model calls).

    python benchmarks/pipeline_overhead.py                    # tiny and small configurations
    python benchmarks/pipeline_overhead.py --config small --repeats 5 --steps 20

Every model entry point is timed (transformer forward, VAE encode / decode, UMT5 and CLIP
forwards; nested calls are not double-counted because only the top-level entry points are wrapped).
"Overhead" is everything else: input conversion and resizing, CLIP preprocessing, building the
conditioning, the scheduler steps, guidance arithmetic, colour matching / cross-fades, output
conversion, progress bar. Reported: the best of ``--repeats`` runs (after one warm-up) of
``wall / sum(model calls)``, and where the rest went.

Configurations (random weights, CPU, float32):
* ``tiny``  -- the test pipeline (tests/tiny_pipeline.py): 32 x 32 px, 9 frames;
* ``small`` -- 64 x 64 px, 17 frames, transformer dim 128 (4 heads) x 4 blocks, VAE base 16.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def small_components():
    from diffusers import AutoencoderKLWan

    from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel
    from tests.tiny_pipeline import build_tiny_components

    components = build_tiny_components()
    torch.manual_seed(1)
    components["vae"] = AutoencoderKLWan(
        base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    components["transformer"] = SteadyDancerTransformer3DModel(
        num_attention_heads=4, attention_head_dim=32, text_dim=16, text_len=16, freq_dim=64, ffn_dim=384,
        num_layers=4, image_dim=1280,
    ).eval()
    return components


CONFIGS = {
    "tiny": {"size": 32, "frames": 9},
    "small": {"size": 64, "frames": 17},
}


class ModelTimer:
    """Wraps the pipeline's model entry points and sums their wall time."""

    ENTRY_POINTS = [
        ("transformer", "forward"),
        ("vae", "encode"),
        ("vae", "decode"),
        ("text_encoder", "forward"),
        ("image_encoder", "forward"),
    ]

    def __init__(self, pipe):
        self.pipe = pipe
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self._originals = []

    def __enter__(self):
        for component, method in self.ENTRY_POINTS:
            module = getattr(self.pipe, component)
            original = getattr(module, method)
            name = f"{component}.{method}"

            def timed(*args, _original=original, _name=name, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds[_name] += time.perf_counter() - start
                    self.calls[_name] += 1

            setattr(module, method, timed)
            self._originals.append((module, method))
        return self

    def __exit__(self, *exc):
        for module, method in self._originals:
            delattr(module, method)  # back to the class attribute

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def measure(config: str, steps: int, repeats: int) -> dict:
    from steadydancer.pipeline import SteadyDancerPipeline
    from tests.tiny_pipeline import build_tiny_components, tiny_inputs

    spec = CONFIGS[config]
    components = build_tiny_components() if config == "tiny" else small_components()
    with tempfile.TemporaryDirectory() as folder:
        SteadyDancerPipeline(**components).save_pretrained(folder)
        pipe = SteadyDancerPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image, positive, negative = tiny_inputs(spec["frames"], (spec["size"], spec["size"]))

    def run():
        return pipe(image, positive, negative, prompt="a person dancing", num_inference_steps=steps,
                    max_area=spec["size"] ** 2, generator=torch.Generator().manual_seed(0))

    run()  # warm-up
    best = None
    for _ in range(repeats):
        with ModelTimer(pipe) as timer:
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
        result = {"wall": wall, "models": timer.total, "by_model": dict(timer.seconds), "calls": dict(timer.calls)}
        if best is None or wall / timer.total < best["wall"] / best["models"]:
            best = result
    best.update(config=config, steps=steps, frames=spec["frames"], size=spec["size"])
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = least timing noise)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    configs = list(CONFIGS) if args.config == "all" else [args.config]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps, best of {args.repeats}\n")
    print(f"{'config':7} {'px':>4} {'frames':>6} {'wall s':>8} {'models s':>9} {'overhead s':>10} {'ratio':>6}  "
          "model time by entry point (calls)")
    for config in configs:
        r = measure(config, args.steps, args.repeats)
        parts = ", ".join(f"{k} {v:.3f}s ({r['calls'][k]})" for k, v in sorted(r["by_model"].items()))
        print(f"{config:7} {r['size']:>4} {r['frames']:>6} {r['wall']:8.3f} {r['models']:9.3f} "
              f"{r['wall'] - r['models']:10.3f} {r['wall'] / r['models']:6.3f}  {parts}")
    print("\nratio = wall / sum of model calls (goal <= 1.15)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
