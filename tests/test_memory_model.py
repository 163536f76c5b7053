"""The GPU / CPU-RAM model per preset and GGUF type (steadydancer.memory_model)."""

from __future__ import annotations

import numpy as np
import pytest

from steadydancer.costs import TransformerShape
from steadydancer.memory_model import (
    GGUF_BITS_PER_WEIGHT,
    REAL_14B_PARAMS,
    cpu_peak_bytes,
    gguf_file_bytes,
    gpu_peak_bytes,
    recommend,
)

GB = 1e9


def test_bits_per_weight_are_gguf_block_sizes():
    import gguf

    for name, bits in GGUF_BITS_PER_WEIGHT.items():
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]]
        assert bits == 8 * type_size / block, name


def test_real_parameter_count_matches_the_meta_model():
    import torch

    from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel

    with torch.device("meta"):
        model = SteadyDancerTransformer3DModel()
    assert sum(p.numel() for p in model.parameters()) == REAL_14B_PARAMS


def test_file_size_formula_matches_a_written_file(tmp_path):
    from steadydancer.memory_model import quantized_param_count
    from steadydancer.models.gguf import read_gguf_file
    from tests.gguf_files import GGUF_TEST_CONFIG, build_gguf_test_transformer, write_community_gguf

    model = build_gguf_test_transformer()
    path = tmp_path / "m.gguf"
    types = write_community_gguf(model, path, "Q8_0")
    shape = TransformerShape.from_config(model.config)
    # The pose modules (0.11 M values, a third of this tiny file's F32 part, 0.4 MB of a 14B file) are
    # left out of the comparison: the formula counts them in F32, the converter quantizes some.
    pose = ("condition_embedding_spatial", "condition_embedding_temporal", "condition_embedding_align")
    total = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(pose))
    tensors = read_gguf_file(path).tensors
    written = sum(data.nbytes for key, (data, _, _) in tensors.items() if not key.startswith(pose))
    quantized = sum(int(np.prod(shape_)) for key, (_, t, shape_) in tensors.items()
                    if t.name == "Q8_0" and not key.startswith(pose))
    # One matrix the formula counts as quantized is F16 here (rows of text_dim = 16 values).
    assert types["text_embedding.0.weight"] == "F16"
    text_matrix = GGUF_TEST_CONFIG["text_dim"] * 256
    assert quantized == quantized_param_count(shape) - text_matrix
    predicted = gguf_file_bytes("Q8_0", shape, total_params=total) + text_matrix * (2 - 8.5 / 8)
    assert written == predicted


def test_the_goal_machine_runs_480p_81_frames():
    """12 GB GPU + 32 GB RAM at 480p / 81 frames: small_gpu with a 4-bit file."""
    choice = recommend(12 * GB, 32 * GB)
    assert (choice.preset, choice.gguf_type) == ("small_gpu", "Q4_K")
    assert choice.gpu_bytes < 6 * GB and choice.cpu_bytes < 28 * GB
    # The bf16 weights do not fit that RAM with any preset; more RAM -> the full weights, streamed.
    assert cpu_peak_bytes("low_vram") > 32 * GB
    assert recommend(12 * GB, 64 * GB).preset == "low_vram"
    assert recommend(80 * GB, 128 * GB).preset == "quality" and recommend(80 * GB, 128 * GB).gguf_type is None
    assert recommend(4 * GB, 16 * GB) is None


def test_peaks_order_and_errors():
    assert gpu_peak_bytes("small_gpu", gguf_type="Q4_K") < gpu_peak_bytes("small_gpu", gguf_type="Q8_0")
    assert gpu_peak_bytes("quality", gguf_type="Q8_0") < gpu_peak_bytes("quality")
    assert gpu_peak_bytes("quality", 81, 720, 1280) > gpu_peak_bytes("quality", 81, 480, 832)
    assert gguf_file_bytes("Q4_K") < gguf_file_bytes("Q8_0") < 18 * GB
    with pytest.raises(ValueError, match="small_gpu runs a GGUF"):
        gpu_peak_bytes("small_gpu")
    with pytest.raises(ValueError, match="cannot run a GGUF"):
        cpu_peak_bytes("fast", gguf_type="Q8_0")
