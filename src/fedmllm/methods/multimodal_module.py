"""LoRA on the LLM and the vision encoder, a trainable projector, and UniFLoW's stage schedule.

This is the plain-LoRA family of UniFLoW (METHODS.md "FedA²-LoRA / UniFLoW II-stage"): LoRA in
the vision tower and in the language model, the projector trained in full, and a schedule that
decides per local step which side trains. It also lets text-only clients (no image in any
batch) take part: they can only reach the LLM-side adapters, so they train and send only those.

What a client sends is decided by what its data can reach, not by the schedule: a text-only
client never sends vision-side tensors, an image client sends every group even in a round in
which the schedule kept one side frozen. That keeps every image client's update on the same
keys, so FedAvg and ridge aggregate it; a federation that mixes text-only and image clients
needs a rule that averages each tensor over the clients that sent it (``expert_aware``).
"""

from __future__ import annotations

from typing import Any

from fedmllm.lora import adapter_parameter_names
from fedmllm.lora.modules_to_save import wrap_modules_to_save
from fedmllm.methods.lora_module import LoRAMethod
from fedmllm.methods.stage_schedule import (
    ALL_GROUPS,
    AUDIO,
    IMAGE,
    IMAGE_SIDE,
    LLM,
    STAGE_I,
    STAGE_II,
    GroupPatterns,
    StageSchedule,
)


class MultimodalLoRAMethod(LoRAMethod):
    """LoRA on LLM (+ encoder), optional trainable projector, optional stage schedule.

    Parameter groups are ``encoder``, ``projector`` and ``llm`` (by module path).

    Args:
        engine: The shared engine; its ``model`` receives the adapters.
        target_modules: Leaf names of the LLM linears to adapt (``module_filter`` keeps this
            LoRA out of the tower).
        encoder_target_modules: Leaf names of vision-tower linears to adapt (None: no encoder
            LoRA), e.g. ``[q_proj, k_proj, v_proj, out_proj, fc1, fc2]``.
        encoder_module_filter: Regex selecting the vision tower's modules.
        projector_modules: Leaf names of projector linears trained in full (None: frozen).
        projector_module_filter: Regex selecting the projector's modules.
        stage_schedule: ``{mode, tau, switch_round_frac}`` (see ``StageSchedule``); None
            trains every group at every step.
        group_patterns: ``{encoder, projector, audio}`` regexes that place parameters in
            groups (``audio``: which encoder/projector names serve the audio input).
        send_unreached: Send every adapter tensor, also those the client's data never
            reached (their global values, untouched), so that every client sends the same
            keys and FedAvg or FedA² over *all* clients applies in a mixed-modality
            federation (an untouched copy then pulls a tensor toward its old value by the
            client's weight). False: send what the data reached (``expert_aware`` needed).
        name: The method's name in logs and results.
        **lora_args: :class:`LoRAMethod`'s (rank, alpha, dropout, rsLoRA, ``share``: ``"all"``
            sends what the client's data reached, ``"none"`` nothing; and the base's).
    """

    probes_paths = False

    def __init__(
        self,
        engine: Any,
        target_modules: list[str],
        encoder_target_modules: list[str] | None = None,
        encoder_module_filter: str | None = "vision_tower",
        projector_modules: list[str] | None = None,
        projector_module_filter: str | None = "multi_modal_projector",
        stage_schedule: dict[str, Any] | StageSchedule | None = None,
        group_patterns: dict[str, str] | None = None,
        name: str = "lora_2stage",
        send_unreached: bool = False,
        **lora_args: Any,
    ) -> None:
        super().__init__(engine, list(target_modules), name=name, **lora_args)
        if encoder_target_modules:
            self.adapted_modules += self._inject_encoder(
                list(encoder_target_modules), encoder_module_filter
            )
        if projector_modules:
            self.adapted_modules += wrap_modules_to_save(
                self.model, list(projector_modules), projector_module_filter
            )
        self.patterns = GroupPatterns(**(group_patterns or {}))
        self.shared_groups = frozenset(ALL_GROUPS) if self.share == "all" else frozenset()
        self.schedule = StageSchedule.from_config(stage_schedule)
        self._check_schedule()
        self._reached: set[str] | None = None  # None: before any local update, all is sent
        self.send_unreached = bool(send_unreached)

    def _inject_encoder(self, targets: list[str], module_filter: str | None) -> list[str]:
        """Put the vision-encoder adapters in (plain LoRA)."""
        return self._inject(targets, module_filter)

    def _check_schedule(self) -> None:
        if self.schedule is None or self.schedule.mode == "simultaneous":
            return
        used = self.schedule.uses()
        split = self.patterns.split(adapter_parameter_names(self.model))
        empty = {g for g, names in split.items() if not names}
        hints = {
            STAGE_I: "set method.encoder_target_modules and/or method.projector_modules",
            STAGE_II: "the LLM has no adapters",
        }
        for stage, hint in hints.items():
            if stage.issubset(used) and stage.issubset(empty):
                raise ValueError(
                    f"stage_schedule {self.schedule.mode!r} has a stage {sorted(stage)} that "
                    f"trains nothing: {hint}"
                )

    # ------------------------------------------------------------------ groups and sharing
    def group_of(self, key: str) -> str:
        """``encoder``, ``projector`` or ``llm`` by module path."""
        return self.patterns.group_of(key)

    def was_reached(self, key: str) -> bool:
        """Whether the last local update's data reached the side of ``key`` (``llm``,
        ``image`` or ``audio``; everything before the first local update)."""
        return self._reached is None or self.patterns.side_of(key) in self._reached

    def sends(self, key: str) -> bool:
        """What the client's data reached, unless nothing is shared."""
        return self.share != "none" and (self.send_unreached or self.was_reached(key))

    def keeps(self, key: str) -> bool:
        """Everything under ``share="none"``; else nothing (unreached tensors are dropped and
        come back from the server, untouched, next time)."""
        return self.share == "none"

    def received_keys(self, global_keys: list[str]) -> list[str]:
        """The global tensors the last-trained client needed (for down-link accounting)."""
        return [k for k in global_keys if self.send_unreached or self.was_reached(k)]

    # ------------------------------------------------------------------ local update
    def trainable_groups(
        self, step: int, num_steps: int, round_idx: int, num_rounds: int
    ) -> frozenset[str]:
        """The stage schedule's groups (every group without a schedule)."""
        if self.schedule is None:
            return ALL_GROUPS
        return self.schedule.active(step, num_steps, round_idx, num_rounds)

    def groups_reached(self, batch: dict[str, Any]) -> frozenset[str]:
        """All groups for a batch with an image or a sound, the LLM side only for a text-only
        one. The sides reached (``image`` from ``pixel_values``, ``audio`` from
        ``input_features``, always ``llm``) are recorded: they decide what the client sends."""
        sides = {LLM}
        sides |= {IMAGE} if "pixel_values" in batch else set()
        sides |= {AUDIO} if "input_features" in batch else set()
        reach = ALL_GROUPS if len(sides) > 1 else ALL_GROUPS - IMAGE_SIDE
        reach = reach & self.present_groups
        assert self._reached is not None
        self._reached |= sides
        return reach

    def begin_local(self, num_steps: int) -> None:
        self._reached = set()
