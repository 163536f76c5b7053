"""One ``torchrun`` launch (2 CPU processes, gloo) for every context-parallel check of
``tests/test_context_parallel.py`` -- a launch costs far more than the checks.

    python -m torch.distributed.run --nproc_per_node 2 tests/cp_worker.py OUT_DIR MODEL_DIR IMAGE MOTION
    python -m torch.distributed.run --nproc_per_node 4 tests/cp_worker.py --unified OUT_DIR

Each rank writes ``OUT_DIR/rank{r}.pt``: the tiny transformer's output under Ulysses and ring, the
tiny pipeline's frames (two long-video windows) under both, and the token counts the first block
saw (proof that the sequence was split) and the elements each rank sent through the collectives.
Then the ``generate`` command itself runs with
``--parallel ulysses`` in the same process group, each rank's stdout/stderr going to
``OUT_DIR/cli_rank{r}.log``. With ``--unified`` (4 ranks), only the tiny transformer under
unified attention (2 ring groups x 2 Ulysses ranks), into ``OUT_DIR/unified_rank{r}.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: The pipeline call both the workers and the single-process reference make.
PIPELINE_CALL = dict(prompt="a person dancing", height=32, width=32, num_frames=9, num_inference_steps=3, window_frames=5,
                     window_overlap=1, output_type="np")
BALANCED_CALL = dict(PIPELINE_CALL, num_frames=5, num_inference_steps=2)
TRANSFORMER_INPUTS = dict(frames=3, height=4, width=4, batch=2, seed=0)


def cli_argv(model, image, motion, out, parallel=None):
    argv = ["generate", "--image", str(image), "--video", str(motion), "--model", str(model), "--device", "cpu",
            "--offline", "--frames", "9", "--steps", "2", "--max-area", str(64 * 64), "--seed", "5",
            "--out", str(out)]
    return argv + (["--parallel", parallel] if parallel else [])


def _count_block_tokens(transformer, seen: list):
    return transformer.blocks[0].register_forward_hook(lambda module, args, output: seen.append(output.shape[1]))


class CountCollectives:
    """Elements each rank sends through the collectives diffusers' context parallelism uses
    (``torch.distributed._functional_collectives``): an all-to-all over P ranks sends ``(P - 1) / P``
    of its input, an all-gather its whole input to each of the P - 1 others. For the cost model."""

    def __init__(self, world_size: int):
        import torch.distributed._functional_collectives as funcol

        self.funcol, self.world, self.sent = funcol, world_size, 0
        self.originals = funcol.all_to_all_single, funcol.all_gather_tensor

    def __enter__(self):
        all_to_all, all_gather = self.originals

        def counted_all_to_all(tensor, *args, **kwargs):
            self.sent += tensor.numel() * (self.world - 1) // self.world
            return all_to_all(tensor, *args, **kwargs)

        def counted_all_gather(tensor, *args, **kwargs):
            self.sent += tensor.numel() * (self.world - 1)
            return all_gather(tensor, *args, **kwargs)

        self.funcol.all_to_all_single, self.funcol.all_gather_tensor = counted_all_to_all, counted_all_gather
        return self

    def __exit__(self, *exc):
        self.funcol.all_to_all_single, self.funcol.all_gather_tensor = self.originals


def run_checks(out_dir: Path, model: str, image: str, motion: str) -> int:
    import torch

    from steadydancer import parallel
    from tiny_pipeline import build_tiny_components, load_tiny_pipeline, tiny_inputs, tiny_transformer_inputs

    results = {}
    with parallel.distributed_run("cpu") as run:
        parallel.quiet_unless_main(run)
        for name, spec in (("ulysses", parallel.ParallelSpec(1, 2)), ("ring", parallel.ParallelSpec(2, 1))):
            backend = parallel.attention_backend_for(spec, None)
            # 1. The tiny transformer alone.
            transformer = build_tiny_components()["transformer"]
            if backend:
                transformer.set_attention_backend(backend)
            parallel.enable_context_parallel(transformer, spec)
            seen: list = []
            _count_block_tokens(transformer, seen)
            with torch.no_grad(), CountCollectives(run.world_size) as counter:
                results[f"transformer_{name}"] = transformer(**tiny_transformer_inputs(**TRANSFORMER_INPUTS),
                                                              return_dict=False)[0]
            results[f"transformer_{name}_tokens"] = seen
            results[f"transformer_{name}_sent_elements"] = counter.sent
            # 2. The tiny pipeline end to end (two windows, three guidance passes in a batch).
            pipe = load_tiny_pipeline(model)
            if backend:
                pipe.transformer.set_attention_backend(backend)
            parallel.enable_context_parallel(pipe, spec)
            seen = []
            _count_block_tokens(pipe.transformer, seen)
            reference, positive, negative = tiny_inputs(9)
            results[f"pipeline_{name}"] = pipe(reference, positive, negative, generator=torch.Generator().manual_seed(0),
                                               **PIPELINE_CALL).frames
            results[f"pipeline_{name}_tokens"] = sorted(set(seen))
        # 3. A memory preset's hooks with the plan's: balanced (fp8 weights, layerwise casting), Ulysses.
        from steadydancer.generation import load_pipeline

        pipe = load_pipeline(model, preset="balanced", device="cpu", offline=True)
        pipe.set_progress_bar_config(disable=True)
        parallel.enable_context_parallel(pipe, parallel.ParallelSpec(1, 2))
        reference, positive, negative = tiny_inputs(9)
        results["balanced_ulysses"] = pipe(reference, positive, negative, generator=torch.Generator().manual_seed(0),
                                           **BALANCED_CALL).frames
        torch.save(results, out_dir / f"rank{run.rank}.pt")
        # 4. The command line, in this process group (its own would be a second init per process).
        return run_cli(out_dir, model, image, motion)


def _cli_main(argv, log_path: Path) -> int:
    """``steadydancer.cli.main(argv)`` with this process's stdout/stderr (file descriptors, so C++
    and library output too) going to ``log_path``."""
    from steadydancer.cli import main

    with open(log_path, "w") as log:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            return main(argv)
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)


def run_cli(out_dir: Path, model: str, image: str, motion: str) -> int:
    import json

    rank = int(os.environ["RANK"])
    # A user error found on rank 0 only (an unreadable photo, in its pose path) stops every rank
    # with status 2 and one message, from rank 0.
    bad_image = out_dir / "not_an_image.png"
    if rank == 0:
        bad_image.write_text("this is text")
    bad = _cli_main(cli_argv(model, bad_image, motion, out_dir / "bad.mp4", parallel="ulysses"),
                    out_dir / f"cli_error_rank{rank}.log")
    good = _cli_main(cli_argv(model, image, motion, out_dir / "parallel.mp4", parallel="ulysses"),
                     out_dir / f"cli_rank{rank}.log")
    (out_dir / f"cli_status_rank{rank}.json").write_text(json.dumps({"bad_image": bad, "generate": good}))
    return good


def run_unified(out_dir: Path) -> int:
    """4 ranks: the tiny transformer under unified attention (2 ring groups x 2 Ulysses ranks)."""
    import torch

    from steadydancer import parallel
    from tiny_pipeline import build_tiny_components, tiny_transformer_inputs

    with parallel.distributed_run("cpu") as run:
        parallel.quiet_unless_main(run)
        spec = parallel.parse_parallel("2x2", run.world_size)
        transformer = build_tiny_components()["transformer"]
        transformer.set_attention_backend(parallel.attention_backend_for(spec, None))
        parallel.enable_context_parallel(transformer, spec)
        seen: list = []
        _count_block_tokens(transformer, seen)
        with torch.no_grad():
            output = transformer(**tiny_transformer_inputs(**TRANSFORMER_INPUTS), return_dict=False)[0]
        torch.save({"transformer_unified": output, "transformer_unified_tokens": seen},
                   out_dir / f"unified_rank{run.rank}.pt")
    return 0


if __name__ == "__main__":
    import cp_cpu

    cp_cpu.apply()
    if sys.argv[1] == "--unified":
        sys.exit(run_unified(Path(sys.argv[2])))
    out_dir, model, image, motion = Path(sys.argv[1]), *sys.argv[2:5]
    sys.exit(run_checks(out_dir, model, image, motion))
