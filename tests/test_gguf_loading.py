"""GGUF transformer files (community layout) through diffusers' GGUF machinery, without downloads.

The tests write tiny GGUF files themselves (``tests/gguf_files.py``: Q8_0 and Q4_0 with the
``gguf`` package's own quantizer, Q4_K with a block encoder written here) in the layout the
community converters produce, and check placement, numerics, errors, the diffusers internals the
loader relies on, and the small_gpu preset end to end on the CPU.

Tolerances. diffusers dequantizes through float16: ``Q8_0`` / ``Q4_0`` weights are ``d * q`` with
``d`` float16 and ``q`` an integer, a product exact in float32 and rounded once in float16, so
each weight is within one float16 unit roundoff (``2**-11`` relative) of the exact value; K-quant
weights go through up to four float16 roundings (``d * sc``, ``dmin * m``, ``* q``, the
difference), so within ``4 * 2**-11`` of the block's largest magnitude. The forward of the packed
model is compared with the same model loaded from the exactly dequantized weights (float32 both):
an output error below twice the weight bound (relative to the output's largest value; measured
3.1e-4 for Q8_0, 2.7e-4 for Q4_0, 2.2e-3 for Q4_K). Against a model built from diffusers' own
dequantized weights the output is identical (same float32 operations).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steadydancer.errors import SteadyDancerInputError
from steadydancer.models.gguf import FIVE_D_KEYS, read_gguf_file
from steadydancer.models.loading import SteadyDancerCheckpointError, convert_official_key, official_state_dict
from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel
from tests.gguf_files import GGUF_TEST_CONFIG, build_gguf_test_transformer, write_community_gguf
from tests.tiny_pipeline import tiny_transformer_inputs

UNIT_ROUNDOFF_FP16 = 2.0**-11
TYPES = ("Q8_0", "Q4_0", "Q4_K")
#: float16 roundings on the way from the packed blocks to a weight (see the module docstring).
ROUNDINGS = {"Q8_0": 1, "Q4_0": 1, "Q4_K": 4}


@pytest.fixture(scope="module")
def original():
    return build_gguf_test_transformer()


@pytest.fixture(scope="module")
def files(original, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    return {qtype: (folder / f"steadydancer-{qtype}.gguf", write_community_gguf(original, folder / f"steadydancer-{qtype}.gguf", qtype))
            for qtype in TYPES}


def gguf_config(dtype=torch.float32):
    from diffusers import GGUFQuantizationConfig

    return GGUFQuantizationConfig(compute_dtype=dtype)


def load(path, dtype=torch.float32):
    return SteadyDancerTransformer3DModel.from_single_file(str(path), quantization_config=gguf_config(dtype))


def exact_weights(path) -> dict[str, torch.Tensor]:
    """Every tensor of the file dequantized by gguf's reference code (float32), under module names."""
    import gguf

    weights = {}
    for key, (data, qtype, shape) in read_gguf_file(path).tensors.items():
        values = gguf.quants.dequantize(np.asarray(data), qtype)
        weights[convert_official_key(key)] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(shape)
    return weights


def float_model(weights: dict[str, torch.Tensor]):
    model = SteadyDancerTransformer3DModel(**GGUF_TEST_CONFIG).eval()
    model.load_state_dict(weights)
    return model


def inputs():
    data = tiny_transformer_inputs(3, 4, 4, seed=0)
    data["encoder_hidden_states"] = torch.randn(1, 11, GGUF_TEST_CONFIG["text_dim"])
    return data


def forward(model, data):
    with torch.no_grad():
        return model(**data).sample


# ----------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("qtype", TYPES)
def test_every_tensor_lands_with_its_shape_packed_only_in_linear_layers(files, original, qtype):
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter

    path, types = files[qtype]
    assert sum(key in types for key in FIVE_D_KEYS) == 9 and all(types[k] == "F32" for k in FIVE_D_KEYS)
    assert types["blocks.0.ffn.0.weight"] == qtype  # the file really is quantized
    # The alignment unit's attention arrives quantized (rows of 128: not for the 256-value K blocks).
    assert types["condition_embedding_align.cross_attn.in_proj_weight"] == ("F16" if qtype == "Q4_K" else qtype)
    model = load(path)
    expected = original.state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(expected)
    packed = 0
    for name, tensor in loaded.items():
        module = model.get_submodule(name.rpartition(".")[0])
        if isinstance(tensor, GGUFParameter):
            packed += 1
            assert tuple(tensor.quant_shape) == tuple(expected[name].shape), name
            assert isinstance(module, GGUFLinear) and tensor.dtype == torch.uint8, name
        else:
            assert tensor.shape == expected[name].shape and tensor.is_floating_point(), name
    # Packed: 2 blocks x 12 matrices + text_embedding.2 + time_projection + 2 CLIP embedder + head. Not
    # packed although quantized in the file: the time embedder (kept in float32) and the attention of the
    # alignment unit; text_embedding.0 has rows of 16 (F16 in the file).
    assert packed == 2 * 12 + 1 + 1 + 2 + 1
    assert isinstance(model.blocks[0].ffn.net[0].proj, GGUFLinear)
    # The alignment unit's nn.MultiheadAttention reads its projections directly: plain float tensors.
    attention = model.condition_embedding_align.cross_attn
    assert not isinstance(attention.in_proj_weight, GGUFParameter) and attention.in_proj_weight.dtype == torch.float32
    assert type(attention.out_proj) is not GGUFLinear and not isinstance(attention.out_proj.weight, GGUFParameter)
    # Modules kept in float32 are dequantized at load, the time embedder included.
    time_linear = model.condition_embedder.time_embedder.linear_1
    assert type(time_linear) is torch.nn.Linear and time_linear.weight.dtype == torch.float32
    for key in FIVE_D_KEYS:
        assert model.get_parameter(convert_official_key(key)).ndim == 5


def test_bf16_compute_keeps_the_documented_dtypes(files):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    model = load(files["Q8_0"][0], torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert isinstance(model.blocks[0].attn1.to_q.weight, GGUFParameter)
    assert model.blocks[0].attn1.to_q.bias.dtype == torch.bfloat16
    assert model.scale_shift_table.dtype == torch.float32  # _keep_in_fp32_modules
    assert model.condition_embedding_align.cross_attn.in_proj_weight.dtype == torch.bfloat16
    assert model.patch_embedding_fuse.weight.dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("qtype", ("Q8_0", "Q4_K"))  # Q4_0 decodes as Q8_0 does (one float16 rounding)
def test_forward_matches_the_model_loaded_from_the_dequantized_weights(files, qtype):
    from diffusers.quantizers.gguf.utils import GGUFParameter, dequantize_gguf_tensor

    path, _ = files[qtype]
    model = load(path)
    exact = exact_weights(path)
    bound = ROUNDINGS[qtype] * UNIT_ROUNDOFF_FP16

    # Weights: diffusers' float16 dequantization vs gguf's exact one.
    diffusers_weights = {}
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, GGUFParameter):
            weight = dequantize_gguf_tensor(tensor).float()
            error = (weight - exact[name]).abs()
            if ROUNDINGS[qtype] == 1:  # one rounding: elementwise relative bound
                assert (error <= bound * exact[name].abs() + 1e-30).all(), name
            else:
                assert error.max() <= bound * exact[name].abs().max(), name
            diffusers_weights[name] = weight
        else:
            diffusers_weights[name] = tensor.float()

    data = inputs()
    packed = forward(model, data)
    reference = forward(float_model(exact), data)
    error = ((packed - reference).abs().max() / reference.abs().max()).item()
    assert error <= 2 * bound, f"{qtype}: {error:.2e}"
    # Same weights as diffusers decodes them -> identical output: the glue places every tensor right.
    torch.testing.assert_close(packed, forward(float_model(diffusers_weights), data), rtol=0, atol=1e-6)


def test_bf16_forward_is_close_to_the_float32_one(files):
    data = inputs()
    reference = forward(float_model(exact_weights(files["Q8_0"][0])), data)
    output = forward(load(files["Q8_0"][0], torch.bfloat16), {k: v.to(torch.bfloat16) if v.is_floating_point() else v
                                                               for k, v in data.items()})
    assert output.dtype == torch.bfloat16
    assert ((output.float() - reference).abs().max() / reference.abs().max()).item() < 0.03  # bf16: 2**-8 per op


@pytest.mark.parametrize("qtype, weight_bound, output_bound", [("Q8_0", 0.007, 0.03), ("Q4_0", 0.1, 0.3),
                                                                ("Q4_K", 0.09, 0.3)])
def test_quantization_error_against_the_original_weights(files, original, qtype, weight_bound, output_bound, capsys):
    """Relative RMS error of the quantized matrices and of the output vs the float32 original (Gaussian
    weights: uniform rounding of a block scaled to its max ~2.1 sigma gives ~0.5% for 8 bits, ~7.6% for 4)."""
    path, types = files[qtype]
    exact = exact_weights(path)
    reference = {convert_official_key(k): v for k, v in official_state_dict(original).items()}
    quantized = [convert_official_key(k) for k, t in types.items() if t == qtype]
    num = sum(((exact[n] - reference[n]) ** 2).sum() for n in quantized)
    den = sum((reference[n] ** 2).sum() for n in quantized)
    weight_error = float((num / den) ** 0.5)
    data = inputs()
    out, ref = forward(load(path), data), forward(original, data)
    output_error = float((out - ref).norm() / ref.norm())
    with capsys.disabled():
        print(f"\n{qtype}: {len(quantized)} matrices, weight rel. RMS error {weight_error:.4f}, "
              f"output rel. error {output_error:.4f} (tiny random model)")
    assert weight_error < weight_bound and output_error < output_bound


# ----------------------------------------------------------------------------------------- errors
def test_wrong_architecture(original, tmp_path):
    path = tmp_path / "flux.gguf"
    write_community_gguf(original, path, "Q8_0", arch="flux")
    with pytest.raises(SteadyDancerCheckpointError, match="architecture 'flux'.*'wan'"):
        load(path)


def test_file_without_the_5d_tensors_says_how_such_files_are_fixed(original, tmp_path):
    path = tmp_path / "no5d.gguf"
    write_community_gguf(original, path, "Q8_0", fix_5d=False)
    with pytest.raises(SteadyDancerCheckpointError) as info:
        load(path)
    message = str(info.value)
    assert "9 of its 9 Conv3d (5-D) weights are missing" in message
    assert all(key in message for key in FIVE_D_KEYS)
    assert "fix_5d_tensors" in message
    assert isinstance(info.value, SteadyDancerInputError)  # shown to the user as it is


def test_missing_tensor_and_plain_wan_file(original, tmp_path):
    import gguf

    full = tmp_path / "full.gguf"
    write_community_gguf(original, full, "Q8_0")
    reader = read_gguf_file(full)

    def rewrite(path, keep):
        writer = gguf.GGUFWriter(path=None, arch="wan")
        for key, (data, qtype, shape) in reader.tensors.items():
            if keep(key):
                writer.add_tensor(key, np.asarray(data), raw_dtype=qtype)
        writer.write_header_to_file(path=str(path))
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    rewrite(tmp_path / "missing.gguf", lambda k: k != "blocks.1.ffn.2.weight")
    with pytest.raises(SteadyDancerCheckpointError, match=r"1 missing keys: blocks\.1\.ffn\.net\.2\.weight"):
        load(tmp_path / "missing.gguf")
    rewrite(tmp_path / "wan.gguf", lambda k: not k.startswith(("condition_embedding_", "patch_embedding_fuse",
                                                               "patch_embedding_ref_c")))
    with pytest.raises(SteadyDancerCheckpointError, match="Wan2.1 transformer checkpoint without SteadyDancer"):
        load(tmp_path / "wan.gguf")


def test_not_a_gguf_file_and_mismatched_dtypes(tmp_path, files):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(SteadyDancerCheckpointError, match="not a readable GGUF file"):
        load(bad)
    with pytest.raises(SteadyDancerCheckpointError, match="No such GGUF file"):
        load(tmp_path / "absent.gguf")
    with pytest.raises(SteadyDancerCheckpointError, match="torch_dtype.*compute_dtype"):
        SteadyDancerTransformer3DModel.from_single_file(str(files["Q8_0"][0]), torch_dtype=torch.float16,
                                                        quantization_config=gguf_config(torch.bfloat16))


def test_prefix_is_stripped_and_config_is_inferred_without_metadata(original, tmp_path):
    path = tmp_path / "prefixed.gguf"
    write_community_gguf(original, path, "Q8_0", prefix="model.diffusion_model.", store_config=False)
    model = load(path)
    # Without the config string text_len (not in the weights) takes Wan's 512; everything else is read off.
    assert model.config.text_len == 512
    assert model.config.ffn_dim == GGUF_TEST_CONFIG["ffn_dim"] and model.config.num_layers == 2
    model = SteadyDancerTransformer3DModel.from_single_file(str(path), quantization_config=gguf_config(),
                                                            config=dict(original.config))
    assert model.config.text_len == GGUF_TEST_CONFIG["text_len"]


# ----------------------------------------------------------------------------------------- diffusers internals
def test_pinned_diffusers_gguf_internals():
    """The loader calls diffusers' GGUF pieces directly (outside its single-file registry): pin them."""
    import inspect

    import gguf
    from diffusers.models.model_loading_utils import load_model_dict_into_meta
    from diffusers.quantizers import DiffusersAutoQuantizer
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter, dequantize_gguf_tensor

    parameters = inspect.signature(load_model_dict_into_meta).parameters
    assert {"dtype", "hf_quantizer", "keep_in_fp32_modules", "device_map", "unexpected_keys"} <= set(parameters)
    quantizer = DiffusersAutoQuantizer.from_config(gguf_config(torch.bfloat16))
    assert type(quantizer).__name__ == "GGUFQuantizer" and quantizer.pre_quantized

    # preprocess_model swaps an nn.Linear for a GGUFLinear only when its weight arrives as a GGUFParameter.
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.packed, self.plain = torch.nn.Linear(32, 4), torch.nn.Linear(32, 4)

    data = gguf.quants.quantize(np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32),
                                gguf.GGMLQuantizationType.Q8_0)
    state = {"packed.weight": GGUFParameter(torch.from_numpy(data), quant_type=gguf.GGMLQuantizationType.Q8_0),
             "plain.weight": torch.zeros(4, 32)}
    module = Two()
    quantizer.preprocess_model(model=module, device_map=None, state_dict=state, keep_in_fp32_modules=[])
    assert isinstance(module.packed, GGUFLinear) and type(module.plain) is torch.nn.Linear
    assert module.packed.compute_dtype == torch.bfloat16
    # dequantize_gguf_tensor decodes through float16 (the tolerance of the forward tests rests on it).
    assert dequantize_gguf_tensor(state["packed.weight"]).dtype == torch.float16
    assert hasattr(GGUFLinear, "forward_native")


def test_tensor_stored_in_rows_of_256_with_its_original_shape(original, tmp_path):
    """ComfyUI-GGUF's converter may store a matrix as rows of 256 values with
    ``comfy.gguf.orig_shape.<key>``: it loads in its real shape (dequantized at load: its packed rows are
    not the layer's rows)."""
    import gguf

    from steadydancer.models.gguf import ORIG_SHAPE_PREFIX

    full = tmp_path / "full.gguf"
    write_community_gguf(original, full, "Q8_0")
    reader = read_gguf_file(full)
    key = "text_embedding.0.weight"  # [256, 16]: rows of 16 do not split into 32-value blocks
    values = official_state_dict(original)[key].numpy()
    writer = gguf.GGUFWriter(path=None, arch="wan")
    writer.add_string("config", reader.metadata["config"])
    for name, (data, qtype, _) in reader.tensors.items():
        if name == key:
            writer.add_array(ORIG_SHAPE_PREFIX + key, list(values.shape))
            writer.add_tensor(key, gguf.quants.quantize(values.reshape(-1, 256), gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, np.asarray(data), raw_dtype=qtype)
    path = tmp_path / "reshaped.gguf"
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    weight = load(path).condition_embedder.text_embedder.linear_1.weight
    assert weight.shape == (256, 16) and weight.dtype == torch.float32
    torch.testing.assert_close(weight, exact_weights(path)["condition_embedder.text_embedder.linear_1.weight"])
    assert (weight - torch.from_numpy(values)).abs().max() < 0.01 * np.abs(values).max()
