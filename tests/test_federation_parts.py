"""Round-loop parts that need no model: sampling, schedule, client store, checkpoints."""

import math

import pytest
import torch

from fedmllm.federation.checkpoint import load_checkpoint, save_checkpoint
from fedmllm.federation.client_store import ClientStore
from fedmllm.federation.sampling import batch_indices, cosine_lr, sample_clients


def test_sample_clients_fraction_count_and_determinism():
    ids = [f"c{i}" for i in range(10)]
    assert sample_clients(ids, 0, 0, None) == ids
    picked = sample_clients(ids, 3, 0, 0.3)
    assert len(picked) == 3 and set(picked) <= set(ids)
    assert picked == sample_clients(ids, 3, 0, 0.3)  # a pure function of (seed, round)
    assert len(sample_clients(ids, 3, 0, 4)) == 4
    rounds = {tuple(sample_clients(ids, r, 0, 2)) for r in range(20)}
    assert len(rounds) > 1  # different rounds draw different clients
    with pytest.raises(ValueError):
        sample_clients(ids, 0, 0, 11)


def test_batch_indices_cover_each_epoch_once_and_are_stateless():
    n, bs = 10, 4
    stream = [i for b in range(5) for i in batch_indices(n, bs, b, seed=1, client_idx=2)]
    assert sorted(stream[:10]) == list(range(10))  # epoch 0 is a permutation
    assert sorted(stream[10:20]) == list(range(10))  # so is epoch 1
    assert batch_indices(n, bs, 3, 1, 2) == stream[12:16]  # batch 3 without replaying 0..2
    assert batch_indices(n, bs, 0, 1, 3) != batch_indices(n, bs, 0, 1, 2)  # clients differ


def test_cosine_lr_warmup_peak_and_end():
    assert cosine_lr(1.0, 0, 100, warmup_steps=10) == pytest.approx(0.1)
    assert cosine_lr(1.0, 10, 110, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_lr(1.0, 60, 110, warmup_steps=10) == pytest.approx(0.5)  # half-way: cos(pi/2)
    assert cosine_lr(1.0, 110, 110, warmup_steps=10, min_ratio=0.1) == pytest.approx(0.1)
    assert cosine_lr(2.0, 25, 100) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.25)))


@pytest.mark.parametrize("on_disk", [False, True])
def test_client_store_round_trip(tmp_path, on_disk):
    store = ClientStore(tmp_path / "store" if on_disk else None)
    private = {"a": torch.arange(3.0)}
    store.put("k", private, {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": []})
    private["a"] += 1  # the store keeps a copy, not a view
    got, opt = store.get("k")
    assert torch.equal(got["a"], torch.arange(3.0))
    assert torch.equal(opt["state"][0]["exp_avg"], torch.ones(2))
    assert store.get("unseen") == ({}, None)
    other = ClientStore()
    other.load_state_dict(store.state_dict())
    assert torch.equal(other.get("k")[0]["a"], torch.arange(3.0))


def test_checkpoint_is_atomic_and_strict(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"round": 3, "global_state": {"x": torch.ones(1)}})
    assert not (tmp_path / "last.ckpt.tmp").exists()
    assert load_checkpoint(tmp_path)["round"] == 3
    with pytest.raises(KeyError):
        save_checkpoint(path, {"round": 1, "surprise": 0})
    torch.save({"version": 1, "round": 1, "surprise": 0}, path)
    with pytest.raises(KeyError, match="surprise"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="corrupted"):
        load_checkpoint(path)
