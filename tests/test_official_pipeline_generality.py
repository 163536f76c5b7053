"""The end-to-end parity test must run on *any* official-pipeline fixture set
(``STEADYDANCER_PIPELINE_FIXTURE``: other seeds, sizes, frame counts, step counts, guidance windows
and scales, all read from ``generate.json``), skip by name the intermediates a set lacks, and FAIL
when a golden tensor is off.

This derives such sets from the shipped one (same tiny official checkpoint and input frames, other
arguments; their goldens come from the product itself, so they check the harness's generality,
not exactness -- the shipped official set does that) and runs ``tests/test_official_pipeline.py``
on them in a subprocess: the first must pass completely; a copy with one golden tensor and one
token id off, and three intermediates removed, must fail on exactly those two and skip the three.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from steadydancer.constants import latent_frame_count, size_for_area
from tests.test_official_pipeline import TENSORS, run_product

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "tests" / "fixtures" / "official_pipeline"

#: Other arguments than the shipped set's: seed, size, frames, steps, shift, guidance and window.
OTHER = {"frame_num": 13, "max_area": 2048, "sampling_steps": 5, "shift": 3.0, "guide_scale": 3.5,
         "condition_guide_scale": 1.2, "seed": 7}
OTHER_WINDOW = {"st_cond_cfg": 0.15, "end_cond_cfg": 0.7}


def derive_set(out: Path) -> dict:
    """A fixture folder of the official layout with other arguments; goldens from the product."""
    shutil.copytree(SHIPPED / "ckpt", out / "ckpt")
    (out / "inputs" / "pose").mkdir(parents=True)
    (out / "inputs" / "pose_neg").mkdir()
    for name in ("ref.png", "prompt.txt", "negative_prompt.txt"):
        shutil.copy(SHIPPED / "inputs" / name, out / "inputs" / name)
    for sub in ("pose", "pose_neg"):
        for i in range(OTHER["frame_num"]):
            shutil.copy(SHIPPED / "inputs" / sub / f"{i:04d}.png", out / "inputs" / sub / f"{i:04d}.png")
    for name in ("tokens.json", "noise_floor.json"):
        shutil.copy(SHIPPED / name, out / name)

    spec = json.loads((SHIPPED / "generate.json").read_text())
    spec["generate_kwargs"].update(OTHER)
    spec["init_kwargs"].update(OTHER_WINDOW)
    width, height = size_for_area(*spec["inputs"]["ref_png_size_wh"], OTHER["max_area"])
    shape = (16, latent_frame_count(OTHER["frame_num"]), height // 8, width // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(OTHER["seed"]))
    spec["derived"] = {}
    (out / "generate.json").write_text(json.dumps(spec, indent=1))
    save_file({"noise": noise}, out / "expected.safetensors")

    produced = run_product(out)
    golden = {name: produced[name].float().clone().contiguous() for name in TENSORS if name in produced}
    save_file(golden, out / "expected.safetensors")
    spec["derived"] = {
        "timesteps": produced["timesteps"],
        "model_calls_per_step": produced["model_calls_per_step"],
        "three_pass_steps": [i for i, n in enumerate(produced["model_calls_per_step"]) if n == 3],
        "pixel_hw": [height, width],
        "latent_shape": list(shape),
    }
    (out / "generate.json").write_text(json.dumps(spec, indent=1))
    return spec


def run_parity_tests(folder: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, STEADYDANCER_PIPELINE_FIXTURE=str(folder))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "reference", "-q", "-rfs", "-p", "no:cacheprovider",
         "tests/test_official_pipeline.py"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow
def test_parity_test_runs_on_other_sets_and_fails_when_a_tensor_is_off(tmp_path):
    other = tmp_path / "other"
    spec = derive_set(other)
    # The derived set really differs from the shipped one where it matters.
    shipped = json.loads((SHIPPED / "generate.json").read_text())
    assert spec["derived"]["timesteps"] != shipped["derived"]["timesteps"]
    assert spec["derived"]["three_pass_steps"] == [1, 2, 3]  # 0.15 < i/5 < 0.7 (shipped: 0.1 < i/8 < 0.4)
    assert spec["derived"]["pixel_hw"] != shipped["derived"]["pixel_hw"]

    # 1. A complete set of other arguments: everything passes, nothing is skipped.
    proc = run_parity_tests(other)
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "failed" not in summary and "skipped" not in summary and " passed" in summary

    # 2. One golden tensor and one token id off, three intermediates missing.
    broken = tmp_path / "broken"
    shutil.copytree(other, broken)
    golden = load_file(broken / "expected.safetensors")
    tolerances = json.loads((broken / "noise_floor.json").read_text())["per_tensor"]
    golden["ref_c"] = golden["ref_c"].clone()
    golden["ref_c"].view(-1)[17] += 3 * tolerances["ref_c"]["suggested_atol"]  # a few tolerances, one value
    for name in ("pred_cond_step1", "clip_input_x_crop", "vae_input_pose_neg_first"):
        del golden[name]
    save_file(golden, broken / "expected.safetensors")
    tokens = json.loads((broken / "tokens.json").read_text())
    tokens["negative_prompt_ids"][3] += 1
    (broken / "tokens.json").write_text(json.dumps(tokens))

    proc = run_parity_tests(broken)
    assert proc.returncode != 0
    failed = sorted(re.findall(r"^FAILED \S+::(\S+)", proc.stdout, flags=re.M))
    assert failed == ["test_intermediate_matches_official[ref_c]", "test_token_ids_exact"], proc.stdout[-3000:]
    for missing in ("pred_cond_step1", "clip_input_x_crop", "vae_input_pose_neg_first"):
        assert f"{missing} not in this fixture set" in proc.stdout
