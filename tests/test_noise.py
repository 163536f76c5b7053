"""Which generator draws a seed's initial noise (steadydancer.noise): the GPU's by default when
generating on CUDA (the official noise), the CPU's when asked or when generating on the CPU."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from steadydancer.errors import SteadyDancerInputError
from steadydancer.generation import generate_video
from steadydancer.noise import NOISE_DEVICES, noise_generator, resolve_noise_device


@pytest.mark.parametrize("choice, execution, expected", [
    (None, "cpu", "cpu"), ("auto", "cpu", "cpu"),
    (None, "cuda", "cuda"), ("auto", "cuda:1", "cuda:1"),  # the official draws on its own device
    ("cpu", "cuda", "cpu"), ("cpu", "cpu", "cpu"),
    ("cuda", "cpu", "cuda"), ("cuda", "cuda:0", "cuda:0"),
])
def test_noise_device_choice(choice, execution, expected):
    assert resolve_noise_device(choice, torch.device(execution)) == expected


def test_bad_noise_device_is_a_user_error():
    assert NOISE_DEVICES == ("auto", "cuda", "cpu")
    with pytest.raises(SteadyDancerInputError, match="noise_device"):
        resolve_noise_device("tpu", "cpu")
    assert resolve_noise_device("gpu", "cuda") == "cuda"  # an accepted alias


class RecordingPipe:
    """Stands in for the pipeline: records the generator generate_video hands over."""

    def __init__(self, execution_device):
        self._execution_device = torch.device(execution_device)
        self.generators = []

    def __call__(self, **kwargs):
        self.generators.append(kwargs["generator"])
        frames = [np.zeros((16, 16, 3), np.uint8)] * kwargs["num_frames"]
        return SimpleNamespace(frames=[frames])


def test_cpu_path_is_the_seeded_cpu_generator():
    frames = [np.zeros((16, 16, 3), np.uint8)] * 5
    for noise_device in (None, "auto", "cpu"):
        pipe = RecordingPipe("cpu")
        generate_video(pipe, frames[0], frames, frames, num_inference_steps=1, seed=1234, noise_device=noise_device)
        (generator,) = pipe.generators
        assert generator.device.type == "cpu"
        expected = torch.randn(64, generator=torch.Generator("cpu").manual_seed(1234))
        torch.testing.assert_close(torch.randn(64, generator=generator), expected, rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_gpu_noise_without_a_gpu_says_so():
    frames = [np.zeros((16, 16, 3), np.uint8)] * 5
    with pytest.raises(SteadyDancerInputError, match="needs a CUDA GPU"):
        generate_video(RecordingPipe("cpu"), frames[0], frames, frames, num_inference_steps=1, noise_device="cuda")
    # Generating on CUDA asks for the CUDA generator by default (here: the same clear error).
    with pytest.raises(SteadyDancerInputError, match="needs a CUDA GPU"):
        generate_video(RecordingPipe("cuda"), frames[0], frames, frames, num_inference_steps=1)
    # ... unless the CPU generator is asked for.
    pipe = RecordingPipe("cuda")
    generate_video(pipe, frames[0], frames, frames, num_inference_steps=1, seed=5, noise_device="cpu")
    assert pipe.generators[0].device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_noise_is_the_official_draw():  # pragma: no cover - CPU-only CI
    generator = noise_generator(42, torch.device("cuda"))
    official = torch.randn(16, 21, 4, 8, generator=torch.Generator("cuda").manual_seed(42), device="cuda")
    ours = torch.randn(1, 16, 21, 4, 8, generator=generator, device="cuda")
    torch.testing.assert_close(ours[0], official, rtol=0, atol=0)
