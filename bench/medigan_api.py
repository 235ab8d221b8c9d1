"""All of medigan 1.0.0's ``Generators`` methods, called with the same arguments on medigan
and on synthmed, side by side (the call list: ``tests/helpers/medigan_calls.py``).

It uses ``bench/medigan.py``'s medigan environment (made on first use) and sets up, under
``--cache``: a medigan working folder with ``config/global.json`` (medigan's entries
00001..00015 from ``tests/fixtures/medigan`` plus the template ``00099_TEMPLATE_DCGAN_128``)
and the template zip (``bench/medigan_template``, ngf 4, random weights), and a synthmed
site whose records synthmed's medigan importer made from the same entries (the
template's pinned to the same zip). medigan runs in a process of its own, offline.

Prints JSON: per call, medigan's answer, synthmed's answer and the verdict ("same",
"documented: <why>" for a deliberate difference, or "DIFFERENT"). ``--record`` writes
medigan's answers to ``tests/fixtures/medigan/answers-1.0.0.json``, which
``tests/test_medigan_compat.py`` checks synthmed against without medigan installed.

    .venv/bin/python bench/medigan_api.py [--record] [--out results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import medigan as bench  # noqa: E402  (bench/medigan.py)
from helpers.medigan_calls import ANSWERS, build_side_by_side, compare, prepare_work, run_calls  # noqa: E402

MEDIGAN_SIDE = r"""
import importlib.util, json, logging, sys
from pathlib import Path
logging.disable(logging.CRITICAL)
spec = importlib.util.spec_from_file_location("medigan_calls", sys.argv[1])
mc = importlib.util.module_from_spec(spec); sys.modules["medigan_calls"] = mc; spec.loader.exec_module(mc)
import inspect
from medigan import Generators
answers = mc.run_calls(Generators(), Path(sys.argv[2]), medigan=True)
answers["__signatures__"] = {name: [p for p in inspect.signature(getattr(Generators, name)).parameters if p != "self"]
                             for name in mc.MEDIGAN_METHODS}
print("\n@@ANSWERS@@" + json.dumps(answers))
"""


def synthmed_answers(home: Path, local_files: dict[str, bytes]) -> dict[str, Any]:
    from synthmed import Generators

    with tempfile.TemporaryDirectory(prefix="synthmed-api-") as tmp:
        work = Path(tmp)
        prepare_work(work, local_files)
        old = os.getcwd()
        os.chdir(work)
        try:
            return run_calls(Generators(home, mode="inline", progress=False), work, medigan=False)
        finally:
            os.chdir(old)


def medigan_answers(py: Path, setup: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="medigan-api-") as tmp:
        work = Path(tmp)
        prepare_work(work, setup["local_files"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHMED_")}
        env["MPLBACKEND"] = "Agg"
        proc = subprocess.run([str(py), "-c", MEDIGAN_SIDE, str(ROOT / "tests" / "helpers" / "medigan_calls.py"),
                               str(work)], cwd=setup["work"], env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 or "@@ANSWERS@@" not in proc.stdout:
            raise SystemExit(f"medigan's side failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        answers: dict[str, Any] = json.loads(proc.stdout.split("@@ANSWERS@@", 1)[1])
        return answers


def signature_check(theirs: dict[str, list[str]]) -> dict[str, Any]:
    """Each medigan method: does synthmed's take medigan's parameters by name and in order
    (its own extras keyword-only, or after medigan's)?"""
    import inspect

    from synthmed import Generators

    out = {}
    for name, params in theirs.items():
        sig = inspect.signature(getattr(Generators, name)).parameters.values()
        ours = [p.name for p in sig if p.name != "self" and p.kind != p.KEYWORD_ONLY]
        wanted = [p for p in params if p not in ("args", "kwargs")]
        ours_named = [p for p in ours if p not in ("args", "kwargs")]
        ok = ours_named[:len(wanted)] == wanted and ("kwargs" not in params or "kwargs" in ours)
        out[name] = "same" if ok else f"medigan {params}, synthmed {ours}"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "synthmed-bench" / "medigan")
    ap.add_argument("--record", action="store_true", help=f"write medigan's answers to {ANSWERS}")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    py = bench.medigan_venv(args.cache)
    setup = build_side_by_side(args.cache)
    theirs = medigan_answers(py, setup)
    ours = synthmed_answers(setup["home"], setup["local_files"])
    verdict = compare(theirs, ours)
    result = {"calls": {name: {"verdict": verdict[name], "medigan": theirs[name], "synthmed": ours.get(name)}
                        for name in verdict},
              "signatures": signature_check(theirs["__signatures__"]),
              "summary": {"same": sum(v == "same" for v in verdict.values()),
                          "documented": sum(v.startswith("documented") for v in verdict.values()),
                          "different": sorted(n for n, v in verdict.items() if v == "DIFFERENT")}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.record:
        ANSWERS.write_text(json.dumps(theirs, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
