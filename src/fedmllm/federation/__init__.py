"""The round loop and what it keeps: sampling, client store, checkpoints, accounting."""

from fedmllm.federation.client_store import ClientStore
from fedmllm.federation.simulator import FederationConfig, Simulator

__all__ = ["ClientStore", "FederationConfig", "Simulator"]
