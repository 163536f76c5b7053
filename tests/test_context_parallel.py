"""Context parallelism (one video on several GPUs) on the CPU: 2 processes, gloo, one torchrun launch.

The launch (``tests/cp_worker.py``) runs every multi-process check at once; the tests here compare
what each rank wrote with the same work done in this single process:

* the tiny transformer under Ulysses: identical to one process (max difference 0.0); under ring
  attention within 1e-6 (the partial softmaxes are merged in another order; measured 3.6e-7); under
  unified attention (2 x 2, a second launch of 4 processes) within the same 1e-6;
* the tiny pipeline end to end (two long-video windows, batched guidance passes): identical under
  Ulysses, within 1e-5 under ring (measured 1.5e-7 on frames in [0, 1]); with the balanced preset (fp8 weights) identical under Ulysses;
* ``python -m steadydancer generate --parallel ulysses`` under torchrun writes one video equal to
  the single-process one; rank 1 prints nothing; a user error found by rank 0 stops both ranks
  with status 2.

The CPU-only workarounds live in ``tests/cp_cpu.py`` (test processes only).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import EXAMPLES, REPO_ROOT
from cp_worker import BALANCED_CALL, PIPELINE_CALL, TRANSFORMER_INPUTS, cli_argv
from steadydancer import parallel
from steadydancer.errors import SteadyDancerInputError
from tiny_pipeline import build_tiny_components, load_tiny_pipeline, shared_tiny_pipeline_path, tiny_inputs, \
    tiny_transformer_inputs

MOTION = EXAMPLES / "dance_keyframes.poses.json"
IMAGE = EXAMPLES / "astronaut.png"
RING_TOLERANCE_TRANSFORMER = 1e-6
RING_TOLERANCE_PIPELINE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(processes: int, *args) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               str(REPO_ROOT / "tests" / "cp_worker.py"), *map(str, args)]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    """One ``torchrun --nproc_per_node 2`` launch of tests/cp_worker.py; returns its output folder."""
    out = tmp_path_factory.mktemp("cp")
    _torchrun(2, out, shared_tiny_pipeline_path(), IMAGE, MOTION)
    return out


@pytest.fixture
def one_thread():
    """The workers run with one thread each (torchrun's default); CPU matmuls round differently with
    another thread count, so the single-process references use one thread too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rank(launch, rank):
    return torch.load(launch / f"rank{rank}.pt", weights_only=False)


@pytest.mark.slow
def test_transformer_equals_one_process(launch, one_thread):
    inputs = tiny_transformer_inputs(**TRANSFORMER_INPUTS)
    with torch.no_grad():
        expected = build_tiny_components()["transformer"](**inputs, return_dict=False)[0]
    tokens = (TRANSFORMER_INPUTS["frames"] + 2) * (TRANSFORMER_INPUTS["height"] // 2) * (TRANSFORMER_INPUTS["width"] // 2)
    for rank in (0, 1):
        result = _rank(launch, rank)
        # The first block really saw half of the sequence on each rank.
        assert result["transformer_ulysses_tokens"] == [tokens // 2]
        assert result["transformer_ring_tokens"] == [tokens // 2]
        assert torch.equal(result["transformer_ulysses"], expected)  # Ulysses: exact
        ring_error = (result["transformer_ring"] - expected).abs().max().item()
        assert ring_error <= RING_TOLERANCE_TRANSFORMER, ring_error


@pytest.mark.slow
def test_unified_ring_x_ulysses_on_four_processes(tmp_path, one_thread):
    """2 ring groups x 2 Ulysses ranks (the tiny model has 2 heads): equal to one process within the
    ring tolerance, a quarter of the sequence on each rank."""
    _torchrun(4, "--unified", tmp_path)
    with torch.no_grad():
        expected = build_tiny_components()["transformer"](**tiny_transformer_inputs(**TRANSFORMER_INPUTS),
                                                          return_dict=False)[0]
    for rank in range(4):
        result = torch.load(tmp_path / f"unified_rank{rank}.pt", weights_only=False)
        assert result["transformer_unified_tokens"] == [5]  # 20 tokens / 4
        error = (result["transformer_unified"] - expected).abs().max().item()
        assert error <= RING_TOLERANCE_TRANSFORMER, error


@pytest.mark.slow
def test_cost_model_counts_the_bytes_each_gpu_sends(launch):
    """The cost model's communication volume per pass, for the tiny configuration, is what the two
    ranks actually sent (counted around diffusers' collectives; the model counts bf16 bytes)."""
    from steadydancer.costs import TransformerShape, context_parallel_pass

    config = build_tiny_components()["transformer"].config
    shape = TransformerShape.from_config(config, image_tokens=17)
    frames = 4 * (TRANSFORMER_INPUTS["frames"] - 1) + 1  # pixel frames of 3 latent frames
    height, width = 8 * TRANSFORMER_INPUTS["height"], 8 * TRANSFORMER_INPUTS["width"]
    for name, degrees in (("ulysses", (1, 2)), ("ring", (2, 1))):
        model = context_parallel_pass(frames, height, width, *degrees, shape=shape)
        assert model["tokens"] == 10
        expected_elements = model["comm_bytes"] / 2 * TRANSFORMER_INPUTS["batch"]
        for rank in (0, 1):
            assert _rank(launch, rank)[f"transformer_{name}_sent_elements"] == expected_elements, name


@pytest.mark.slow
def test_pipeline_equals_one_process(launch, one_thread):
    pipe = load_tiny_pipeline()
    reference, positive, negative = tiny_inputs(9)
    expected = pipe(reference, positive, negative, generator=torch.Generator().manual_seed(0), **PIPELINE_CALL).frames
    assert expected.shape == (1, 9, 32, 32, 3)
    rank0, rank1 = _rank(launch, 0), _rank(launch, 1)
    # Two windows of 5 frames: (2 latent frames + 2 reference frames) x 2 x 2 tokens, half per rank.
    assert rank0["pipeline_ulysses_tokens"] == [8]
    for result in (rank0, rank1):
        np.testing.assert_array_equal(result["pipeline_ulysses"], expected)
        ring_error = np.abs(result["pipeline_ring"] - expected).max()
        assert ring_error <= RING_TOLERANCE_PIPELINE, ring_error
    np.testing.assert_array_equal(rank0["pipeline_ring"], rank1["pipeline_ring"])  # every rank holds the same video


@pytest.mark.slow
def test_balanced_preset_combines_with_context_parallelism(launch, one_thread):
    """fp8 weight storage (diffusers' layerwise-casting hooks, on proj_out too) with the plan's hooks."""
    from steadydancer.generation import load_pipeline

    pipe = load_pipeline(shared_tiny_pipeline_path(), preset="balanced", device="cpu", offline=True)
    pipe.set_progress_bar_config(disable=True)
    reference, positive, negative = tiny_inputs(9)
    expected = pipe(reference, positive, negative, generator=torch.Generator().manual_seed(0), **BALANCED_CALL).frames
    for rank in (0, 1):
        np.testing.assert_array_equal(_rank(launch, rank)["balanced_ulysses"], expected)


@pytest.mark.slow
def test_generate_command_under_torchrun_writes_the_single_process_video(launch, tmp_path, one_thread):
    from steadydancer.cli import main
    from steadydancer.video import read_video

    single = tmp_path / "single.mp4"
    assert main(cli_argv(shared_tiny_pipeline_path(), IMAGE, MOTION, single)) == 0
    status = [json.loads((launch / f"cli_status_rank{r}.json").read_text()) for r in (0, 1)]
    assert status == [{"bad_image": 2, "generate": 0}] * 2
    assert sorted(p.name for p in launch.glob("*.mp4")) == ["parallel.mp4"]  # rank 0 wrote one video

    expected = read_video(single, fps=0).frames
    written = read_video(launch / "parallel.mp4", fps=0).frames
    assert written.shape == expected.shape == (9, 64, 64, 3)
    np.testing.assert_array_equal(written, expected)

    log0 = (launch / "cli_rank0.log").read_text()
    assert "Ulysses attention over 2 GPUs (2 processes)" in log0 and "Denoising: step 2/2" in log0
    assert "9 frames written" in log0
    assert (launch / "cli_rank1.log").read_text() == ""  # the other rank stays quiet
    error0 = (launch / "cli_error_rank0.log").read_text()
    assert "error: " in error0 and "Traceback" not in error0
    assert (launch / "cli_error_rank1.log").read_text() == ""


# ------------------------------------------------------------------------------ single-process parts


def test_parse_parallel():
    assert parallel.parse_parallel("ulysses", 4) == parallel.ParallelSpec(1, 4)
    assert parallel.parse_parallel("ring", 2) == parallel.ParallelSpec(2, 1)
    assert parallel.parse_parallel("2x4", 8) == parallel.ParallelSpec(2, 4)
    assert parallel.parse_parallel("2X2", 4).describe() == "ring 2 x Ulysses 2"
    for text, world, words in (("ulysses", 1, "at least 2 processes"), ("2x2", 8, "multiply to the number"),
                               ("fast", 2, "ulysses, ring or RxU"), ("1x1", 1, "at least 2")):
        with pytest.raises(SteadyDancerInputError, match=words):
            parallel.parse_parallel(text, world)


def test_ulysses_degree_must_divide_the_heads():
    parallel.check_heads(parallel.ParallelSpec(1, 8), 40)
    parallel.check_heads(parallel.ParallelSpec(3, 1), 40)  # ring splits no heads
    with pytest.raises(SteadyDancerInputError, match="40 attention heads"):
        parallel.check_heads(parallel.ParallelSpec(1, 3), 40)


def test_attention_backend_choice():
    ulysses, ring, unified = parallel.ParallelSpec(1, 2), parallel.ParallelSpec(2, 1), parallel.ParallelSpec(2, 2)
    assert parallel.attention_backend_for(ulysses, None) is None  # native SDPA
    assert parallel.attention_backend_for(ring, None) == parallel.RING_ATTENTION_BACKEND
    assert parallel.attention_backend_for(unified, "native") == parallel.RING_ATTENTION_BACKEND
    assert parallel.attention_backend_for(ring, "flash") == "flash"
    with pytest.raises(SteadyDancerInputError, match="cannot run context-parallel"):
        parallel.attention_backend_for(ulysses, "xformers")
    with pytest.raises(SteadyDancerInputError, match="Unknown attention backend"):
        parallel.attention_backend_for(ulysses, "nope")


def test_diffusers_context_parallel_api_we_rely_on():
    """Pins the diffusers internals used here and in tests/cp_cpu.py (diffusers 0.42.1)."""
    import inspect

    import diffusers.models.attention_dispatch as dispatch
    from diffusers import ContextParallelConfig

    from steadydancer.models import SteadyDancerTransformer3DModel

    registry = dispatch._AttentionBackendRegistry._supports_context_parallel
    assert {"native", parallel.RING_ATTENTION_BACKEND, "flash"} <= set(registry)
    assert "xformers" not in registry
    op = inspect.signature(dispatch._native_flash_attention_forward_op).parameters
    assert list(op)[:10] == ["ctx", "query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
                             "enable_gqa", "return_lse"]
    assert hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
    config = parallel.ParallelSpec(2, 4).context_parallel_config()
    assert isinstance(config, ContextParallelConfig) and (config.ring_degree, config.ulysses_degree) == (2, 4)
    plan = SteadyDancerTransformer3DModel._cp_plan
    assert set(plan) == {"rope", "blocks.0", "proj_out"}


def test_low_vram_preset_is_refused_with_a_reason(tmp_path):
    with pytest.raises(SteadyDancerInputError, match="host RAM"):
        parallel.check_preset("low-vram")
    parallel.check_preset("balanced")
    proc = subprocess.run(
        [sys.executable, "-m", "steadydancer", "generate", "--image", str(IMAGE), "--video", str(MOTION),
         "--out", str(tmp_path / "v.mp4"), "--parallel", "ulysses", "--preset", "low_vram"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")})
    assert proc.returncode == 2 and "does not combine with --parallel" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_parallel_without_torchrun_says_how_to_start_it(tmp_path):
    from steadydancer.cli import main

    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        status = main(["generate", "--image", str(IMAGE), "--video", str(MOTION), "--out", str(tmp_path / "v.mp4"),
                       "--parallel", "ring"])
    finally:
        os.environ.update(env)
    assert status == 2


@pytest.mark.parametrize("world", [2, 4, 8])
def test_parallel_size_splits_evenly_and_keeps_common_sizes(world):
    from steadydancer.constants import size_for_area

    for width, height in ((832, 480), (480, 832), (1024, 576), (576, 1024), (1280, 720)):
        for area in (832 * 480, 1024 * 576):  # the app's two classes: the size one GPU would use
            if world == 8:  # e.g. 832x464 (52 x 29 tokens) does not split in 8: 832x448 does
                continue
            assert parallel.parallel_size_for_area(width, height, area, world) == size_for_area(width, height, area)
    rng = np.random.default_rng(world)
    for _ in range(40):
        width, height = (int(v) for v in rng.integers(200, 2000, 2))
        area = int(rng.choice([832 * 480, 1024 * 576]))
        w, h = parallel.parallel_size_for_area(width, height, area, world)
        assert w % 16 == 0 and h % 16 == 0 and w * h <= area
        assert (w // 16) * (h // 16) % world == 0
        base_w, base_h = size_for_area(width, height, area)
        assert abs(np.log((h / w) / (height / width))) <= abs(np.log((base_h / base_w) / (height / width))) + 0.05
        assert w * h >= 0.85 * base_w * base_h


def test_cost_model_on_n_gpus():
    from steadydancer.costs import context_parallel_pass, estimate_gpu_seconds, transformer_pass_flops

    one = context_parallel_pass(81, 480, 832)
    assert one["flops"] == transformer_pass_flops(81, 480, 832)["total"] and one["comm_bytes"] == 0
    assert estimate_gpu_seconds(81, None, 480, 832, context_parallel=(1, 1)) == estimate_gpu_seconds(81, None, 480, 832)
    times = [estimate_gpu_seconds(81, None, 480, 832, context_parallel=(1, n)) for n in (1, 2, 4, 8)]
    assert times == sorted(times, reverse=True) and times[0] / times[-1] > 5  # most of the work splits
    ulysses, ring = context_parallel_pass(81, 480, 832, 1, 8), context_parallel_pass(81, 480, 832, 8, 1)
    assert ring["comm_bytes"] > 3 * ulysses["comm_bytes"]  # ring moves all of K and V to every rank
    assert ring["flops"] == ulysses["flops"] and ring["activation_bytes"] > ulysses["activation_bytes"]


def test_first_block_cache_is_refused():
    from diffusers.hooks import FirstBlockCacheConfig

    transformer = build_tiny_components()["transformer"]
    transformer.enable_cache(FirstBlockCacheConfig(threshold=0.05))
    with pytest.raises(SteadyDancerInputError, match="first-block cache"):
        parallel.enable_context_parallel(transformer, parallel.ParallelSpec(1, 2))


def test_head_count_is_checked_before_loading(tmp_path):
    from tiny_pipeline import shared_tiny_pipeline_path

    model = shared_tiny_pipeline_path()  # 2 heads
    parallel.prefetch_weights(str(model), None, "quality", True, parallel.ParallelSpec(1, 2))
    with pytest.raises(SteadyDancerInputError, match="2 attention heads"):
        parallel.prefetch_weights(str(model), None, "quality", True, parallel.ParallelSpec(1, 4))
