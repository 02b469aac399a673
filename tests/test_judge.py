"""LLM-as-judge: prompt, score parser, failure counting, a local causal LM and an HTTP endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from fedmllm.metrics import JUDGE_PROMPT, LLMJudge, judge_prompt, parse_judge_score
from fedmllm.metrics.judge_backends import OpenAIJudge, make_judge_backend

# ---------------------------------------------------------------- prompt and parser


def test_prompt_is_the_papers_with_both_reports_filled_in() -> None:
    prompt = judge_prompt(" no acute {findings} ", "small left effusion.")
    assert prompt.startswith("You are a medical expert evaluating the quality of an automatically")
    assert "score from 1 to 5\n(integer" not in prompt  # the paper's line breaks are joined
    assert "Score: <Score>\n\nReason: <brief explanation>" in prompt
    assert prompt.endswith(
        "Generated Report: no acute {findings}\nReference Report: small left effusion."
    )
    assert JUDGE_PROMPT.count("{prediction}") == 1 and JUDGE_PROMPT.count("{reference}") == 1


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 4\n\nReason: accurate findings.", 4),
        ("score : 3", 3),  # word-level decoders put spaces around the colon
        ("**Score:** 5\n**Reason:** ...", 5),
        ("**Score**: 2", 2),
        ("Score: 4/5. Reason: minor omission.", 4),
        ("Score: [1]", 1),
        ("SCORE = 2", 2),
        ("Score: 3.0", 3),
        ("Score: <Score>\nScore: 4", 4),  # an echoed placeholder holds no number
        ("<think>Maybe Score: 1? No.</think>\nScore: 5", 5),  # thinking is not the answer
        ("Reason first. Score: 2\nScore: 5", 2),  # the first score counts
        # malformed or missing
        ("Score: 4.5", None),
        ("Score: 0", None),
        ("Score: 7", None),
        ("Score: -3", None),
        ("The report is good.", None),
        ("I would give it a 4.", None),
        ("<think>Score: 4", None),  # unfinished thinking, no answer
        ("", None),
        (None, None),
    ],
)
def test_parse_judge_score(reply: str | None, score: int | None) -> None:
    assert parse_judge_score(reply) == score


# ---------------------------------------------------------------- the metric


class ScriptedJudge:
    """Replies from a list, in order; records the prompts it saw."""

    def __init__(self, replies: Sequence[str | None]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def complete(self, prompts: Sequence[str]) -> list[str | None]:
        self.prompts.extend(prompts)
        out, self.replies = self.replies[: len(prompts)], self.replies[len(prompts) :]
        return out


def test_judge_counts_unparsable_and_failed_and_averages_the_rest() -> None:
    # Prepare: scores 4 and 2, one reply without a score, one failed request.
    backend = ScriptedJudge(["Score: 4\nReason: ok", "fine report", None, "Score: 2"])
    metric = LLMJudge(backend)
    preds = ["a", "b", "c", "d"]
    targets = ["ra", ["rb", "rb2"], "rc", "rd"]
    # Execute: in two batches, merged by the summed states.
    metric.update(preds[:2], targets[:2])
    metric.update(preds[2:], targets[2:])
    result = {k: v.item() for k, v in metric.compute().items()}
    # Assert: mean of the parsed (4 + 2) / 2 = 3, i.e. 300 % in the paper's scale.
    assert result == {"judge": 3.0, "judge_unparsable": 1, "judge_failed": 1}
    assert metric.last_sample_scores == {"judge": [None, 2.0]}
    assert "Generated Report: b\nReference Report: rb" in backend.prompts[1]  # first reference


def test_judge_with_nothing_parsed_reports_zero_and_the_count() -> None:
    metric = LLMJudge(ScriptedJudge(["no score here"]))
    metric.update(["a"], ["b"])
    assert {k: v.item() for k, v in metric.compute().items()} == {
        "judge": 0.0,
        "judge_unparsable": 1,
        "judge_failed": 0,
    }


def test_judge_backend_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="'local', 'openai'"):
        make_judge_backend({"backend": "anthropic"})
    with pytest.raises(ValueError, match="bad arguments for the 'openai' judge"):
        make_judge_backend({"backend": "openai", "base_url": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="'float33'"):
        make_judge_backend({"backend": "local", "path": "/m", "dtype": "float33"})


# ---------------------------------------------------------------- a local causal LM


def _deterministic_llama(path: Path, chains: dict[str, str]) -> None:
    """A tiny LlamaForCausalLM whose greedy next token depends only on the current token.

    Attention and MLP outputs are zeroed, so the residual stream is the token's embedding;
    embeddings are one-hot and lm_head maps token t to ``chains[t]`` (else to eos). The
    model and a word-level tokenizer are saved to ``path`` like any local checkpoint.
    """
    transformers = pytest.importorskip("transformers")
    from fedmllm.models.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(["score", ":", "4"], [JUDGE_PROMPT, "no acute findings effusion"])
    vocab = len(tok)
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=vocab + (-vocab % 8),  # head_dim even for RoPE
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.norm.weight.fill_(1.0)
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        ids = tok.convert_tokens_to_ids
        for t in range(vocab):
            model.lm_head.weight[tok.eos_token_id, t] = 1.0
        for src, dst in chains.items():
            model.lm_head.weight[tok.eos_token_id, ids(src)] = 0.0
            model.lm_head.weight[ids(dst), ids(src)] = 1.0
    model.save_pretrained(path)
    tok.save_pretrained(path)


def test_local_judge_end_to_end_with_a_tiny_causal_lm(tmp_path: Path) -> None:
    # Prepare: after a prompt ending in "." the model writes "score : 4" then stops; after
    # one ending in "effusion" it stops at once (an empty, unparsable judgement).
    _deterministic_llama(tmp_path, {".": "score", "score": ":", ":": "4"})
    metric = LLMJudge({"backend": "local", "path": str(tmp_path), "max_new_tokens": 6})
    # Execute: batch of 3 prompts of different lengths (left padding), batch size 2.
    metric.backend.batch_size = 2
    metric.update(
        ["no acute findings .", "effusion", "no findings ."],
        ["no acute findings .", "no acute effusion", "no acute findings effusion ."],
    )
    result = {k: v.item() for k, v in metric.compute().items()}
    # Assert
    assert metric.last_replies == ["score : 4", "", "score : 4"]
    assert result == {"judge": 4.0, "judge_unparsable": 1, "judge_failed": 0}
    assert metric.last_sample_scores == {"judge": [4.0, None, 4.0]}
    # Another client's judge with the same model reuses the loaded one (no second load).
    other = LLMJudge({"backend": "local", "path": str(tmp_path), "max_new_tokens": 6})
    other.update(["x"], ["no acute findings ."])
    assert other.backend._model is metric.backend._model
    assert other.compute()["judge"].item() == 4.0


def test_local_judge_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    metric = LLMJudge({"backend": "local", "path": str(tmp_path / "nothing")})
    with pytest.raises(FileNotFoundError, match="judge model"):
        metric.update(["a"], ["b"])


# ---------------------------------------------------------------- an OpenAI-compatible endpoint


class _Stub(BaseHTTPRequestHandler):
    """``/v1/chat/completions``: "Score: 5" for a generated report "good", an HTTP 500 for
    "crash", a reply without a score otherwise. Records every request body and header."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append({"path": self.path, "body": body, "auth": self.headers["Authorization"]})
        prompt = body["messages"][0]["content"]
        if "Generated Report: crash" in prompt:
            self.send_error(500, "boom")
            return
        text = "Score: 5\nReason: same." if "Generated Report: good" in prompt else "Looks fine."
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    _Stub.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_judge_end_to_end_against_a_local_stub(
    stub_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setenv("FEDMLLM_TEST_KEY", "sk-test")
    spec = {
        "backend": "openai",
        "base_url": stub_url + "/",
        "model": "qwen3-8b",
        "api_key_env": "FEDMLLM_TEST_KEY",
        "retries": 1,
        "retry_wait": 0.0,
    }
    metric = LLMJudge(spec)
    # Execute
    metric.update(["good", "meh", "crash"], ["ref a", "ref b", "ref c"])
    result = {k: v.item() for k, v in metric.compute().items()}
    # Assert: one score, one reply without a score, one request that failed twice.
    assert result == {"judge": 5.0, "judge_unparsable": 1, "judge_failed": 1}
    assert metric.last_sample_scores == {"judge": [5.0, None, None]}
    crashes = [s for s in _Stub.seen if "crash" in s["body"]["messages"][0]["content"]]
    assert len(crashes) == 2  # first attempt + 1 retry
    first = _Stub.seen[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"]["model"] == "qwen3-8b" and first["body"]["temperature"] == 0.0


def test_openai_judge_unreachable_endpoint_counts_as_failed() -> None:
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "m", retries=0, timeout=2.0)
    assert judge.complete(["prompt"]) == [None]
