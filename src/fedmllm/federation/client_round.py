"""The client half of a round: one implementation for the Simulator and the Flower ClientApp.

:class:`LocalTrainer` owns what a client's turn on the shared engine needs: the initial adapter,
one optimiser whose state is swapped per client, and the :class:`ClientStore` of private tensors.
A turn is: hear the server (``begin_client``), load ``initial ∪ received ∪ private`` into the
engine, run the method's local update with the run's seeded batch order, seeded dropout and
cosine learning rate, split the adapter into what travels and what stays, and store the latter.
The Simulator calls it for every sampled client in one process; a Flower node calls it for its
own client, with the global state that arrived in the message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedmllm.federation.attacks import MODEL_ATTACKS, Attack
from fedmllm.federation.client_store import ClientStore
from fedmllm.federation.config import Client, FederationConfig
from fedmllm.federation.evaluation import (
    MetricPlan,
    generate_all,
    max_new_tokens_for,
    score_predictions,
    write_predictions,
)
from fedmllm.federation.sampling import batch_indices, cosine_lr, local_seed
from fedmllm.federation.wire import from_wire, to_wire, wire_dtype
from fedmllm.metrics import trivial_prediction
from fedmllm.privacy.accountant import client_dp_noise
from fedmllm.privacy.client_dp import add_noise, clip_update, noise_generator
from fedmllm.protocol import Engine, FederatedMethod
from fedmllm.types import AdapterState, ClientUpdate, state_nbytes


@dataclass
class LocalResult:
    """A finished local update.

    Attributes:
        update: What the client sends (shared tensors, extras, n_k, metrics).
        down_bytes: Bytes of the received global state the client needed (see
            :meth:`LocalTrainer.needed_bytes`).
    """

    update: ClientUpdate
    down_bytes: int


class LocalTrainer:
    """A client's turn on the shared engine: load, train, split, store, score.

    Args:
        fabric: A launched ``lightning.Fabric``.
        engine: The shared engine (collators).
        method: The method that owns the adapters (already on the fabric's device).
        config: The run's ``FederationConfig`` (seed, rounds, steps, schedule, evaluation).
        store: Where private tensors and optimiser states live between turns.
    """

    def __init__(
        self,
        fabric: Any,
        engine: Engine,
        method: FederatedMethod,
        config: FederationConfig,
        store: ClientStore,
    ) -> None:
        if not isinstance(method, FederatedMethod):
            raise TypeError(
                f"{type(method).__name__} is not a fedmllm.protocol.FederatedMethod "
                "(subclass fedmllm.methods.AdapterMethod for an adapter method)"
            )
        self.fabric, self.engine, self.method, self.cfg, self.store = (
            fabric,
            engine,
            method,
            config,
            store,
        )
        self.optimizer = method.configure_optimizers()
        self._fresh_optimizer = self.optimizer.state_dict()
        self.initial_state = method.adapter_state()
        self.metric_plan = MetricPlan(config.metrics, config.metric_options)
        self.attack = Attack.from_config(config.attack)

    # ----------------------------------------------------------------- loading
    def load(
        self, client_id: str, received: AdapterState, extras: AdapterState | None = None
    ) -> dict[str, Any] | None:
        """Put ``client_id``'s model into the engine; returns its stored optimiser state.

        The method first hears who the client is and what the server broadcast
        (``begin_client``), then ``initial ∪ received ∪ private`` is copied in place.
        """
        private, opt_state = self.store.get(client_id)
        self.method.begin_client(client_id, dict(extras or {}))
        self.method.load_adapter_state({**self.initial_state, **received, **private})
        return opt_state

    def batches(self, client: Any, client_idx: int, first_batch: int) -> Iterator[dict[str, Any]]:
        """The client's endless, seeded stream of training batches from ``first_batch`` on."""
        b = first_batch
        while True:
            idx = batch_indices(
                len(client.train), self.cfg.batch_size, b, self.cfg.seed, client_idx
            )
            yield self.engine.collator([client.train[i] for i in idx])
            b += 1

    # ----------------------------------------------------------------- training
    def train(
        self,
        client: Any,
        client_idx: int,
        round_idx: int,
        received: AdapterState,
        extras: AdapterState | None = None,
    ) -> LocalResult:
        """Run the client's local update of round ``round_idx`` (zero-based).

        Args:
            client: The client (``client_id``, ``train``).
            client_idx: Its position among the run's training clients (seeds its batches).
            round_idx: The round.
            received: The global state as this client receives it.
            extras: The server's broadcast extras of the round.

        Returns:
            The update to send and the down-link bytes it cost.
        """
        self.method.begin_round(round_idx, self.cfg.rounds)
        client = self.attacked_data(client, client_idx)
        opt_state = self.load(client.client_id, received, extras)
        persisted = opt_state is not None and self.cfg.persist_optimizer
        self.optimizer.load_state_dict(opt_state if persisted else self._fresh_optimizer)
        offset = round_idx * self.cfg.local_steps
        total = self.cfg.rounds * self.cfg.local_steps

        def lr_at(step: int) -> float:
            return cosine_lr(
                self.cfg.lr, offset + step, total, self.cfg.warmup_steps, self.cfg.min_lr_ratio
            )

        # Dropout and any other draw of the update come from a generator seeded by (seed,
        # round, client): the same update in any process, in any order of clients.
        torch.manual_seed(local_seed(self.cfg.seed, round_idx, client_idx))
        batches = self.batches(client, client_idx, offset)
        metrics = self.method.local_update(
            self.fabric, batches, self.cfg.local_steps, self.optimizer, lr_at
        )
        state = self.method.adapter_state()
        shared = {k: state[k] for k in self.method.shared_keys(state)}
        private = {k: state[k] for k in self.method.private_keys(state)}
        self.store.put(client.client_id, private, self.optimizer.state_dict())
        shared = self.attacked_update(client.client_id, client_idx, round_idx, shared, received)
        shared = self.client_dp(shared, received, round_idx, client_idx)
        wire = wire_dtype(self.cfg.wire_dtype)  # what leaves the client, at the wire's width
        extras = to_wire(self.method.client_extras(), wire)
        update = ClientUpdate(
            client.client_id, to_wire(shared, wire), len(client.train), metrics, extras
        )
        return LocalResult(update, self.needed_bytes(received))

    # ----------------------------------------------------------------- attacks
    def attacked_data(self, client: Any, client_idx: int) -> Any:
        """The client as it trains: with wrong answers if it is a ``label_flip`` attacker."""
        if self.attack.name != "label_flip" or not self.attack.hits(client.client_id, client_idx):
            return client
        poisoned = self.attack.poison_data(client.train)
        return Client(client.client_id, client.task, poisoned, client.test)

    def attacked_update(
        self,
        client_id: str,
        client_idx: int,
        round_idx: int,
        shared: AdapterState,
        received: AdapterState,
    ) -> AdapterState:
        """What a model-poisoning attacker sends instead of ``shared`` (fedmllm.federation.
        attacks); runs before any privacy step and the wire encoding."""
        if self.attack.name not in MODEL_ATTACKS or not self.attack.hits(client_id, client_idx):
            return shared
        seed = local_seed(self.cfg.seed, round_idx, client_idx) + 1
        return self.attack.tamper(shared, from_wire(received), seed)

    def client_dp(
        self, shared: AdapterState, received: AdapterState, round_idx: int, client_idx: int
    ) -> AdapterState:
        """``privacy=dp_client``: clip the update (shared − received) to norm S; with
        ``privacy.noise_at=client`` (local DP) also add N(0, (σS)²), seeded by (seed, round,
        client). Anything else: ``shared`` as it is."""
        p = self.cfg.privacy
        if p is None or p.mode != "dp_client":
            return shared
        clipped, _ = clip_update(shared, {**self.initial_state, **received}, p.clip)
        if p.noise_at != "client":
            return clipped
        z = client_dp_noise(
            p.target_epsilon, p.noise_multiplier, "client", 1.0, self.cfg.rounds, p.delta
        )
        gen = noise_generator(local_seed(self.cfg.seed, round_idx, client_idx) + 1)
        return add_noise(clipped, z * p.clip, gen)

    def needed_bytes(self, received: AdapterState) -> int:
        """Bytes of ``received`` the client just trained needed.

        All of it, unless the method's ``received_keys`` narrows it (a modality-expert client
        needs only its own experts; a text-only client no vision-side tensor). Called after the
        local update because the method learns what the client's data reaches while training.
        """
        keys = set(self.method.received_keys(list(received)))
        return state_nbytes({k: v for k, v in received.items() if k in keys})

    # ----------------------------------------------------------------- evaluation
    def baseline(self, client: Any, train: Sequence[Any]) -> dict[str, float]:
        """Scores of the trivial prediction (from ``train``'s answers) on ``client``'s test split.

        Building the full metric collection first checks the client's metric names and
        options up front; the baseline itself skips metrics that run a model.
        """
        self.metric_plan.collection(client.client_id, client.task)
        pred = trivial_prediction(client.task, [s.answer for s in train])
        metrics = self.metric_plan.collection(client.client_id, client.task, skip_expensive=True)
        return score_predictions(metrics, [pred] * len(client.test), client.test)[0]

    def evaluate(
        self,
        client: Any,
        received: AdapterState,
        extras: AdapterState | None = None,
        write_path: Path | None = None,
        split: str = "test",
    ) -> dict[str, float]:
        """Score the client's personalised model (``received`` + its private tensors) on its
        ``split`` (``test``, or ``val`` for searches)."""
        self.method.eval()
        try:
            self.load(client.client_id, received, extras)
            return self.score(client, write_path, split)
        finally:
            self.method.train()

    def score(
        self, client: Any, write_path: Path | None = None, split: str = "test"
    ) -> dict[str, float]:
        """Generate for ``client``'s ``split`` (``test`` or ``val``) with the loaded model and
        score it."""
        samples = getattr(client, split)
        preds = generate_all(
            self.method,
            self.engine.gen_collator,
            samples,
            self.cfg.eval_batch_size,
            max_new_tokens_for(self.cfg.max_new_tokens, client.task),
        )
        metrics = self.metric_plan.collection(client.client_id, client.task)
        scores, per_sample = score_predictions(metrics, preds, samples)
        if write_path is not None:
            write_predictions(write_path, samples, preds, per_sample, client.client_id)
        return scores
