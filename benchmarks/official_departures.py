"""How far each former departure from the official path lands from the official goldens.

    python benchmarks/official_departures.py [FIXTURE_DIR] [--components-only]
    # default tests/fixtures/official_pipeline; --components-only skips the two end-to-end runs

Runs the product pipeline on the official-pipeline fixture (tiny official checkpoint, float32, CPU,
the official noise injected) with its defaults (the official path) and with the documented option
``resize_antialias=True`` (the product's former behaviour: reference and pose frames resized
straight to the video size, antialiased when shrinking), and measures the other former departures
one component at a time: CLIP input taken from the reference already resized to the video size,
the decode, prompt cleaning without ftfy, uint8 -> [-1, 1] as x / 127.5 - 1.
Prints the max abs difference to the golden tensor for each.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from steadydancer.constants import size_for_area  # noqa: E402
from tests.test_official_pipeline import load_product_pipeline, read_inputs, run_product  # noqa: E402


def diff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def main(folder: Path, full_runs: bool = True) -> None:
    torch.set_num_threads(2)
    expected = load_file(folder / "expected.safetensors")
    spec = json.loads((folder / "generate.json").read_text())
    names = ("ref_x", "y", "ref_c", "condition", "condition_null", "clip_fea_x", "clip_fea_c",
             "latent_after_last_step", "video")
    if full_runs:
        default = run_product(folder)
        antialias = run_product(folder, resize_antialias=True)
        print(f"{'tensor':24s} {'default (official)':>19s} {'resize_antialias':>17s}")
        for name in names:
            print(f"{name:24s} {diff(default[name], expected[name]):19.3g} "
                  f"{diff(antialias[name], expected[name]):17.3g}")

    pipe = load_product_pipeline(folder, spec)
    inputs = read_inputs(folder, spec)
    with torch.no_grad():
        ref = torch.from_numpy(np.array(inputs["image"])).permute(2, 0, 1).float()
        official = ref.div(255).sub(0.5).div(0.5)
        former = ref.div(127.5).sub(1)
        print("uint8 -> [-1, 1] as x/127.5 - 1, max abs difference of the pixels:", f"{diff(former, official):.3g}")
        width, height = size_for_area(ref.shape[2], ref.shape[1], spec["generate_kwargs"]["max_area"])
        resized = F.interpolate(official[None], size=(height, width), mode="bicubic", align_corners=False,
                                antialias=True)[0]
        clip = pipe.encode_image(resized[None], torch.device("cpu"))
        print("CLIP input from the reference resized to the video size first (antialiased), clip_fea_x:",
              f"{diff(clip, expected['clip_fea_x']):.3g}")
        decoded = pipe.decode_latents(expected["latent_after_last_step"][None])[0]
        print("decode (diffusers' AutoencoderKLWan clamps to [-1, 1] itself), video:",
              f"{diff(decoded, expected['video']):.3g}")
        prompt = inputs["prompt"]
        no_ftfy = re.sub(r"\s+", " ", html.unescape(html.unescape(prompt)).strip()).strip()
        ids = pipe.tokenizer(no_ftfy).input_ids
        tokens = json.loads((folder / "tokens.json").read_text())["prompt_ids"]
        changed = sum(a != b for a, b in zip(ids, tokens)) + abs(len(ids) - len(tokens))
        ids_t = torch.tensor([ids])
        context = pipe.text_encoder(ids_t, torch.ones_like(ids_t)).last_hidden_state[0]
        detail = f"{diff(context, expected['context']):.3g}" if len(ids) == len(tokens) else "shape differs"
        print(f"prompt cleaned without ftfy: {changed} token id(s) differ; context max abs difference {detail}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(Path(args[0]) if args else ROOT / "tests" / "fixtures" / "official_pipeline",
         full_runs="--components-only" not in sys.argv)
