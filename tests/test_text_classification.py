"""Text-only federations: the GLUE reader on fixtures in the real TSV layout, the generated
text benchmark checked against its stated rules, and the classifier engine (head travels)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fedmllm.data.glue import load_glue
from fedmllm.data.readers.glue import read_glue
from fedmllm.data.synthtext import ANTONYMS, NEGATIVE, POSITIVE, load_text_cls_synth
from fedmllm.methods import LoRAMethod, VeRAMethod
from fedmllm.models.text_classifier import build_tiny_classifier, split_pair

GLUE = Path(__file__).parent / "data" / "glue"


def test_sst2_rows_become_labelled_sentences():
    train = read_glue(GLUE / "SST-2", "train", task="sst2")
    assert len(train) == 9  # the fixture's rows (header excluded)
    assert [s.answer for s in train[:3]] == ["negative", "negative", "positive"]
    assert train[0].question == "hide new secretions from the parental units"
    # GLUE's files hold bare quote characters: read as text, not as CSV quoting.
    assert '" right-thinking "' in train[-1].question
    assert all(s.task == "classification" and s.image is None for s in train)


def test_rte_and_mnli_rows_become_pairs_with_their_labels():
    rte = read_glue(GLUE / "RTE", "train", task="rte")
    assert [s.answer for s in rte] == ["not_entailment", "entailment", "entailment"]
    first, second = split_pair(rte[0].question)
    assert first == "No Weapons of Mass Destruction Found in Iraq Yet."
    assert second == "Weapons of Mass Destruction Found in Iraq."
    mnli = read_glue(GLUE / "MNLI", "dev_matched", task="mnli")
    # gold_label, not label1 (the first annotator's, "neutral" on row 0 as gold).
    assert [s.answer for s in mnli] == ["neutral", "contradiction", "entailment"]
    assert split_pair(mnli[2].question)[0].startswith("uh i don't know")
    assert mnli[1].meta["id"] == "glue/mnli/dev_matched/1"


def test_the_unlabelled_test_split_and_bad_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no column.*label.*test split has no labels"):
        read_glue(GLUE / "SST-2", "test", task="sst2")
    bad = tmp_path / "SST-2"
    bad.mkdir()
    (bad / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    with pytest.raises(ValueError, match="line 3: unknown label '7'"):
        read_glue(bad, "train", task="sst2")
    with pytest.raises(FileNotFoundError, match="docs/data.md"):
        read_glue(GLUE / "SST-2", "nope", task="sst2")


def test_load_glue_splits_train_over_three_clients(tmp_path):
    (tmp_path / "glue_data").symlink_to(GLUE)
    bench = load_glue(
        tmp_path, task="rte", labels=["entailment", "not_entailment"], root="glue_data/RTE"
    )
    assert [c.client_id for c in bench.clients] and len(bench.clients) == 3
    train = sorted(s.question for c in bench.clients for s in c.train)
    assert train == sorted(s.question for s in read_glue(GLUE / "RTE", "train", task="rte"))
    with pytest.raises(ValueError, match="not rte's"):
        load_glue(tmp_path, task="rte", labels=["yes", "no"])


# ---------------------------------------------------------------- generated benchmark
def sst2_label(text: str) -> str:
    """The stated rule, re-implemented: sum of opinion words' signs, 'not' flips the next one."""
    total, negate = 0, False
    for w in text.split():
        if w == "not":
            negate = True
            continue
        sign = 1 if w in POSITIVE else -1 if w in NEGATIVE else 0
        if sign:
            total += -sign if negate else sign
            negate = False
    assert total != 0
    return "positive" if total > 0 else "negative"


def nli_label(text: str) -> str:
    """Entailment if the hypothesis is a stated fact, contradiction if its antonym, else neutral."""
    premise, hypothesis = split_pair(text)
    facts = dict(re.findall(r"the (\w+) is (\w+)", premise))
    noun, adj = re.fullmatch(r"the (\w+) is (\w+)", hypothesis).groups()
    if noun not in facts:
        return "neutral"
    if facts[noun] == adj:
        return "entailment"
    assert any({facts[noun], adj} == set(p) for p in ANTONYMS)
    return "contradiction"


@pytest.mark.parametrize("task", ["sst2", "rte", "mnli"])
def test_generated_labels_follow_the_stated_rules(task):
    bench = load_text_cls_synth(None, seed=3, task=task, train_sizes={"classification": 60})
    assert len(bench.clients) == 3
    for c in bench.clients:
        for s in c.train + c.test:
            if task == "sst2":
                assert s.answer == sst2_label(s.question)
            elif task == "mnli":
                assert s.answer == nli_label(s.question)
            else:
                want = nli_label(s.question)
                assert s.answer == ("entailment" if want == "entailment" else "not_entailment")
        labels = [s.answer for s in c.test]
        counts = {a: labels.count(a) for a in set(labels)}
        assert max(counts.values()) - min(counts.values()) <= 1  # balanced test split


def test_clients_differ_in_label_mix_and_generation_is_cached_and_fast(tmp_path):
    start = time.perf_counter()
    bench = load_text_cls_synth(tmp_path, seed=0)  # the default sizes
    assert time.perf_counter() - start < 60
    assert list((tmp_path / "text_cls_synth").iterdir())  # cached
    again = load_text_cls_synth(tmp_path, seed=0)
    assert [s.question for s in again.clients[1].train] == [
        s.question for s in bench.clients[1].train
    ]
    pos = [sum(s.answer == "positive" for s in c.train) / len(c.train) for c in bench.clients]
    assert max(pos) - min(pos) > 0.1  # Dirichlet(1) label mixes, not IID
    other = load_text_cls_synth(None, seed=1)
    assert other.clients[0].train[0].question != bench.clients[0].train[0].question


# ---------------------------------------------------------------- classifier engine
@pytest.fixture(scope="module")
def engine():
    bench = load_text_cls_synth(None, seed=0, task="rte", train_sizes={"classification": 8})
    eng = build_tiny_classifier([], bench.vocabulary(), ["entailment", "not_entailment"])
    return eng, bench


def test_pairs_are_encoded_as_the_tokenizer_pair_and_labels_as_ids(engine):
    eng, bench = engine
    samples = bench.clients[0].train[:4]
    batch = eng.collator(samples)
    assert batch["labels"].tolist() == [eng.labels.index(s.answer) for s in samples]
    bos = eng.tokenizer.bos_token_id
    row = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    first, second = split_pair(samples[0].question)
    ids = eng.tokenizer(first, add_special_tokens=False)["input_ids"]
    ids2 = eng.tokenizer(second, add_special_tokens=False)["input_ids"]
    assert row == [bos, *ids, bos, *ids2]  # the word tokenizer's pair template
    preds = eng.generate(eng.gen_collator(samples))
    assert len(preds) == 4 and set(preds) <= set(eng.labels)


@pytest.mark.parametrize("kind", ["lora", "vera"])
def test_the_head_trains_and_travels_and_its_bytes_are_counted(kind):
    bench = load_text_cls_synth(None, seed=0, train_sizes={"classification": 8})
    eng = build_tiny_classifier([], bench.vocabulary(), ["negative", "positive"])
    cls = LoRAMethod if kind == "lora" else VeRAMethod
    method = cls(SimpleNamespace(model=eng.model), ["query", "value"], r"roberta\.encoder", r=8)
    state = method.adapter_state()
    shared = method.shared_keys(state)
    head = [k for k in shared if k.startswith("classifier.")]
    assert sorted(head) == sorted(
        f"classifier.{m}.modules_to_save.{p}"
        for m in ("dense", "out_proj")
        for p in ("weight", "bias")
    )
    h, n_labels = 64, 2  # tiny_roberta: hidden 64, two labels
    assert sum(state[k].numel() * 4 for k in head) == (h * h + h + h * n_labels + n_labels) * 4
    assert eng.info["head_bytes"] == (h * h + h + h * n_labels + n_labels) * 4
    # Adapters only on query/value of the two encoder layers, nothing else trains.
    adapters = [k for k in shared if not k.startswith("classifier.")]
    assert len(adapters) == 2 * 2 * 2 and all((".query." in k or ".value." in k) for k in adapters)
    # One step moves the head and the adapters.
    opt = method.configure_optimizers()
    for g in opt.param_groups:
        g["lr"] = 1e-2
    batch = eng.collator(bench.clients[0].train)
    loss = method.training_step(batch)
    loss.backward()
    opt.step()
    after = method.adapter_state()
    moved = {k for k in shared if not torch.equal(after[k], state[k])}
    assert any(k.startswith("classifier.") for k in moved)
    b_key = "vera_lambda_b" if kind == "vera" else "lora_B.weight"
    assert any(k.endswith(b_key) for k in moved)
