"""fedmllm: federated fine-tuning of multimodal LLMs with LoRA."""

__version__ = "0.1.0"
