"""Methods: one LightningModule per method family."""

from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.methods.mole_module import MoLEMethod

__all__ = ["LoRAMethod", "MoLEMethod"]
