"""Datasets: index i is seed base+i, in one process or split across DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from synthmed.datasets import SyntheticDataset, SyntheticIterableDataset, make_dataloader, shard
from synthmed.registry.errors import ParamError
from synthmed.registry.runner import RunnerOptions
from synthmed.site import Model


@pytest.fixture(scope="module")
def spec(toy_gan):
    record, pkg, _ = toy_gan
    return Model(pkg, RunnerOptions(batch_size=8)).spec()


def test_shards_cover_the_range_once() -> None:
    for n in (0, 1, 7, 10, 33):
        for w in (1, 2, 3, 4):
            got = [i for k in range(w) for i in shard(n, k, w)]
            assert got == list(range(n))


def test_map_dataset_items_follow_their_seed(spec) -> None:
    ref = spec.open().sample(range(50, 60), label="malignant")["image"]
    ds = SyntheticDataset(spec, 10, seed=50, params={"label": "malignant"})
    for i in (0, 9, 4, -1):
        item = ds[i]
        j = i % 10
        assert item["index"] == j and item["seed"] == 50 + j
        assert np.array_equal(item["image"].numpy(), ref[j])
    with pytest.raises(IndexError):
        ds[10]
    # pickles without its loaded model (for DataLoader workers)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.holder._runner is None and np.array_equal(clone[3]["image"].numpy(), ref[3])
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    got = torch.cat([b["image"] for b in loader]).numpy()
    assert np.array_equal(got, ref)


def test_stream_is_the_same_in_one_process_or_two_workers(spec) -> None:
    n = 21
    ref = spec.open().sample(range(7, 7 + n))["image"]
    for workers, model_bs in ((0, 1), (0, 7), (0, 64), (2, 7), (2, 64)):
        loader = make_dataloader(spec, n, seed=7, batch_size=5, num_workers=workers, model_batch_size=model_bs)
        by_index: dict[int, np.ndarray] = {}
        for batch in loader:
            for k, idx in enumerate(batch["index"].tolist()):
                assert idx not in by_index, "a sample came twice"
                assert batch["seed"][k].item() == 7 + idx
                by_index[idx] = batch["image"][k].numpy()
        assert sorted(by_index) == list(range(n)), (workers, model_bs)
        assert np.array_equal(np.stack([by_index[i] for i in range(n)]), ref), (workers, model_bs)


def test_params_checked_when_the_dataset_is_made(spec) -> None:
    with pytest.raises(ParamError, match="'label'"):
        SyntheticIterableDataset(spec, 4, params={"label": "unknown"})
    with pytest.raises(ParamError, match="unknown parameter"):
        SyntheticDataset(spec, 4, params={"steps": 3})
