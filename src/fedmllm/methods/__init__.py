"""Methods: one LightningModule per method family."""

from fedmllm.methods.factor_share import FedSALoRAMethod, FFALoRAMethod
from fedmllm.methods.feddpa import FedDPAMethod
from fedmllm.methods.fedlease import FedLEASEMethod
from fedmllm.methods.fedprox import FedProxMethod
from fedmllm.methods.frlora import FRLoRAMethod
from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.methods.mole_module import MoLEMethod
from fedmllm.methods.scaffold import ScaffoldMethod

__all__ = [
    "FFALoRAMethod",
    "FRLoRAMethod",
    "FedDPAMethod",
    "FedLEASEMethod",
    "FedProxMethod",
    "FedSALoRAMethod",
    "LoRAMethod",
    "MoLEMethod",
    "ScaffoldMethod",
]
