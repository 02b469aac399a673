"""Methods: one LightningModule per method family."""

from fedmllm.methods.lora_module import LoRAMethod

__all__ = ["LoRAMethod"]
