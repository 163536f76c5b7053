"""The official checkpoint folder's encoders, loaded as-is into the standard library classes.

The official SteadyDancer folder (``MCG-NJU/SteadyDancer-14B``, the Wan2.1-I2V-14B file names) holds
the encoders as plain PyTorch ``.pth`` state dicts with the original Wan key names:

==================================================== ==================================================
file / folder                                         becomes
==================================================== ==================================================
``models_t5_umt5-xxl-enc-bf16.pth``                   transformers ``UMT5EncoderModel``
``google/umt5-xxl/``                                  its tokenizer (``AutoTokenizer``)
``models_clip_open-clip-xlm-roberta-large-vit-huge-   transformers ``CLIPVisionModel`` (vision tower
14.pth``                                              only; the text tower is skipped) + a
                                                      ``CLIPImageProcessor`` with the official settings
``Wan2.1_VAE.pth``                                    diffusers ``AutoencoderKLWan`` (diffusers' own
                                                      ``convert_wan_vae_to_diffusers`` names)
==================================================== ==================================================

Each conversion is a key table (model name -> official key, optionally a row block of a fused
tensor) walked in one loop, like the transformer's (:mod:`steadydancer.models.loading`). The model
is built on the meta device, the whole table is checked against the file's keys and shapes before
any tensor is read (every missing / unexpected key and shape mismatch is reported at once, naming
the file), then tensors are converted one at a time to the requested dtype and assigned. The
``.pth`` files are memory-mapped (``torch.load(mmap=True, weights_only=True)``; zipfile format, what
``torch.save`` writes), so the peak RAM is about the model in the requested dtype plus one tensor;
a tensor already in the requested dtype is used without a copy.

Model sizes come from the tensor shapes (``d_model``, ``d_kv``, heads, ``d_ff``, vocabulary and
layers of the T5; width, patch, image size, layers and MLP width of the CLIP tower; base width and
latent channels of the VAE). The only value the shapes do not tell is the CLIP tower's head count:
the official code hard-codes it (16 heads for the 1280-wide ViT-H/14); for other widths pass
``clip_heads``.

Key mapping (``N`` a block index)::

    T5  token_embedding                -> shared (tied with encoder.embed_tokens)
        blocks.N.norm1                 -> encoder.block.N.layer.0.layer_norm
        blocks.N.attn.q / k / v / o    -> encoder.block.N.layer.0.SelfAttention.q / k / v / o
        blocks.N.pos_embedding.embedding -> encoder.block.N.layer.0.SelfAttention.relative_attention_bias
        blocks.N.norm2                 -> encoder.block.N.layer.1.layer_norm
        blocks.N.ffn.gate.0 / fc1 / fc2 -> encoder.block.N.layer.1.DenseReluDense.wi_0 / wi_1 / wo
        norm                           -> encoder.final_layer_norm
    CLIP visual.cls_embedding [1,1,D]  -> embeddings.class_embedding [D]
        visual.pos_embedding [1,P,D]   -> embeddings.position_embedding [P,D]
        visual.patch_embedding         -> embeddings.patch_embedding
        visual.pre_norm / post_norm    -> pre_layrnorm / post_layernorm
        visual.transformer.N.attn.to_qkv (rows 0:D, D:2D, 2D:3D) -> encoder.layers.N.self_attn.q_proj / k_proj / v_proj
        visual.transformer.N.attn.proj -> encoder.layers.N.self_attn.out_proj
        visual.transformer.N.norm1 / norm2 -> encoder.layers.N.layer_norm1 / layer_norm2
        visual.transformer.N.mlp.0 / mlp.2 -> encoder.layers.N.mlp.fc1 / fc2
        (skipped: textual.*, visual.head, log_scale)
    VAE diffusers' convert_wan_vae_to_diffusers (a pure renaming)
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from ..errors import MissingWeightsError
from ..weights import (  # noqa: F401  (the file names live with the torch-free weights lookup)
    OFFICIAL_CLIP_FILE,
    OFFICIAL_ENCODER_FILES,
    OFFICIAL_T5_FILE,
    OFFICIAL_T5_TOKENIZER,
    OFFICIAL_VAE_FILE,
    missing_official_encoder_files,
)

__all__ = [
    "OFFICIAL_CLIP_FILE",
    "OFFICIAL_ENCODER_FILES",
    "OFFICIAL_T5_FILE",
    "OFFICIAL_T5_TOKENIZER",
    "OFFICIAL_VAE_FILE",
    "OfficialTensor",
    "clip_key_table",
    "clip_vision_config",
    "fill_from_table",
    "has_official_encoders",
    "load_official_encoders",
    "load_official_image_encoder",
    "load_official_text_encoder",
    "load_official_tokenizer",
    "load_official_vae",
    "load_state_dict_mmap",
    "missing_official_encoder_files",
    "official_image_processor",
    "t5_config",
    "t5_key_table",
    "vae_config",
    "vae_key_table",
]

#: The official T5 (``umt5_xxl``): relative-position max distance and norm epsilon (not in the weights).
T5_MAX_DISTANCE = 128
T5_EPS = 1e-6
#: The official CLIP vision tower: exact GELU, LayerNorm epsilon 1e-5, and its hard-coded head count
#: per width (ViT-H/14: 1280 wide, 16 heads of 80).
CLIP_ACTIVATION = "gelu"
CLIP_EPS = 1e-5
CLIP_HEADS_BY_WIDTH = {1280: 16}
#: The official CLIP preprocessing: the whole frame resized (torch bicubic, no crop) to the input
#: size, then normalised with the OpenAI CLIP mean/std.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: How many names an error lists per category.
MAX_LISTED = 12


# ------------------------------------------------------------------------------------------- files
def has_official_encoders(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds every official encoder file (T5, its tokenizer, CLIP, VAE)."""
    return not missing_official_encoder_files(folder)


def load_state_dict_mmap(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of an official ``.pth`` file, memory-mapped (nothing is read until a tensor is
    used); files in the legacy (non-zipfile) format are read whole. Raises
    :class:`~steadydancer.errors.MissingWeightsError` naming the file when it is absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{path.name} is missing from {path.parent}: download it with the checkpoint.")
    try:
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as error:
            if "zipfile" not in str(error) and "mmap" not in str(error):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except Exception as error:  # truncated download, wrong file, HTML error page ...
        raise MissingWeightsError(
            f"{path} could not be read as a PyTorch checkpoint ({type(error).__name__}: {error}). "
            "The download may be incomplete: download the file again."
        ) from error
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MissingWeightsError(f"{path} is not a state dict of tensors: is it the right file?")
    return dict(state)


# ------------------------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class OfficialTensor:
    """Where one model tensor comes from: an official key, optionally rows ``rows[0]:rows[1]`` of it
    (the fused q/k/v of CLIP). The result is reshaped to the model's shape when only singleton axes
    differ (CLIP's ``[1, 1, D]`` class embedding)."""

    key: str
    rows: tuple[int, int] | None = None


def _count_blocks(keys, pattern: str) -> int:
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for key in keys if (m := regex.match(key))}
    return max(indices) + 1 if indices else 0


def _shape(state: Mapping[str, torch.Tensor], key: str, file_name: str) -> tuple[int, ...]:
    if key not in state:
        raise MissingWeightsError(
            f"{file_name} has no tensor {key!r}: it is not the expected official checkpoint (wrong or damaged file)."
        )
    return tuple(state[key].shape)


def t5_config(state: Mapping[str, torch.Tensor], file_name: str = OFFICIAL_T5_FILE):
    """``UMT5Config`` of an official T5 encoder state dict, from its tensor shapes."""
    from transformers import UMT5Config

    vocab, d_model = _shape(state, "token_embedding.weight", file_name)
    inner, _ = _shape(state, "blocks.0.attn.q.weight", file_name)
    buckets, heads = _shape(state, "blocks.0.pos_embedding.embedding.weight", file_name)
    d_ff, _ = _shape(state, "blocks.0.ffn.fc1.weight", file_name)
    layers = _count_blocks(state, r"^blocks\.(\d+)\.")
    if inner % heads:
        raise MissingWeightsError(f"{file_name}: attention width {inner} is not a multiple of {heads} heads.")
    return UMT5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=inner // heads,
        d_ff=d_ff,
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=T5_MAX_DISTANCE,
        feed_forward_proj="gated-gelu",  # tanh-approximated GELU gate, as the official T5
        layer_norm_epsilon=T5_EPS,
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def t5_key_table(num_layers: int) -> dict[str, OfficialTensor]:
    """``UMT5EncoderModel`` parameter name -> official T5 key."""
    table = {"shared.weight": OfficialTensor("token_embedding.weight"),
             "encoder.final_layer_norm.weight": OfficialTensor("norm.weight")}
    for n in range(num_layers):
        src, dst = f"blocks.{n}.", f"encoder.block.{n}.layer."
        for proj in "qkvo":
            table[f"{dst}0.SelfAttention.{proj}.weight"] = OfficialTensor(f"{src}attn.{proj}.weight")
        table[f"{dst}0.SelfAttention.relative_attention_bias.weight"] = OfficialTensor(
            f"{src}pos_embedding.embedding.weight")
        table[f"{dst}0.layer_norm.weight"] = OfficialTensor(f"{src}norm1.weight")
        table[f"{dst}1.layer_norm.weight"] = OfficialTensor(f"{src}norm2.weight")
        table[f"{dst}1.DenseReluDense.wi_0.weight"] = OfficialTensor(f"{src}ffn.gate.0.weight")
        table[f"{dst}1.DenseReluDense.wi_1.weight"] = OfficialTensor(f"{src}ffn.fc1.weight")
        table[f"{dst}1.DenseReluDense.wo.weight"] = OfficialTensor(f"{src}ffn.fc2.weight")
    return table


def clip_vision_config(state: Mapping[str, torch.Tensor], num_heads: int | None = None,
                       file_name: str = OFFICIAL_CLIP_FILE):
    """``CLIPVisionConfig`` of the official CLIP's vision tower, from its tensor shapes.
    ``num_heads`` defaults to the official value for the width (16 for the 1280-wide ViT-H/14)."""
    from transformers import CLIPVisionConfig

    width, channels, patch, _ = _shape(state, "visual.patch_embedding.weight", file_name)
    _, positions, _ = _shape(state, "visual.pos_embedding", file_name)
    mlp, _ = _shape(state, "visual.transformer.0.mlp.0.weight", file_name)
    projection = _shape(state, "visual.head", file_name)[1] if "visual.head" in state else width
    layers = _count_blocks(state, r"^visual\.transformer\.(\d+)\.")
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise MissingWeightsError(f"{file_name}: {positions} positions is not a square grid plus a class token.")
    if num_heads is None:
        num_heads = CLIP_HEADS_BY_WIDTH.get(width)
        if num_heads is None:
            raise MissingWeightsError(
                f"{file_name}: a {width}-wide CLIP vision tower is not the official ViT-H/14 (1280 wide, 16 heads); "
                "its head count is not stored in the weights: pass clip_heads."
            )
    if width % num_heads:
        raise MissingWeightsError(f"{file_name}: width {width} is not a multiple of clip_heads={num_heads}.")
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=mlp,
        projection_dim=projection,
        num_hidden_layers=layers,
        num_attention_heads=num_heads,
        num_channels=channels,
        image_size=grid * patch,
        patch_size=patch,
        hidden_act=CLIP_ACTIVATION,
        layer_norm_eps=CLIP_EPS,
    )


def clip_key_table(num_layers: int, width: int) -> dict[str, OfficialTensor]:
    """``CLIPVisionModel`` parameter name -> official CLIP key (vision tower)."""
    table = {
        "embeddings.class_embedding": OfficialTensor("visual.cls_embedding"),
        "embeddings.patch_embedding.weight": OfficialTensor("visual.patch_embedding.weight"),
        "embeddings.position_embedding.weight": OfficialTensor("visual.pos_embedding"),
    }
    for hf, official in (("pre_layrnorm", "visual.pre_norm"), ("post_layernorm", "visual.post_norm")):
        for leaf in ("weight", "bias"):
            table[f"{hf}.{leaf}"] = OfficialTensor(f"{official}.{leaf}")
    for n in range(num_layers):
        src, dst = f"visual.transformer.{n}.", f"encoder.layers.{n}."
        for leaf in ("weight", "bias"):
            for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                table[f"{dst}self_attn.{proj}.{leaf}"] = OfficialTensor(f"{src}attn.to_qkv.{leaf}",
                                                                       (i * width, (i + 1) * width))
            for hf, official in (("self_attn.out_proj", "attn.proj"), ("layer_norm1", "norm1"),
                                 ("layer_norm2", "norm2"), ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.2")):
                table[f"{dst}{hf}.{leaf}"] = OfficialTensor(f"{src}{official}.{leaf}")
    return table


#: Official CLIP keys no part of the vision tower uses.
_CLIP_UNUSED = re.compile(r"^(textual\.|visual\.head$|log_scale$)")


def vae_config(state: Mapping[str, torch.Tensor], file_name: str = OFFICIAL_VAE_FILE) -> dict:
    """``AutoencoderKLWan`` constructor values of an official Wan2.1 VAE state dict: the base width
    and the latent channels from the shapes, the rest the Wan2.1 values (any other layout fails the
    key / shape check with the list of differences)."""
    base_dim = _shape(state, "encoder.conv1.weight", file_name)[0]
    z_dim = _shape(state, "conv1.weight", file_name)[0] // 2
    return {"base_dim": base_dim, "z_dim": z_dim}


def vae_key_table(keys) -> dict[str, OfficialTensor]:
    """``AutoencoderKLWan`` parameter name -> official VAE key, through diffusers' own
    ``convert_wan_vae_to_diffusers`` (applied to the key names only: it renames, never computes)."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    renamed = convert_wan_vae_to_diffusers({key: key for key in keys})
    return {new: OfficialTensor(old) for new, old in renamed.items()}


# ------------------------------------------------------------------------------------------- filling
def _format(title: str, items: list[str]) -> str:
    items = sorted(items)
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {title}: {', '.join(items[:MAX_LISTED])}{more}"


def _source_shape(state, source: OfficialTensor) -> tuple[int, ...]:
    shape = tuple(state[source.key].shape)
    if source.rows is not None:
        start, stop = source.rows
        shape = (min(stop, shape[0]) - start,) + shape[1:]
    return shape


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    else:
        module._buffers[leaf] = tensor


def fill_from_table(
    model: nn.Module,
    table: Mapping[str, OfficialTensor],
    state: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    file_name: str,
    *,
    ignore: re.Pattern | None = None,
    aliases: Mapping[str, str] | None = None,
    keep_in_fp32: tuple[str, ...] = (),
) -> nn.Module:
    """Fill ``model`` (parameters on the meta device) from ``state`` following ``table``.

    1. Check: every model tensor has a table entry whose source exists with the same shape (up to
       singleton axes), and every file key is used or matches ``ignore``; all problems are reported
       at once in a :class:`~steadydancer.errors.MissingWeightsError` naming ``file_name``.
    2. Fill: one tensor at a time, sliced, reshaped, converted to ``dtype`` (float tensors; modules
       named in ``keep_in_fp32`` stay float32) and assigned. ``aliases`` (model name -> model name)
       share the parameter of another name (tied embeddings).
    """
    aliases = dict(aliases or {})
    expected = {name: tensor for name, tensor in model.state_dict(keep_vars=True).items() if name not in aliases}
    persistent_buffers = {name for name, _ in model.named_buffers()}
    missing, mismatched = [], []
    for name, target in expected.items():
        if name in persistent_buffers and name not in table:
            continue  # real buffers built by the constructor (none are saved by the official code)
        source = table.get(name)
        if source is None or source.key not in state:
            missing.append(f"{source.key if source else '?'} (for {name})")
            continue
        shape = _source_shape(state, source)
        if shape != tuple(target.shape) and _squeezed(shape) != _squeezed(target.shape):
            mismatched.append(f"{source.key} {list(shape)} (model {list(target.shape)})")
    used = {source.key for name, source in table.items() if name in expected}
    unexpected = [key for key in state if key not in used and not (ignore is not None and ignore.search(key))]
    if missing or mismatched or unexpected:
        problems = [_format(title, items) for title, items in (("missing tensors", missing),
                    ("shape mismatches", mismatched), ("unexpected tensors", unexpected)) if items]
        raise MissingWeightsError(
            f"{file_name} is not the checkpoint expected here (wrong or damaged file): " + "; ".join(problems) + "."
        )

    for name, target in expected.items():
        source = table.get(name)
        if source is None:
            continue
        tensor = state[source.key]
        if source.rows is not None:
            tensor = tensor[source.rows[0] : source.rows[1]]
        if tuple(tensor.shape) != tuple(target.shape):
            tensor = tensor.reshape(target.shape)
        target_dtype = dtype
        if not tensor.is_floating_point():
            target_dtype = tensor.dtype
        elif keep_in_fp32 and any(module in name.split(".") for module in keep_in_fp32):
            target_dtype = torch.float32
        _assign(model, name, tensor.to(dtype=target_dtype).contiguous())
        del tensor
    for alias, name in aliases.items():
        module_name, _, leaf = alias.rpartition(".")
        owner_name, _, owner_leaf = name.rpartition(".")
        model.get_submodule(module_name)._parameters[leaf] = model.get_submodule(owner_name)._parameters[owner_leaf]
    still_meta = [name for name, p in model.named_parameters() if p.is_meta]
    if still_meta:
        raise RuntimeError(_format("parameters left on the meta device", still_meta))
    return model.eval()


def _empty(build):
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters on the meta device, buffers real
        return build()


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."))
    return dtype or torch.float32


# ------------------------------------------------------------------------------------------- loaders
def load_official_text_encoder(path: str | os.PathLike, dtype: torch.dtype = torch.bfloat16):
    """``UMT5EncoderModel`` from the official ``models_t5_umt5-xxl-enc-bf16.pth`` (a folder holding it
    or the file), in ``dtype`` (the official code runs it in bfloat16; float16 keeps the ``wo``
    projections in float32, as transformers does)."""
    from transformers import UMT5EncoderModel

    path = Path(path)
    path = path / OFFICIAL_T5_FILE if path.is_dir() else path
    dtype = _dtype(dtype)
    state = load_state_dict_mmap(path)
    config = t5_config(state, path.name)
    model = _empty(lambda: UMT5EncoderModel(config))
    keep = tuple(UMT5EncoderModel._keep_in_fp32_modules or ()) if dtype == torch.float16 else ()
    fill_from_table(model, t5_key_table(config.num_layers), state, dtype, path.name,
                    aliases={"encoder.embed_tokens.weight": "shared.weight"}, keep_in_fp32=keep)
    model.config.dtype = dtype
    return model


def load_official_image_encoder(path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                                clip_heads: int | None = None):
    """``CLIPVisionModel`` (vision tower) from the official open-clip XLM-RoBERTa ViT-H/14 ``.pth``
    (a folder holding it or the file). ``clip_heads``: see :func:`clip_vision_config`."""
    from transformers import CLIPVisionModel

    path = Path(path)
    path = path / OFFICIAL_CLIP_FILE if path.is_dir() else path
    dtype = _dtype(dtype)
    state = load_state_dict_mmap(path)
    config = clip_vision_config(state, clip_heads, path.name)
    model = _empty(lambda: CLIPVisionModel(config))
    table = clip_key_table(config.num_hidden_layers, config.hidden_size)
    fill_from_table(model, table, state, dtype, path.name, ignore=_CLIP_UNUSED)
    model.config.dtype = dtype
    return model


def official_image_processor(image_size: int = 224):
    """A ``CLIPImageProcessor`` with the official CLIP preprocessing values: the whole frame resized
    (bicubic, aspect not kept, no centre crop) to ``image_size``, OpenAI CLIP mean/std. The pipeline
    resizes with torch bicubic itself (:meth:`SteadyDancerPipeline.encode_image`) and takes the
    mean/std from here."""
    try:  # transformers >= 5: the PIL backend by name (the default one wants torchvision)
        from transformers import CLIPImageProcessorPil as CLIPImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=3,  # bicubic
        do_center_crop=False,
        do_rescale=True,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def load_official_vae(path: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """``AutoencoderKLWan`` from the official ``Wan2.1_VAE.pth`` (a folder holding it or the file);
    latents normalised with diffusers' Wan constants (the official wrapper's 16 mean/std values)."""
    from diffusers import AutoencoderKLWan

    path = Path(path)
    path = path / OFFICIAL_VAE_FILE if path.is_dir() else path
    dtype = _dtype(dtype)
    state = load_state_dict_mmap(path)
    model = _empty(lambda: AutoencoderKLWan(**vae_config(state, path.name)))
    fill_from_table(model, vae_key_table(state.keys()), state, dtype, path.name)
    model.register_to_config(_name_or_path=str(path))
    return model


def load_official_tokenizer(folder: str | os.PathLike):
    """The UMT5 tokenizer of the official folder (``google/umt5-xxl/``), or of that folder itself."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / "tokenizer_config.json").is_file() and (folder / OFFICIAL_T5_TOKENIZER).is_dir():
        folder = folder / OFFICIAL_T5_TOKENIZER
    if not folder.is_dir():
        raise MissingWeightsError(f"The tokenizer folder {folder} is missing: download {OFFICIAL_T5_TOKENIZER}/.")
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as error:
        raise MissingWeightsError(f"The tokenizer in {folder} could not be loaded: {error}") from error


def load_official_encoders(
    folder: str | os.PathLike,
    text_encoder_dtype: torch.dtype = torch.bfloat16,
    image_encoder_dtype: torch.dtype = torch.float32,
    vae_dtype: torch.dtype = torch.float32,
    clip_heads: int | None = None,
) -> dict:
    """Every encoder of an official checkpoint folder, as ``SteadyDancerPipeline`` components:
    ``tokenizer``, ``text_encoder``, ``image_encoder``, ``image_processor``, ``vae``. Raises
    :class:`~steadydancer.errors.MissingWeightsError` naming every missing file first."""
    folder = Path(folder)
    missing = missing_official_encoder_files(folder)
    if missing:
        raise MissingWeightsError(f"{folder} lacks the official encoder file(s) {', '.join(missing)}.")
    image_encoder = load_official_image_encoder(folder, image_encoder_dtype, clip_heads)
    return {
        "tokenizer": load_official_tokenizer(folder),
        "text_encoder": load_official_text_encoder(folder, text_encoder_dtype),
        "image_encoder": image_encoder,
        "image_processor": official_image_processor(image_encoder.config.image_size),
        "vae": load_official_vae(folder, vae_dtype),
    }
