"""The round loop and what it keeps: sampling, client store, checkpoints, accounting."""

from fedmllm.federation.client_store import ClientStore
from fedmllm.federation.config import Client, FederationConfig
from fedmllm.federation.simulator import Simulator

__all__ = ["Client", "ClientStore", "FederationConfig", "Simulator"]
