"""Tiny random checkpoints of the real architectures, with their real processor classes.

Each builder writes what ``save_pretrained`` writes for the hub models (config, weights,
tokenizer, image processor or processor) into a directory that ``model=hf model.path=<dir>``
loads offline. The tokenizer is a byte-level BPE without merges, built locally: every text is
encodable and the family's special tokens are single tokens, as in the real tokenizers.

Qwen2-VL: its processor class needs torchvision (the video processor imports it), which has
no wheel beside our CPU torch, so the directory holds the image processor (PIL backend) and the
tokenizer as the hub does, and tests load it with ``model.processor=image_only``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

IMAGE = 32  # image side the processors resize to
PATCH = 8
TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
TEXT_HEADS = {"num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}


def byte_tokenizer(specials: list[str], **named: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with no merges (one token per byte) plus ``specials``."""
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def _finish(model, tokenizer, directory: Path) -> Path:
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.do_sample = (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        False,
    )
    model.save_pretrained(directory)
    return directory


def tiny_llava(directory: Path) -> Path:
    """LLaVA (CLIP tower, MLP projector, LLaMA) and ``LlavaProcessor``."""
    tok = byte_tokenizer(
        ["<pad>", "<s>", "</s>", "<image>"],
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        image_token="<image>",
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    text = LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **TEXT, **TEXT_HEADS)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    size = {"height": IMAGE, "width": IMAGE}
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": IMAGE}, crop_size=size),
        tokenizer=tok,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(directory)
    return _finish(LlavaForConditionalGeneration(config), tok, directory)


def tiny_idefics3(directory: Path) -> Path:
    """Idefics3 / SmolVLM (SigLIP-style tower, pixel-shuffle connector, LLaMA) and its processor."""
    grid = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = byte_tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>"]
        + ["<image>", "<global-img>", *grid],
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
    )
    text = {"model_type": "llama", "vocab_size": len(tok), **TEXT, **TEXT_HEADS}
    config = Idefics3Config(
        text_config={**text, "pad_token_id": tok.pad_token_id},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "patch_size": PATCH,
            "image_size": IMAGE,
        },
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE},
        max_image_size={"longest_edge": IMAGE},
    )
    tokens = (IMAGE // PATCH) ** 2 // 4  # pixel shuffle by scale_factor 2
    Idefics3Processor(image_processor, tok, image_seq_len=tokens).save_pretrained(directory)
    return _finish(Idefics3ForConditionalGeneration(config), tok, directory)


def tiny_qwen2_vl(directory: Path) -> Path:
    """Qwen2-VL (ViT with 2x2 patch merging, Qwen2 with M-RoPE), image processor + tokenizer."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>"]
    specials += ["<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = byte_tokenizer(specials, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    ids = {s: tok.convert_tokens_to_ids(s) for s in specials}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            "rope_parameters": rope,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": None,
            **TEXT,
            **TEXT_HEADS,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": TEXT["hidden_size"],
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": PATCH,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    pixels = IMAGE * IMAGE  # min = max: every image becomes one 4x4-patch grid (4 tokens)
    Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=pixels, patch_size=PATCH, merge_size=2
    ).save_pretrained(directory)
    tok.save_pretrained(directory)
    return _finish(Qwen2VLForConditionalGeneration(config), tok, directory)


BUILDERS = {"llava": tiny_llava, "idefics3": tiny_idefics3, "qwen2_vl": tiny_qwen2_vl}
