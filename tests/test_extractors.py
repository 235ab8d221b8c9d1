"""Feature-extractor records and networks: the FID InceptionV3 loads a state dict with the
official file's keys and shapes, the offline extractor's pinned weights are what its
recipe makes, records validate (the Inception one unverified), and any change of an
input rule changes the comparability key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthmed.registry.errors import EvaluationError, RecordError
from synthmed.registry.measuring.evaluate import KEYED, MetricSettings, comparability_key, config_key, keyed_provenance
from synthmed.registry.measuring.extractor_nets import FIDInceptionV3, RandConv
from synthmed.registry.measuring.extractors import (
    ExtractorRecord,
    FeatureExtractor,
    build_network,
    describe,
    load_extractor_file,
    load_extractor_text,
    load_state_dict,
    preprocess,
    validate_extractors_dir,
)
from synthmed.registry.measuring.reference_sets import ReferenceSet

from helpers import REPO_ROOT

INDEX = REPO_ROOT / "index"


def _official_keys_and_shapes() -> dict[str, tuple[int, ...]]:
    """The keys and shapes of pt_inception-2015-12-05-6726825d.pth, written out from the
    architecture of the TensorFlow graph (conv without bias, BatchNorm with running stats and
    num_batches_tracked, as the file holds: pytorch-fid issue #34 shows old torch refusing its
    num_batches_tracked keys), a 1008-way fc, no AuxLogits."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, kh: int, kw: int | None = None) -> None:
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kh if kw is None else kw)
        for b in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{b}"] = (cout,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()

    conv("Conv2d_1a_3x3", 3, 32, 3); conv("Conv2d_2a_3x3", 32, 32, 3); conv("Conv2d_2b_3x3", 32, 64, 3)  # noqa: E702
    conv("Conv2d_3b_1x1", 64, 80, 1); conv("Conv2d_4a_3x3", 80, 192, 3)  # noqa: E702
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        conv(f"{name}.branch1x1", cin, 64, 1); conv(f"{name}.branch5x5_1", cin, 48, 1)  # noqa: E702
        conv(f"{name}.branch5x5_2", 48, 64, 5); conv(f"{name}.branch3x3dbl_1", cin, 64, 1)  # noqa: E702
        conv(f"{name}.branch3x3dbl_2", 64, 96, 3); conv(f"{name}.branch3x3dbl_3", 96, 96, 3)  # noqa: E702
        conv(f"{name}.branch_pool", cin, pool, 1)
    conv("Mixed_6a.branch3x3", 288, 384, 3); conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1)  # noqa: E702
    conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3); conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3)  # noqa: E702
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        conv(f"{name}.branch1x1", 768, 192, 1); conv(f"{name}.branch7x7_1", 768, c7, 1)  # noqa: E702
        conv(f"{name}.branch7x7_2", c7, c7, 1, 7); conv(f"{name}.branch7x7_3", c7, 192, 7, 1)  # noqa: E702
        conv(f"{name}.branch7x7dbl_1", 768, c7, 1); conv(f"{name}.branch7x7dbl_2", c7, c7, 7, 1)  # noqa: E702
        conv(f"{name}.branch7x7dbl_3", c7, c7, 1, 7); conv(f"{name}.branch7x7dbl_4", c7, c7, 7, 1)  # noqa: E702
        conv(f"{name}.branch7x7dbl_5", c7, 192, 1, 7); conv(f"{name}.branch_pool", 768, 192, 1)  # noqa: E702
    conv("Mixed_7a.branch3x3_1", 768, 192, 1); conv("Mixed_7a.branch3x3_2", 192, 320, 3)  # noqa: E702
    conv("Mixed_7a.branch7x7x3_1", 768, 192, 1); conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)  # noqa: E702
    conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1); conv("Mixed_7a.branch7x7x3_4", 192, 192, 3)  # noqa: E702
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        conv(f"{name}.branch1x1", cin, 320, 1); conv(f"{name}.branch3x3_1", cin, 384, 1)  # noqa: E702
        conv(f"{name}.branch3x3_2a", 384, 384, 1, 3); conv(f"{name}.branch3x3_2b", 384, 384, 3, 1)  # noqa: E702
        conv(f"{name}.branch3x3dbl_1", cin, 448, 1); conv(f"{name}.branch3x3dbl_2", 448, 384, 3)  # noqa: E702
        conv(f"{name}.branch3x3dbl_3a", 384, 384, 1, 3); conv(f"{name}.branch3x3dbl_3b", 384, 384, 3, 1)  # noqa: E702
        conv(f"{name}.branch_pool", cin, 192, 1)
    shapes["fc.weight"] = (1008, 2048)
    shapes["fc.bias"] = (1008,)
    return shapes


def _random_official_file(path: Path) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, shape in _official_keys_and_shapes().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(0, dtype=torch.long)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.05
    torch.save(state, path)
    return state


@pytest.mark.slow  # a 95 MB state dict of random values, written and read back
def test_inception_loads_a_state_dict_with_the_official_keys_and_shapes(tmp_path: Path) -> None:
    assert {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()} == _official_keys_and_shapes()
    f = tmp_path / "pt_inception-2015-12-05-random.pth"
    state = _random_official_file(f)
    loaded = load_state_dict(f, "torch-state-dict")  # torch.load(weights_only=True)
    net = build_network("inception-v3-fid", loaded, "test")
    assert torch.equal(net.state_dict()["Mixed_7c.branch_pool.conv.weight"], state["Mixed_7c.branch_pool.conv.weight"])
    # a file saved without BatchNorm's num_batches_tracked loads as well
    build_network("inception-v3-fid", {k: v for k, v in loaded.items() if not k.endswith("num_batches_tracked")}, "t")
    rec = load_extractor_file(INDEX / "extractors" / "inception-v3-fid" / "1.0.0.json")
    x = preprocess(np.random.default_rng(0).integers(0, 256, (1, 40, 30, 3)).astype(np.uint8), (0, 255),
                   rec.data["input"])
    assert tuple(x.shape) == (1, 3, 299, 299) and float(x.min()) >= -1 and float(x.max()) <= 1
    with torch.no_grad():  # the network runs (on a small input: 299x299 costs seconds on a busy CPU)
        out = net(x[:, :, :80, :80])
    assert tuple(out.shape) == (1, 2048) and torch.isfinite(out).all()


def test_wrong_weights_are_refused_naming_the_key(tmp_path: Path) -> None:
    state = FIDInceptionV3().state_dict()
    state["fc.weight"] = torch.zeros(1000, 2048)
    with pytest.raises(EvaluationError, match=r"fc.weight: \(1000, 2048\) instead of \(1008, 2048\)"):
        build_network("inception-v3-fid", state, "test")
    del state["fc.bias"]
    with pytest.raises(EvaluationError, match="missing"):
        build_network("inception-v3-fid", state, "test")
    with pytest.raises(EvaluationError, match="unknown network"):
        build_network("resnet", {}, "test")


class _Payload:  # what a malicious .pth could carry: an object whose unpickling runs code
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def test_a_pickle_that_runs_code_is_never_loaded(tmp_path: Path) -> None:
    f = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, f)
    with pytest.raises(EvaluationError, match="cannot read the weights file"):
        load_state_dict(f, "torch-state-dict")


def test_index_records_validate_and_inception_stays_unverified() -> None:
    assert validate_extractors_dir(INDEX) == []
    inc = load_extractor_file(INDEX / "extractors" / "inception-v3-fid" / "1.0.0.json")
    assert not inc.verified and inc.data["weights"]["sources"][0].endswith("pt_inception-2015-12-05-6726825d.pth")
    rc = load_extractor_file(INDEX / "extractors" / "randconv-224" / "1.0.0.json")
    assert rc.verified and "RANDOM" in rc.data["description"]


def test_offline_extractor_weights_are_what_the_recipe_makes() -> None:
    rec = load_extractor_file(INDEX / "extractors" / "randconv-224" / "1.0.0.json")
    ext = FeatureExtractor.from_file(rec, INDEX / "artefacts" / "extractors" / "randconv-224" / "1.0.0.safetensors")
    for k, v in RandConv.seeded(0).state_dict().items():
        assert torch.equal(ext.net.state_dict()[k], v), k
    grey = np.random.default_rng(1).integers(0, 256, (3, 50, 50)).astype(np.uint8)
    f = ext.features(grey, (0, 255))
    assert f.shape == (3, 224) and f.dtype == np.float64
    # grey is repeated into RGB: the same as feeding the 3-channel copy
    assert np.array_equal(f, ext.features(np.repeat(grey[..., None], 3, -1), (0, 255)))


def test_bad_extractor_records_are_refused_with_their_problems(tmp_path: Path) -> None:
    good = json.loads((INDEX / "extractors" / "randconv-224" / "1.0.0.json").read_text())
    bad = copy.deepcopy(good)
    bad["input"]["resize"]["filter"] = "lanczos"
    del bad["layer"]
    with pytest.raises(RecordError) as exc:
        load_extractor_text(json.dumps(bad), "x.json")
    text = str(exc.value)
    assert "$.input.resize.filter" in text and "layer" in text
    with pytest.raises(RecordError, match="must be at extractors/randconv-224/1.0.0.json"):
        load_extractor_text(json.dumps(good), "x.json", "extractors/other/1.0.0.json")
    with pytest.raises(RecordError, match="not JSON"):
        load_extractor_text("{", "x.json")


def _key_with(rule_change: dict[str, object]) -> str:
    data = json.loads((INDEX / "extractors" / "randconv-224" / "1.0.0.json").read_text())
    data["input"]["resize"].update(rule_change)
    rec = ExtractorRecord(data, "test")
    ref = ReferenceSet("r", Path("/nonexistent"), tuple({"path": f"{i}.png", "sha256": "0" * 64, "size": 1}
                                                        for i in range(10)), "f" * 64, None)

    class _Ext:
        record = rec

    return comparability_key(keyed_provenance(ref, _Ext(), 100, 0, MetricSettings()))  # type: ignore[arg-type]


def test_a_change_of_resize_filter_or_antialias_changes_the_comparability_key() -> None:
    base = _key_with({})
    assert _key_with({}) == base
    assert _key_with({"filter": "bicubic"}) != base
    assert _key_with({"antialias": False}) != base
    assert _key_with({"align_corners": True}) != base
    # and so does the feature cache's configuration key
    data = json.loads((INDEX / "extractors" / "randconv-224" / "1.0.0.json").read_text())
    a = ExtractorRecord(copy.deepcopy(data), "a")
    data["input"]["resize"]["antialias"] = False
    b = ExtractorRecord(data, "b")

    class _A:
        record = a

    class _B:
        record = b

    assert config_key(_A()) != config_key(_B())  # type: ignore[arg-type]
    assert describe(a)["input"]["resize"]["antialias"] is True
    assert set(KEYED) == {"implementation", "extractor", "reference", "n_real", "n_generated", "seeds", "metrics",
                          "encoding", "region"}  # region: present for FRD on volumes or mask regions only
