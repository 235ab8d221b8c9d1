"""Scaling out: CPU workers on local devices and a Ray job on a local Ray instance leave
the same folder, manifest byte for byte, as one process; bad --devices are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.sites import make_site_home
from synthmed.cli import main
from synthmed.registry.errors import ConfigError, ModelRunError
from synthmed.registry.runner import RunnerOptions
from synthmed.run_manifest import MANIFEST, verify_output
from synthmed.site import Model, Site


def _single(tmp: Path, pkg, n: int) -> bytes:
    Model(pkg, RunnerOptions(batch_size=4, mode="inline")).generate_to(tmp / "single", n, format="png", seed=7,
                                                                        label="malignant")
    return (tmp / "single" / MANIFEST).read_bytes()


def test_bad_devices_are_refused(toy_gan) -> None:
    from synthmed.parallel import parse_devices

    assert parse_devices("cpu:3") == ["cpu"] * 3 and parse_devices("cpu") == ["cpu"]
    assert parse_devices("all") == ["cpu"]  # no GPU on this machine: one CPU worker
    for bad, match in (("cuda:0", "no CUDA device"), ("cpu:0", "CPU workers"), ("tpu:1", "unknown device"),
                       ("", "empty"), ("cpu:100000", "CPU workers")):
        with pytest.raises(ConfigError, match=match):
            parse_devices(bad)


@pytest.mark.slow
def test_cpu_workers_write_what_one_process_writes(tmp_path: Path, toy_gan, capsys: pytest.CaptureFixture[str]) -> None:
    toy, pkg, _ = toy_gan
    n = 30
    want = _single(tmp_path, pkg, n)
    home = make_site_home(tmp_path / "site", [dict(toy.data)])
    out = tmp_path / "dev"
    rc = main(["--site", str(home), "generate", "toy-gan", "-n", str(n), "-o", str(out), "--format", "png",
               "--seed", "7", "--param", "label=malignant", "--batch-size", "4", "--mode", "inline",
               "--devices", "cpu:2", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    summary = json.loads(cap.out)
    assert summary["devices"] == ["cpu", "cpu"] and summary["written"] == n and summary["complete"]
    assert sorted(w["shard"] for w in summary["workers"]) == ["0/2", "1/2"]
    assert len({w["pid"] for w in summary["workers"]}) == 2  # two processes
    assert f"{n}/{n}" in cap.err  # one bar, summed over the workers
    assert (out / MANIFEST).read_bytes() == want and verify_output(out)["ok"]
    # bad parameters are refused before any worker starts; a model that raises in a
    # worker reaches the caller as an error, not a hang
    from helpers.packages import faulty_package
    from synthmed.parallel import generate_on_devices
    from synthmed.registry.errors import ParamError

    site = Site(home)
    m = site.model("toy-gan")
    with pytest.raises(ParamError):
        generate_on_devices(m, tmp_path / "bad", 4, "cpu:2", params={"label": "nope"})
    m.close()
    site.close()
    _, faulty, _ = faulty_package(tmp_path / "faulty")
    with pytest.raises(ModelRunError, match="device worker failed"):
        generate_on_devices(Model(faulty, RunnerOptions(mode="inline")), tmp_path / "f", 4, "cpu:2",
                            format="npy", params={"behave": "raise"})


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is in the test extra (pip install -e '.[test]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_a_ray_job_on_a_local_instance_writes_what_one_process_writes(tmp_path: Path, toy_gan, local_ray) -> None:
    from synthmed.ray_engine import generate_with_ray

    toy, pkg, _ = toy_gan
    n = 30
    want = _single(tmp_path, pkg, n)
    home = make_site_home(tmp_path / "site", [dict(toy.data)])
    site = Site(home)
    model = site.model("toy-gan", batch_size=4, mode="inline")
    seen: list[tuple[int, int]] = []
    run = generate_with_ray(model, tmp_path / "ray", n, site_home=home, shards=3, format="png", seed=7,
                            params={"label": "malignant"}, progress=lambda d, t: seen.append((d, t)))
    assert run["written"] == n and run["complete"] and run["shards"] == 3
    assert run["task_resources"]["num_cpus"] < 1  # fractional: three tasks fit a 2-CPU instance
    assert seen[-1] == (n, n)
    assert (tmp_path / "ray" / MANIFEST).read_bytes() == want and verify_output(tmp_path / "ray")["ok"]
    # the same through the command line (it uses the Ray instance this process started)
    rc = main(["--site", str(home), "generate", "toy-gan", "-n", str(n), "-o", str(tmp_path / "cli"), "--format",
               "png", "--seed", "7", "--param", "label=malignant", "--engine", "ray", "--ray-shards", "2",
               "--batch-size", "4", "--no-progress", "--json"])
    assert rc == 0
    assert (tmp_path / "cli" / MANIFEST).read_bytes() == want
    # a worker whose site serves another package for the reference refuses to run
    from helpers.packages import marker_package

    impostor, _, _ = marker_package(tmp_path / "impostor", model_id="toy-gan")  # same id@version, other bytes
    other = make_site_home(tmp_path / "other", [dict(impostor.data)])
    with pytest.raises(ModelRunError, match="resolves it to package"):
        generate_with_ray(model, tmp_path / "ray2", 4, site_home=home, worker_site=other, shards=1, format="png")
    model.close()
    site.close()
