"""Prompt templates per model family.

A template turns a sample's question into the user turn the model was (pre)trained on, and says
how the answer follows it. The end-of-sequence token is appended by the collator as a token id,
never as text, because a word-level tokeniser would split a literal ``</s>`` into pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_PLACEHOLDER = "{image}"


@dataclass(frozen=True)
class PromptTemplate:
    """How one model family lays out a single-turn visual question.

    Attributes:
        family: The model family name (``llava``, ``qwen2_vl``, ``idefics3``).
        template: The prompt with ``{image}`` where the image goes and ``{question}``.
        image_text: What ``{image}`` becomes when the sample has an image (the family's image
            token plus any separator, e.g. ``"<image>\\n"``).
        answer_format: How the answer follows the prompt; ``{answer}`` is the target text.
        image_token: The single image placeholder token the collator or processor expands.
    """

    family: str
    template: str
    image_text: str
    answer_format: str = " {answer}"
    image_token: str = "<image>"

    def prompt(self, question: str, has_image: bool = True) -> str:
        """The user turn and the assistant cue, with or without the image placeholder.

        Args:
            question: The sample's question (without any image token).
            has_image: Whether to insert the image placeholder; text-only samples omit it.

        Returns:
            The prompt text, ending where the answer starts.
        """
        image = self.image_text if has_image else ""
        # str.replace rather than str.format: questions may contain braces.
        return self.template.replace(IMAGE_PLACEHOLDER, image).replace("{question}", question)

    def answer_suffix(self, answer: str) -> str:
        """The text appended to the prompt for supervision (without the eos token)."""
        return self.answer_format.replace("{answer}", answer)


TEMPLATES: dict[str, PromptTemplate] = {
    # LLaVA-1.5 conversation format ("vicuna_v1" single turn without the system line).
    "llava": PromptTemplate(
        family="llava",
        template="USER: {image}{question} ASSISTANT:",
        image_text="<image>\n",
    ),
    # Qwen2-VL chat format; its processor expands <|image_pad|> to the grid's token count.
    "qwen2_vl": PromptTemplate(
        family="qwen2_vl",
        template="<|im_start|>user\n{image}{question}<|im_end|>\n<|im_start|>assistant\n",
        image_text="<|vision_start|><|image_pad|><|vision_end|>",
        answer_format="{answer}",
        image_token="<|image_pad|>",
    ),
    # Idefics3 / SmolVLM format; the processor expands <image> into its row/column tokens.
    "idefics3": PromptTemplate(
        family="idefics3",
        template="<|im_start|>User:{image}{question}<end_of_utterance>\nAssistant:",
        image_text="<image>",
    ),
}


def get_template(family: str) -> PromptTemplate:
    """The prompt template of a model family.

    Args:
        family: One of ``TEMPLATES``' keys (``smolvlm`` is an alias of ``idefics3``).

    Returns:
        The family's template.

    Raises:
        KeyError: For an unknown family, naming the known ones.
    """
    key = "idefics3" if family == "smolvlm" else family
    if key not in TEMPLATES:
        raise KeyError(f"unknown model family {family!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[key]
