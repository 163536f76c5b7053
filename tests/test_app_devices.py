"""The app on several GPUs: one pipeline per device behind the one queue (``--devices``).

Exercised on the CPU with two "devices" that are both the CPU: two generations really run at the same
time, each in its own slot with its own pipeline, and the queue lets as many in as there are devices.
"""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from steadydancer import settings
from steadydancer.generation import GenerationJob
from studio import AppConfig, Studio, create_demo, runtime
from studio.config import parse_devices
from studio.inputs import GenerationRequest
from tiny_pipeline import shared_tiny_pipeline_path, tiny_inputs


def test_parse_devices():
    assert parse_devices("") == ()
    assert parse_devices("cuda:0, cuda:1") == ("cuda:0", "cuda:1")
    assert parse_devices("0,1,2") == ("cuda:0", "cuda:1", "cuda:2")
    with pytest.raises(ValueError, match="comma list"):
        parse_devices("gpu0")


def _config(devices=()):
    return AppConfig.from_env().replace(model=str(shared_tiny_pipeline_path()), offline=True, device="cpu",
                                        zero_gpu=False, devices=devices)


def test_queue_admits_one_generation_per_device():
    for devices, slots in (((), 1), (("cuda:0", "cuda:1", "cuda:2"), 3)):
        demo = create_demo(Studio(_config(devices)))
        fns = {fn.api_name: fn for fn in demo.fns.values()}
        assert fns["generate"].concurrency_limit == slots and fns["generate"].concurrency_id == "gpu"
    assert _config(("cuda:0", "cuda:1")).replace(zero_gpu=True).generation_slots == 1


@pytest.fixture
def one_intra_op_thread():
    """Two generations at once share torch's CPU thread pool, so how an op is split between threads
    (and the float rounding that follows) depends on what the other one is doing. One intra-op thread
    makes each run deterministic, so the same seed must give the same video."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.slow
def test_two_generations_run_at_once_on_two_devices(one_intra_op_thread):
    config = _config(("cpu", "cpu"))
    reference, positive, negative = tiny_inputs(5)
    job = GenerationJob(reference_image=Image.fromarray(reference), positive=positive, negative=negative, width=32,
                        height=32, num_frames=5, fps=16.0)
    request = GenerationRequest(prompt="a person dancing", negative_prompt="", resolution="tiny", max_area=32 * 32,
                                num_frames=5, sampling=settings.SamplingSettings.resolve(num_inference_steps=2),
                                seed=3, preset="quality")
    both_denoising = threading.Barrier(2, timeout=300)  # broken unless the two runs overlap
    results, errors, devices = {}, [], {}

    def run(name):
        def progress(fraction, desc=""):
            if desc.startswith("Denoising: step 1/"):
                both_denoising.wait()

        try:
            results[name] = runtime.run_generation(job, request, config, progress=progress)
            devices[name] = runtime._CURRENT.slot
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(devices.values()) == [0, 1]  # each took its own slot
    slots = sorted(key[0] for key in runtime._PIPELINES if key[1] == config.model)
    assert slots == [0, 1]  # one pipeline per slot
    assert len(results["a"]) == len(results["b"]) == 5
    assert all((fa == fb).all() for fa, fb in zip(results["a"], results["b"]))  # same seed, same video
    runtime._PIPELINES.clear()


def test_a_pipeline_loading_in_another_slot_does_not_change_this_ones_tensors():
    """Loading a pipeline (diffusers / transformers) sets torch's process-wide default dtype to
    bfloat16 for a moment; a generation running in another slot at that moment made its first-frame
    video and CLIP normalisation in bfloat16 (the flaky two-slot test above, ~1 run in 6 under
    load). The pipeline names the dtype of every tensor it makes, so the default cannot reach it."""
    import torch

    from steadydancer.generation import load_pipeline

    pipe = load_pipeline(str(shared_tiny_pipeline_path()), preset="quality", device="cpu", offline=True)
    frame = torch.linspace(-1, 1, 3 * 32 * 32, dtype=torch.float32).view(3, 32, 32)

    def tensors():
        return (pipe.encode_image(frame[None]), pipe.prepare_image_condition(frame, 5, torch.device("cpu")),
                pipe._first_frame_mask(2, 4, 4, "cpu"))

    expected = tensors()
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # what another slot's loading does for a moment
    try:
        seen = tensors()
    finally:
        torch.set_default_dtype(saved)
    for a, b in zip(expected, seen):
        assert a.dtype == b.dtype and torch.equal(a, b)
