"""Judges for :class:`~fedmllm.metrics.judge.LLMJudge`: a local causal LM or an HTTP endpoint.

Both answer ``complete(prompts) -> list[str | None]`` greedily (temperature 0), so a judge's
scores are reproducible. Neither downloads anything unless told to.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Loaded judges by (path, device, dtype): every client's metric collection shares one model.
_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}


class LocalJudge:
    """A causal LM loaded with ``transformers`` from a local directory (e.g. Qwen3-8B).

    Args:
        path: Directory with the model and its tokenizer (or a hub id already in the local
            cache when ``allow_download`` is false).
        max_new_tokens: Longest reply.
        batch_size: Prompts per generation batch (left-padded).
        device: Where the model runs; default CUDA when available.
        dtype: ``"auto"`` (the checkpoint's), ``"float32"``, ``"bfloat16"``, ...
        chat_template: Wrap the prompt in the tokenizer's chat template when it has one.
        enable_thinking: Passed to the chat template (Qwen3 thinks first when true; the parser
            ignores ``<think>`` blocks either way).
        allow_download: Let ``from_pretrained`` fetch a hub id.
    """

    def __init__(
        self,
        path: str,
        max_new_tokens: int = 256,
        batch_size: int = 4,
        device: str | None = None,
        dtype: str = "auto",
        chat_template: bool = True,
        enable_thinking: bool = False,
        allow_download: bool = False,
    ) -> None:
        self.path = path
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"judge dtype {dtype!r} is not 'auto' or a torch dtype name")
        self.dtype = dtype
        self.chat_template = chat_template
        self.enable_thinking = enable_thinking
        self.allow_download = allow_download
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        key = (str(self.path), self.device, self.dtype)
        if key not in _LOADED:
            _LOADED[key] = self._from_pretrained()
        self._model, self._tokenizer = _LOADED[key]

    def _from_pretrained(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local_only = not self.allow_download
        if local_only and not Path(self.path).expanduser().is_dir():
            log.info("judge %s is not a directory; trying the local Hugging Face cache", self.path)
        try:
            tok = AutoTokenizer.from_pretrained(self.path, local_files_only=local_only)
            dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)
            model = AutoModelForCausalLM.from_pretrained(
                self.path, local_files_only=local_only, dtype=dtype
            )
        except OSError as exc:
            raise FileNotFoundError(
                f"cannot load the judge model from {self.path!r}: {exc}. Pass a local directory "
                "holding a causal LM and its tokenizer"
            ) from exc
        tok.padding_side = "left"  # generation appends on the right
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        log.info("judge %s loaded on %s", self.path, self.device)
        return model.to(self.device).eval(), tok

    def _render(self, prompt: str) -> str:
        tok = self._tokenizer
        if self.chat_template and getattr(tok, "chat_template", None):
            return tok.apply_chat_template(
                [{"role": "user", "content": prompt}],
                tokenize=False,
                add_generation_prompt=True,
                enable_thinking=self.enable_thinking,
            )
        return prompt

    @torch.no_grad()
    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        """Greedy replies, one per prompt (the prompt itself excluded)."""
        if self._model is None:
            self._load()
        tok, templated = (
            self._tokenizer,
            self.chat_template and bool(getattr(self._tokenizer, "chat_template", None)),
        )
        replies: list[str | None] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self._render(p) for p in prompts[start : start + self.batch_size]]
            # A chat template already writes the special tokens it wants.
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not templated)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            out = self._model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            replies.extend(tok.decode(row, skip_special_tokens=True).strip() for row in new)
            log.info("judge: %d/%d replies", len(replies), len(prompts))
        return replies


class OpenAIJudge:
    """An OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp, Ollama).

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: The model name the server expects.
        api_key_env: Environment variable holding the API key (sent as a Bearer token when
            set; local servers usually need none). The key itself never goes in a config.
        max_tokens: Longest reply.
        temperature: Sampling temperature (0: greedy).
        timeout: Seconds per request.
        retries: Extra attempts after a failed request.
        retry_wait: Seconds before the first retry (doubled each time).
        workers: Requests in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout: float = 120.0,
        retries: int = 2,
        retry_wait: float = 1.0,
        workers: int = 4,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self.workers = max(1, workers)

    def _post(self, prompt: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            payload = json.loads(response.read().decode())
        return payload["choices"][0]["message"].get("content") or ""

    def _ask(self, prompt: str) -> str | None:
        wait = self.retry_wait
        for attempt in range(self.retries + 1):
            try:
                return self._post(prompt)
            # OSError covers URLError, HTTPError, timeouts and dropped connections; the others
            # are a truncated or malformed reply.
            except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError) as exc:
                log.warning(
                    "judge request to %s failed (attempt %d): %s", self.url, attempt + 1, exc
                )
                if attempt < self.retries:
                    time.sleep(wait)
                    wait *= 2
        return None

    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        """Replies in prompt order; None for a request that failed after all retries."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self._ask, prompts))


def make_judge_backend(spec: Mapping[str, Any]) -> LocalJudge | OpenAIJudge:
    """Build a judge from its config.

    Args:
        spec: ``{"backend": "local", "path": ..., ...}`` (:class:`LocalJudge` arguments) or
            ``{"backend": "openai", "base_url": ..., "model": ..., ...}`` (:class:`OpenAIJudge`).

    Raises:
        ValueError: For an unknown backend or missing arguments.
    """
    args = dict(spec)
    kind = args.pop("backend", None)
    classes = {"local": LocalJudge, "openai": OpenAIJudge}
    if kind not in classes:
        raise ValueError(f"judge backend must be one of {sorted(classes)}, got {kind!r}")
    try:
        return classes[kind](**args)
    except TypeError as exc:
        raise ValueError(f"bad arguments for the {kind!r} judge {sorted(args)}: {exc}") from exc
