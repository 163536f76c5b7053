"""One video on several GPUs: diffusers' context parallelism under ``torchrun``.

``torchrun --nproc_per_node N -m steadydancer generate ... --parallel ulysses|ring|RxU`` starts N
processes (ranks); each runs the pipeline on its own GPU (``cuda:LOCAL_RANK``) and the transformer's
token sequence is split across them with diffusers' context parallelism
(:class:`diffusers.ContextParallelConfig`, ``ModelMixin.enable_parallelism`` and the model's
``_cp_plan``, see :class:`~steadydancer.models.SteadyDancerTransformer3DModel`):

* ``ulysses`` -- every self-attention does two all-to-alls (sequence-split -> head-split and back);
  exact (the same numbers as one GPU); the degree must divide the 40 heads (2, 4, 5, 8, 10, ...).
* ``ring`` -- keys/values travel around the ranks and partial softmaxes are merged with their
  log-sum-exp (a kernel that returns it is needed: ``_native_flash``, PyTorch's FlashAttention-2,
  is chosen unless another capable backend is asked for); equal to one GPU within float rounding.
* ``RxU`` (e.g. ``2x4``) -- unified: R ring groups of U Ulysses ranks; R * U = N.

What is split and what is not: the pose branch, the patch embeddings, the two reference frames,
RoPE over F + 2 frames and the text/CLIP context are computed whole on every rank (cheap next to
the 40 blocks, and the frame-wise alignment unit needs every frame at each pixel); the 40 blocks
run on 1/N of the tokens each; the sequence is gathered after the output projection, so every rank
holds the same prediction and steps the same latents.

Division of the rest of the work (measured at tiny scale with ``benchmarks/context_parallel.py``):
rank 0 runs the pose path (the CPU-heavy detector, once instead of N times) and hands the rendered
conditions to every rank; every rank then runs the text, CLIP and VAE work itself (the same
numbers, at the same time: no GPU waits for another, and the peak memory of a GPU is the same as
if rank 0 did it alone), denoises its share of the tokens and decodes; rank 0 writes the video and
reports progress, the other ranks stay quiet.

The pieces here are torch-light at import time; torch and diffusers are imported by the functions
that need them.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .constants import SIZE_MULTIPLE, VAE_SPATIAL_STRIDE
from .settings import PARALLEL_INCOMPATIBLE_PRESETS, PRESET, RING_ATTENTION_BACKEND
from .errors import MissingWeightsError, SteadyDancerInputError

#: diffusers backends that do not return the log-sum-exp (fine for Ulysses, not for ring).
_NO_LSE_BACKENDS = ("native",)


@dataclass(frozen=True)
class ParallelSpec:
    """Degrees of a context-parallel run: ``ring_degree * ulysses_degree`` ranks."""

    ring_degree: int = 1
    ulysses_degree: int = 1

    @property
    def world_size(self) -> int:
        return self.ring_degree * self.ulysses_degree

    @property
    def uses_ring(self) -> bool:
        """Ring (or unified) attention merges partial softmaxes: it needs a log-sum-exp kernel."""
        return self.ring_degree > 1

    def describe(self) -> str:
        if self.ring_degree > 1 and self.ulysses_degree > 1:
            return f"ring {self.ring_degree} x Ulysses {self.ulysses_degree}"
        if self.ring_degree > 1:
            return f"ring attention over {self.ring_degree} GPUs"
        return f"Ulysses attention over {self.ulysses_degree} GPUs"

    def context_parallel_config(self):
        """The diffusers :class:`~diffusers.ContextParallelConfig` of this spec."""
        from diffusers import ContextParallelConfig

        return ContextParallelConfig(ring_degree=self.ring_degree, ulysses_degree=self.ulysses_degree)


def parse_parallel(text: str, world_size: int) -> ParallelSpec:
    """``ulysses`` / ``ring`` (degree = ``world_size``) or ``RxU`` (R * U must be ``world_size``)."""
    value = str(text).strip().lower()
    if world_size < 2:
        raise SteadyDancerInputError(
            f"--parallel {text} needs at least 2 processes, this run has {world_size}: start it with "
            "`torchrun --nproc_per_node N -m steadydancer generate ... --parallel ...` (N = number of GPUs)."
        )
    if value == "ulysses":
        return ParallelSpec(1, world_size)
    if value == "ring":
        return ParallelSpec(world_size, 1)
    match = re.fullmatch(r"(\d+)\s*[x*]\s*(\d+)", value)
    if not match:
        raise SteadyDancerInputError(
            f"--parallel must be ulysses, ring or RxU (ring degree x Ulysses degree, e.g. 2x4), got {text!r}."
        )
    ring, ulysses = int(match.group(1)), int(match.group(2))
    if ring < 1 or ulysses < 1 or ring * ulysses != world_size:
        raise SteadyDancerInputError(
            f"--parallel {text}: the ring and Ulysses degrees must multiply to the number of processes "
            f"({world_size}), e.g. {_example_pair(world_size)}."
        )
    if ring == 1 and ulysses == 1:
        raise SteadyDancerInputError("--parallel 1x1 is one GPU: drop --parallel.")
    return ParallelSpec(ring, ulysses)


def _example_pair(world_size: int) -> str:
    for ring in range(2, world_size):
        if world_size % ring == 0 and world_size // ring > 1:
            return f"{ring}x{world_size // ring}"
    return f"1x{world_size} (= ulysses) or {world_size}x1 (= ring)"


def check_preset(preset: str) -> None:
    """Refuse (user error) a memory preset that does not combine with context parallelism."""
    key = PRESET.check(preset)
    if key in PARALLEL_INCOMPATIBLE_PRESETS:
        raise SteadyDancerInputError(
            f"--preset {preset} does not combine with --parallel: {PARALLEL_INCOMPATIBLE_PRESETS[key]}")


def check_heads(spec: ParallelSpec, num_heads: int) -> None:
    """Ulysses hands each rank ``num_heads / ulysses_degree`` whole heads."""
    if num_heads % spec.ulysses_degree:
        raise SteadyDancerInputError(
            f"Ulysses attention over {spec.ulysses_degree} GPUs needs the {num_heads} attention heads to divide "
            f"evenly ({num_heads} % {spec.ulysses_degree} != 0): use --parallel ring, or a degree pair RxU whose "
            f"U divides {num_heads}."
        )


def attention_backend_for(spec: ParallelSpec, requested: str | None) -> str | None:
    """The attention backend a context-parallel run uses: the requested one if diffusers can run it
    context-parallel (and, for ring, it returns the log-sum-exp), else a user error; by default
    ``native`` (SDPA) for Ulysses and :data:`RING_ATTENTION_BACKEND` for ring / unified."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    if requested is None or (requested in _NO_LSE_BACKENDS and spec.uses_ring):
        return RING_ATTENTION_BACKEND if spec.uses_ring else None
    names = [b.value for b in AttentionBackendName]
    if requested not in names:
        raise SteadyDancerInputError(f"Unknown attention backend {requested!r}: choose one of {', '.join(names)}.")
    capable = sorted(_AttentionBackendRegistry._supports_context_parallel)
    if requested not in capable:
        raise SteadyDancerInputError(
            f"The attention backend {requested!r} cannot run context-parallel; choose one of {', '.join(capable)}."
        )
    return requested


def parallel_size_for_area(width: int, height: int, max_area: int, world_size: int,
                           multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(W, H) as :func:`steadydancer.constants.size_for_area`, but with a latent token grid
    ``(H / 16) * (W / 16)`` that ``world_size`` divides, so every window of any length splits into
    equal shares (diffusers splits the sequence in equal chunks). Among the sizes within
    ``max_area`` whose aspect ratio is within 3% of the one-GPU size's, it takes the largest. For
    16:9 / 9:16 and 832x480-shaped images in the 480p and 1024x576 classes it is the size one GPU
    would use with N = 2 and 4; with 8 it may be a step smaller (832x464, 52 x 29 tokens, becomes
    832x448)."""
    from .constants import size_for_area

    base_w, base_h = size_for_area(width, height, max_area, multiple)
    patch = VAE_SPATIAL_STRIDE * 2  # pixels per token side: VAE stride x transformer patch
    if (base_w // patch) * (base_h // patch) % world_size == 0:
        return base_w, base_h
    aspect = height / width
    allowed = abs(math.log((base_h / base_w) / aspect)) + 0.03  # the one-GPU size's aspect error, + 3%
    best = None
    for h in range(multiple, int(max_area // multiple) + 1, multiple):
        for w in range(multiple, int(max_area // h) // multiple * multiple + 1, multiple):
            if (w // patch) * (h // patch) % world_size:
                continue
            error = abs(math.log((h / w) / aspect))
            if error <= allowed and (best is None or (-w * h, error) < best[0]):
                best = ((-w * h, error), (w, h))
    if best is None:
        raise SteadyDancerInputError(
            f"No video size within {max_area} pixels splits into {world_size} equal shares: raise --max-area."
        )
    return best[1]


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass
class DistributedRun:
    """This process's place in a ``torchrun`` launch."""

    rank: int
    world_size: int
    local_rank: int
    device: str
    backend: str
    #: A gloo group for Python objects (pose conditions, errors), whatever the tensor backend.
    object_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_environment() -> tuple[int, int, int] | None:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` set by ``torchrun``, or ``None`` outside it."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    return rank, world, local


@contextmanager
def distributed_run(device: str | None = None) -> Iterator[DistributedRun]:
    """Join the ``torchrun`` process group for the duration of the block, and leave it cleanly.

    CUDA: each rank takes ``cuda:LOCAL_RANK``; tensors travel over NCCL, Python objects over gloo
    (``"cpu:gloo,cuda:nccl"``). CPU (``device="cpu"`` or no CUDA): gloo for everything. The group
    is destroyed on the way out, also after an error (the other ranks are then stopped by torchrun);
    a group the caller already initialised is used as it is and left alone.
    """
    import torch
    import torch.distributed as dist

    env = torchrun_environment()
    if env is None:
        raise SteadyDancerInputError(
            "--parallel runs one process per GPU: start it with "
            "`torchrun --nproc_per_node N -m steadydancer generate ... --parallel ulysses` (N = number of GPUs)."
        )
    rank, world, local = env
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if device is not None and str(device) not in ("cpu", "cuda"):
        raise SteadyDancerInputError(
            f"--device {device} cannot be combined with --parallel: each process uses cuda:LOCAL_RANK "
            "(or pass --device cpu for a CPU test run)."
        )
    if device is not None and str(device) == "cuda" and not torch.cuda.is_available():
        raise MissingWeightsError("No CUDA GPU is available here: --parallel needs one GPU per process.")
    if dist.is_initialized():  # a caller (a script, accelerate) set the group up: use it, leave it be
        run_device = f"cuda:{local}" if use_cuda else "cpu"
        if use_cuda:
            torch.cuda.set_device(local)
        object_group = dist.new_group(backend="gloo") if use_cuda else None
        yield DistributedRun(rank, world, local, run_device, str(dist.get_backend()), object_group)
        return
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise SteadyDancerInputError(
                f"Process {rank} wants cuda:{local} but this machine has {torch.cuda.device_count()} GPUs: "
                "start at most that many processes per node (--nproc_per_node)."
            )
        torch.cuda.set_device(local)
        run_device, backend = f"cuda:{local}", "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend=backend, device_id=torch.device("cuda", local))
    else:
        run_device, backend = "cpu", "gloo"
        dist.init_process_group(backend=backend)
    try:
        object_group = dist.new_group(backend="gloo") if use_cuda else None
        yield DistributedRun(rank, world, local, run_device, backend, object_group)
        # Every rank leaves together: a rank that tore its gloo connections down while a peer was
        # still finishing the last collective was aborted ("terminate called without an active
        # exception", SIGABRT; seen once in CI on 4 CPU processes). After an error the other ranks
        # are stopped by torchrun instead, so no barrier then.
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def share_from_main(run: DistributedRun, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and return its result on every rank. A user error raised by ``fn``
    is raised on every rank (each then exits with status 2; only rank 0 prints it); any other
    failure stops every rank too, instead of leaving them waiting for rank 0."""
    import torch.distributed as dist

    box: list = [None]
    if run.is_main:
        try:
            box[0] = ("ok", fn())
        except (SteadyDancerInputError, MissingWeightsError) as error:
            box[0] = ("user", error)
        except BaseException as error:  # noqa: BLE001 - tell the other ranks, then re-raise here
            box[0] = ("crash", f"{type(error).__name__}: {error}")
            dist.broadcast_object_list(box, src=0, group=run.object_group)
            raise
    dist.broadcast_object_list(box, src=0, group=run.object_group)
    kind, value = box[0]
    if kind == "ok":
        return value
    if kind == "user":
        raise value
    raise RuntimeError(f"rank 0 failed: {value}")


def quiet_unless_main(run: DistributedRun, pipe=None) -> None:
    """Ranks other than 0 print nothing: no progress bars, library logs or Python warnings."""
    if pipe is not None:
        pipe.set_progress_bar_config(disable=not run.is_main)
    # diffusers' own collectives call a torch function deprecated in favour of another: not the user's concern.
    warnings.filterwarnings("ignore", message=".*_functional_collectives.*deprecated", category=FutureWarning)
    if run.is_main:
        return
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def prefetch_weights(model, encoders, preset: str, offline: bool | None, spec: ParallelSpec | None = None) -> None:
    """Download what loading ``preset`` will need (run on rank 0 before every rank loads, so the N
    processes do not fetch the same files at once), and check ``spec`` against the transformer's
    head count before minutes of loading."""
    import json
    from pathlib import Path

    from .presets import fast_lora_spec, get_preset, resolve_lora_file
    from .weights import default_encoders, default_model, resolve_weights

    location = resolve_weights(model or default_model(), encoders or default_encoders(), offline=offline)
    if get_preset(preset).name == "fast":
        resolve_lora_file(fast_lora_spec(), offline)
    folder = location.transformer_dir or Path(location.pipeline_dir) / "transformer"
    config = json.loads((Path(folder) / "config.json").read_text())
    # diffusers / official names; an official config.json may leave out its default of 40 heads
    heads = config.get("num_attention_heads", config.get("num_heads", 40))
    if spec is not None:
        check_heads(spec, int(heads))


def enable_context_parallel(pipe, spec: ParallelSpec):
    """Split the transformer's sequence (``pipe.transformer``, or ``pipe`` itself when it is the
    transformer) over the process group as ``spec`` says -- diffusers' ``enable_parallelism`` with
    the model's ``_cp_plan`` -- and return the diffusers config. Call it after the preset's
    placement; for ring / unified attention, set a log-sum-exp attention backend first
    (:func:`attention_backend_for`)."""
    import torch
    import torch.distributed as dist

    transformer = getattr(pipe, "transformer", pipe)
    if getattr(transformer, "is_cache_enabled", False):
        # Each rank would judge the first block's change on its own share of the tokens and skip the
        # other blocks or not on its own: ranks skipping would leave the others waiting in a collective.
        raise SteadyDancerInputError(
            "The first-block cache does not combine with context parallelism (each GPU would decide on its "
            "own share of the video whether to skip the blocks, and the GPUs would wait on each other): turn "
            "the cache off.")
    if not dist.is_initialized():
        raise RuntimeError("enable_context_parallel needs the torchrun process group (distributed_run).")
    if spec.world_size != dist.get_world_size():
        raise SteadyDancerInputError(
            f"{spec.describe()} needs {spec.world_size} processes, this run has {dist.get_world_size()}."
        )
    if torch.accelerator.device_count() == 0:
        # diffusers places rank r on accelerator r % device_count(): there must be one.
        raise MissingWeightsError("Context parallelism needs one GPU per process; there is no GPU here.")
    check_heads(spec, transformer.config.num_attention_heads)
    config = spec.context_parallel_config()
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its "experimental feature" warning, once per rank
    try:
        transformer.enable_parallelism(config=config)
    finally:
        diffusers_logging.set_verbosity(level)
    pipe._steadydancer_parallel = spec
    return config
