"""Which random generator draws the initial noise of a seed.

The official generator draws its initial latent with ``torch.Generator(device=<its CUDA
device>).manual_seed(seed)`` and ``torch.randn(..., generator=g, device=<that device>)``. CUDA's
and the CPU's generators give different numbers for the same seed, so a seed reproduces an
official video only when the noise is drawn on the GPU too:

* ``noise_device="auto"`` (default): ``"cuda"`` when the pipeline executes on a CUDA device --
  the official noise for that seed -- and ``"cpu"`` otherwise;
* ``"cuda"``: always the CUDA generator (an error without a GPU);
* ``"cpu"``: the CPU generator, whatever the device: the same numbers on every machine and every
  GPU model (what this project did before; a seed gives the same video on a laptop test run and
  on the GPU, but not the official one).

The pipeline draws the noise of every window with this one generator (the first window's noise
is exactly what the official code draws for 81 frames: same count of numbers, same order).
"""

from __future__ import annotations

from .settings import NOISE_DEVICE

NOISE_DEVICES = tuple(NOISE_DEVICE.choices)
DEFAULT_NOISE_DEVICE = NOISE_DEVICE.default


def resolve_noise_device(noise_device: str | None, execution_device) -> str:
    """The torch device the generator lives on: ``"cpu"``, or the execution device itself when
    it is a CUDA device (``"cuda:1"`` stays ``"cuda:1"``, as the official ``cuda:<id>``)."""
    import torch

    choice = DEFAULT_NOISE_DEVICE if noise_device is None else NOISE_DEVICE.check(noise_device)
    execution = torch.device(execution_device if execution_device is not None else "cpu")
    if choice == "cpu" or (choice == "auto" and execution.type != "cuda"):
        return "cpu"
    return str(execution) if execution.type == "cuda" else "cuda"


def noise_generator(seed: int, execution_device, noise_device: str | None = None):
    """``torch.Generator`` on :func:`resolve_noise_device`'s device, seeded with ``seed``."""
    import torch

    from .errors import SteadyDancerInputError

    device = resolve_noise_device(noise_device, execution_device)
    if device != "cpu" and not torch.cuda.is_available():
        raise SteadyDancerInputError(
            "noise_device='cuda' needs a CUDA GPU and there is none here: use noise_device='cpu' "
            "(or 'auto').")
    return torch.Generator(device=device).manual_seed(int(seed))
