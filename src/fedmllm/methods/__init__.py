"""Methods: one base class (:class:`AdapterMethod`) and one subclass per method family."""

from fedmllm.methods.addons import LocalAddon, ProximalTerm, ScaffoldControl
from fedmllm.methods.base import AdapterMethod
from fedmllm.methods.factor_share import FedSALoRAMethod, FFALoRAMethod
from fedmllm.methods.feddpa import FedDPAMethod
from fedmllm.methods.fedlease import FedLEASEMethod
from fedmllm.methods.fedmrg import FedMRGMethod
from fedmllm.methods.frlora import FRLoRAMethod
from fedmllm.methods.full_ft import FullFineTuneMethod
from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.methods.modality_expert_module import ModalityExpertMethod
from fedmllm.methods.mole_module import MoLEMethod
from fedmllm.methods.multimodal_module import MultimodalLoRAMethod
from fedmllm.methods.vera_module import VeRAMethod

__all__ = [
    "AdapterMethod",
    "FFALoRAMethod",
    "FRLoRAMethod",
    "FedDPAMethod",
    "FedLEASEMethod",
    "FedMRGMethod",
    "FedSALoRAMethod",
    "FullFineTuneMethod",
    "LoRAMethod",
    "LocalAddon",
    "ModalityExpertMethod",
    "MoLEMethod",
    "MultimodalLoRAMethod",
    "ProximalTerm",
    "ScaffoldControl",
    "VeRAMethod",
]
