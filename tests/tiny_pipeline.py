"""Build a tiny but complete SteadyDancerPipeline (random weights, no downloads) and save it.

Every component is the real class with a tiny configuration: ``AutoencoderKLWan``,
``UMT5EncoderModel`` with a word-level tokenizer built in code, ``CLIPVisionModel`` +
``CLIPImageProcessor``, ``SteadyDancerTransformer3DModel`` and the flow ``UniPCMultistepScheduler``.
The folder is written with ``save_pretrained`` so tests exercise ``from_pretrained`` exactly as a
real diffusers-format checkpoint would be loaded. Used by the pipeline, CLI and app tests::

    from tests.tiny_pipeline import build_tiny_pipeline
    path = build_tiny_pipeline(tmp_path / "tiny")          # -> tmp_path / "tiny"
    pipe = SteadyDancerPipeline.from_pretrained(path)

Sizes: 32 x 32 px frames -> 4 x 4 latents; text_dim 16, text_len 16; CLIP 2 layers on 32 x 32
inputs (17 tokens, width 1280 as the official format requires); transformer dim 24 (2 heads of
12), 2 blocks. The transformer also round-trips through the official checkpoint format
(``steadydancer.models.loading.save_official_checkpoint``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

TINY_TEXT_DIM = 16
TINY_TEXT_LEN = 16
#: The official checkpoint format hard-codes the CLIP width (1280) and the alignment unit (128 wide,
#: 8 heads), so the tiny model keeps those to round-trip through it; everything else is tiny.
TINY_IMAGE_DIM = 1280
TINY_CLIP_SIZE = 32
#: CLIP tokens of a 32 x 32 image with the tiny patch size: 16 patches + the class token.
TINY_CLIP_TOKENS = 17
#: A tiny vocabulary: enough words for test prompts; anything else maps to <unk>.
TINY_WORDS = (
    "a person dancing in the street on stage with red blue green shirt and hat jumps turns waves "
    "arms legs camera static bright dark woman man child smiling walking slowly fast"
).split()


def build_tiny_tokenizer():
    """A word-level tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2) that appends ``</s>`` like T5."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TINY_WORDS:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=TINY_TEXT_LEN,
    )


def build_tiny_components(seed: int = 0) -> dict:
    """The tiny components (random weights from ``seed``), not saved."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel
    from steadydancer.scheduling import build_scheduler

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=TINY_TEXT_DIM,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=TINY_IMAGE_DIM,
            intermediate_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=TINY_CLIP_SIZE,
            patch_size=8,
        )
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_CLIP_SIZE}, crop_size={"height": TINY_CLIP_SIZE, "width": TINY_CLIP_SIZE}
    )
    transformer = SteadyDancerTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=12,
        text_dim=TINY_TEXT_DIM,
        text_len=TINY_TEXT_LEN,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        image_dim=TINY_IMAGE_DIM,
    )
    # The reference constructor zeroes the head; random weights everywhere make outputs informative.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed + 1)
        for name, param in transformer.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.05 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder.eval(),
        "vae": vae.eval(),
        "scheduler": build_scheduler("unipc", 5.0),
        "image_encoder": image_encoder.eval(),
        "transformer": transformer.eval(),
        "image_processor": image_processor,
    }


def build_tiny_pipeline(path: str | os.PathLike, seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it to ``path`` (created); returns ``path``.

    Load it back with ``steadydancer.SteadyDancerPipeline.from_pretrained(path)`` (or
    ``steadydancer.generation.load_pipeline(path, preset=..., device="cpu")``).
    """
    from steadydancer.pipeline import SteadyDancerPipeline

    path = Path(path)
    pipe = SteadyDancerPipeline(**build_tiny_components(seed))
    pipe.save_pretrained(path)
    return path


def tiny_inputs(num_frames: int = 5, size: tuple[int, int] = (32, 32), seed: int = 0):
    """(reference image, positive pose frames, negative pose frames) as uint8 arrays H x W x 3."""
    import numpy as np

    rng = np.random.default_rng(seed)
    height, width = size
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    positive = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(num_frames)]
    negative = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(num_frames)]
    return image, positive, negative


def tiny_transformer_inputs(frames: int, height: int, width: int, batch: int = 1, text_tokens: int = 11,
                            seed: int | None = None) -> dict:
    """Random forward arguments of the tiny transformer for a latent of ``frames x height x width``."""
    if seed is not None:
        torch.manual_seed(seed)
    b, f, h, w = batch, frames, height, width
    return dict(
        hidden_states=torch.randn(b, 16, f, h, w), timestep=torch.tensor([500] * b),
        encoder_hidden_states=torch.randn(b, text_tokens, TINY_TEXT_DIM),
        encoder_hidden_states_image=torch.randn(b, TINY_CLIP_TOKENS, 1280),
        encoder_hidden_states_image_pose=torch.randn(b, TINY_CLIP_TOKENS, 1280),
        image_condition=torch.randn(b, 20, f, h, w), pose_latents=torch.randn(b, 16, f, h, w),
        ref_image_latents=torch.randn(b, 36, 1, h, w), ref_pose_latents=torch.randn(b, 36, 1, h, w),
    )


_SHARED_PATH: Path | None = None


def shared_tiny_pipeline_path() -> Path:
    """One tiny pipeline per test process (built on first use in a temporary folder, removed at
    exit): the pipeline test modules share it instead of each building their own."""
    global _SHARED_PATH
    if _SHARED_PATH is None or not (_SHARED_PATH / "model_index.json").is_file():
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="steadydancer-tiny-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SHARED_PATH = build_tiny_pipeline(root / "pipeline")
    return _SHARED_PATH


def load_tiny_pipeline(path: str | os.PathLike | None = None, **kwargs):
    """``SteadyDancerPipeline.from_pretrained`` of a tiny folder (default: the shared one), quiet."""
    from steadydancer.pipeline import SteadyDancerPipeline

    pipe = SteadyDancerPipeline.from_pretrained(path or shared_tiny_pipeline_path(), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe
