"""Models room: the tiny LLaVA (built, pretrained and cached locally), Hugging Face engines,
word-level tokeniser and prompt templates."""

from fedmllm.models.engine import Engine, build_tiny_vlm
from fedmllm.models.hf import build_hf_engine
from fedmllm.models.pretrain import PretrainConfig, PretrainResult, pretrain
from fedmllm.models.templates import TEMPLATES, PromptTemplate, get_template
from fedmllm.models.tiny_vlm import TinyVLMConfig, build_tiny_llava, count_parameters
from fedmllm.models.tokenizer import build_word_tokenizer, decode_text, is_word_tokenizer

__all__ = [
    "TEMPLATES",
    "Engine",
    "PretrainConfig",
    "PretrainResult",
    "PromptTemplate",
    "TinyVLMConfig",
    "build_hf_engine",
    "build_tiny_llava",
    "build_tiny_vlm",
    "build_word_tokenizer",
    "count_parameters",
    "decode_text",
    "get_template",
    "is_word_tokenizer",
    "pretrain",
]
