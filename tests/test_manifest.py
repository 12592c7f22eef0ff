"""run.json as a typed Manifest (interpscan/manifest.py) and ScanResult.load: the manifest writes exactly the
dict the scan wrote before it was typed, key by key and in order; ``ScanResult.load`` after ``save`` gives back
the same tables, manifest and per-example arrays; run.json files written by earlier versions read back; and a
damaged run.json is refused naming its key and what the key takes."""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import old_runs
import pandas as pd
import pytest
import torch

import interpscan
from interpscan import __version__
from interpscan.decisions import batched_obstacle
from interpscan.errors import OutputError, UsageError, render
from interpscan.manifest import Manifest, json_safe
from interpscan.models import CODE_KINDS
from interpscan.refine import ROUNDS, round_sizes
from interpscan.results import ScanResult
from interpscan.uncertainty import LEVEL

GOLDEN = Path(__file__).resolve().parent / "golden"


def _old_manifest(
    plan: Any, options: Any, read: Any, report: Any, hooks: Any, counts: Mapping[str, int], seconds: float, *_: Any
) -> dict[str, Any]:
    """api._manifest as it was before the manifest was typed (main at e3ae22d), word for word: the dict literal
    that run.json was written from (refine.added, written only when --refine fell short, came later)."""
    resolved, weights, device = plan.weights.model, plan.weights, plan.device
    net = resolved.model
    calib = plan.calibration
    grouping = plan.grouping
    return {
        "interpscan": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "argv": list(hooks.command) if hooks.command is not None else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
        ),
        "strategy": report.strategy,
        "strategy_reason": plan.strategy.reason,
        "strategy_note": report.note,
        "memory_format": report.memory_format,
        "memory_format_reason": plan.layout.reason,
        "memory_format_note": report.memory_format_note,
        "checkpoints": {"init": weights.init.info.to_json(), "final": weights.final.info.to_json()},
        # every checkpoint of the path in order (segment i runs from entry i − 1 to entry i); init and final
        # above are its first two
        "path": {
            "segments": len(weights.path) - 1,
            "checkpoints": [
                {"label": label, **c.info.to_json()} for label, c in zip(weights.labels, weights.path, strict=True)
            ],
            "random_init": options.random_init,
        },
        "weights": {
            "key": read.key,
            "strict": read.strict,
            "unsafe_pickle": read.unsafe_pickle,
            "batched_obstacle": batched_obstacle(net),
            **weights.matched.to_json(),
        },
        "model": {
            **resolved.spec.to_json(),
            "origin": resolved.origin,
            "source": resolved.source,
            # True only when the model's code was imported because a checkpoint named it (--trust-recorded-code)
            "runs_recorded_code": resolved.source == "recorded" and resolved.spec.kind in CODE_KINDS,
            "parameters": sum(p.numel() for p in net.parameters()),
            "tensors": len(net.state_dict()),
        },
        "data": {
            "name": plan.data.name,
            "kind": plan.data.kind,
            "location": plan.data.location,
            "transform": {"resize": read.resize, "crop": read.crop} if read.resize or read.crop else None,
            "normalization": plan.data.normalization,
            "seed": options.seed,
            "splits": {
                s.name: {
                    "n": counts.get(s.name, 0),
                    "indices": list(indices) if (indices := getattr(s, "indices", None)) is not None else "all",
                }
                for s in plan.data.splits
            },
        },
        "bn": {
            "policy": str(plan.policy.value),
            "reason": plan.policy.reason,
            "batchnorm_modules": report.bn_modules,
            "calibration_samples": report.calibration_examples,
            "calibration_indices": [int(i) for i in (getattr(calib, "indices", None) or [])],
        },
        "grid": {"alphas": list(options.grid.alphas), "endpoints_added": list(options.grid.added)},
        # --refine: points added per curve and segment, in rounds of these sizes (results.csv's refined rows)
        "refine": {"points": options.refine, "rounds": round_sizes(options.refine), "max_rounds": ROUNDS}
        if options.refine
        else None,
        "groups": None
        if grouping is None
        else {
            "specs": list(options.groups),
            "hold": str(options.hold),
            "mode": str(options.mode),
            "groups": [{"name": g.name, "source": g.source, "tensors": list(g.tensors)} for g in grouping.groups],
            "rest": list(grouping.rest),
        },
        "tol": options.tol,
        "bootstrap": {"replicates": options.bootstrap, "seed": options.seed, "level": LEVEL, "unit": "example"}
        if options.bootstrap
        else None,
        "loss": {
            "name": plan.objective.name,
            "accuracy": plan.objective.classification,
            # next_token: results.csv's n counts tokens, and perplexity is exp(loss)
            **({"per_token": True} if plan.objective.per_token else {}),
        },
        "engine": {
            "batch_size": report.batch_size,
            "chunk_size": report.chunk_size,
            "chunk_shrinks": report.chunk_shrinks,
            "dtype": report.dtype,
            "unique_points": report.unique_points,
            "calibration_batches": report.calibration_batches,
            "processes": hooks.world.size,
        },
        "warnings": [render(w, hooks.flags) for w in plan.warnings],
        "timings": {
            "calibration_s": round(report.seconds_calibration, 4),
            "evaluation_s": round(report.seconds_evaluation, 4),
            "total_s": round(seconds, 4),
        },
    }


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScanResult, dict[str, Any], Path]:
    """A scan that fills most of run.json (a path through three checkpoints, groups, --refine, the bootstrap, a
    seeded subset, BN recomputed from calibration examples, per-example losses), the dict the old literal makes
    from the same arguments, and where the scan was saved."""
    import interpscan.api as api

    seen: dict[str, Any] = {}
    typed = api._manifest

    def both(*args: Any) -> Manifest:
        seen["old"] = _old_manifest(*args)
        return typed(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "_manifest", both)
        mp.setattr(time, "strftime", lambda fmt, *_: "2026-12-06T12:00:00+0000")  # both made in the same second
        result = interpscan.scan(
            None,
            [GOLDEN / "init.pt", GOLDEN / "final.pt"],
            None,
            "fashion-mnist-small",
            splits="train,test",
            samples=20,
            bn_samples=16,
            alphas=3,
            refine=2,
            random_init=7,
            groups=["conv*", "fc"],
            bootstrap=50,
            per_example=True,
            device="cpu",
        )
    out = tmp_path_factory.mktemp("rich") / "run"
    result.save(out, html=False)
    return result, seen["old"], out


def _order(obj: Any) -> Any:
    """Every object's keys in order, nested: what comparing two dicts with == does not see."""
    if isinstance(obj, dict):
        return [(k, _order(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [_order(v) for v in obj]
    return None


def _within(obj: Any, written: Any) -> Any:
    """``obj`` with only the keys ``written`` has, nested: a newer version's manifest as an older one wrote it."""
    if isinstance(obj, dict) and isinstance(written, dict):
        return {k: _within(v, written[k]) for k, v in obj.items() if k in written}
    if isinstance(obj, list) and isinstance(written, list) and len(obj) == len(written):
        return [_within(v, w) for v, w in zip(obj, written, strict=True)]
    return obj


def test_the_typed_manifest_writes_what_the_dict_literal_wrote(rich: tuple[ScanResult, dict[str, Any], Path]) -> None:
    result, old, out = rich
    assert result.has_manifest
    new = result.manifest.to_json()
    assert list(new) == list(old)
    for key in old:  # key by key, so that a difference names its key
        assert new[key] == json_safe(old[key]), key
    assert _order(new) == _order(json_safe(old))
    # the parts this scan had to fill for the comparison to mean something
    assert old["path"]["segments"] == 2
    assert old["groups"]["groups"]
    assert old["refine"]["points"] == 2
    assert old["bootstrap"]["replicates"] == 50
    assert len(old["data"]["splits"]["test"]["indices"]) == 20
    assert len(old["bn"]["calibration_indices"]) == 16
    assert old["data"]["normalization"] == (0.286, 0.353)  # a tuple in the old dict; a list in run.json
    assert new["data"]["normalization"] == [0.286, 0.353]
    # on disk: the same, with the files written
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk == {**json_safe(old), "outputs": ["results.csv", "summary.csv", "run.json", "per_example.npz"]}


def test_load_inverts_save(rich: tuple[ScanResult, dict[str, Any], Path]) -> None:
    result, _, out = rich
    back = ScanResult.load(out)
    assert back.has_summary
    assert result.has_summary
    # the CSVs hold 10 significant digits; dtypes and everything else come back as they were
    pd.testing.assert_frame_equal(back.results, result.results, rtol=1e-9, atol=0)
    pd.testing.assert_frame_equal(back.summary, result.summary, rtol=1e-9, atol=0)
    assert set(back.results["segment"]) == {1, 2}
    assert back.results["refined"].any()
    assert set(back.results["curve"]) == {"all", "conv1", "conv2", "fc"}
    assert result.has_manifest
    assert back.manifest == replace(
        result.manifest, outputs=("results.csv", "summary.csv", "run.json", "per_example.npz")
    )
    assert back.examples is not None
    assert result.examples is not None
    assert sorted(back.examples) == sorted(result.examples)
    for name, array in result.examples.items():
        assert back.examples[name].dtype == array.dtype, name
        np.testing.assert_array_equal(back.examples[name], array)
    assert back.files == {n: out / n for n in ("results.csv", "summary.csv", "run.json", "per_example.npz")}
    assert back.source == out
    assert ScanResult.load(out / "results.csv", examples=False).examples is None
    assert interpscan.ScanResult is ScanResult  # what scan returns is what load returns


def test_the_manifest_reads_back_equal_and_indexes_as_the_dict_did(
    rich: tuple[ScanResult, dict[str, Any], Path],
) -> None:
    result, old, _ = rich
    m = result.manifest
    assert m is not None
    assert Manifest.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert m["bn"]["policy"] == m.bn.policy == "recompute"  # code written against the dict keeps working
    assert m.path is not None
    assert m["path"]["checkpoints"][2]["label"] == m.path.checkpoints[2].label == "random-init"
    assert m.groups is not None
    assert [g.name for g in m.groups.groups] == ["conv1", "conv2", "fc"]
    assert m.data.splits["test"].indices == tuple(old["data"]["splits"]["test"]["indices"])
    assert m.checkpoints.final.label is None
    assert "label" not in m["checkpoints"]["final"]
    assert m.loss is not None
    assert not m.loss.per_token
    assert "per_token" not in m["loss"]
    assert m.outputs is None
    assert "outputs" not in m.to_json()
    with pytest.raises(KeyError):
        m["no such key"]
    # a model's arguments are free-form JSON: held as JSON holds them, so that what reads back is equal
    shaped = replace(m, model=replace(m.model, args={"shape": (1, 28, 28), "bn": True}))
    assert shaped.model.args == {"shape": [1, 28, 28], "bn": True}
    assert Manifest.from_json(shaped.to_json()) == shaped


@pytest.mark.parametrize("run", [old_runs.FIRST, old_runs.GROUPS], ids=["0f07404", "8a65aae"])
def test_a_run_an_earlier_version_wrote_reads_back(run: Path, tmp_path: Path) -> None:
    written = json.loads((run / "run.json").read_text())
    back = ScanResult.load(shutil.copytree(run, tmp_path / "run"))
    m = back.manifest
    assert m is not None
    assert back.has_summary
    assert m.interpscan == "0.1.0"
    assert m.bn.policy == "recompute"
    assert m.grid.alphas == (0.0, 0.5, 1.0)
    assert m.data.normalization == (0.286, 0.353)
    assert set(m.data.splits) == {"train", "test"}
    assert m.data.splits["test"].n == 20
    # keys added since: their defaults, which say what held before them (or None: not known)
    assert (m.strategy_reason, m.memory_format, m.path, m.refine, m.bootstrap) == (None, None, None, None, None)
    assert (m.engine.processes, m.engine.chunk_shrinks, m.engine.dtype) == (1, 0, "float32")
    assert m.data.transform is None
    assert m.checkpoints.final.averaged == ()
    if run == old_runs.FIRST:
        assert (m.weights, m.groups, m.loss, m.warnings, m.model.source) == (None, None, None, (), None)
    else:
        assert m.groups is not None
        assert [g.name for g in m.groups.groups] == ["conv1", "conv2", "fc"]
        assert m.weights is not None
        assert m.weights.dtypes.checkpoints["final"] == {"float32": 12, "int64": 2}
        assert m.loss is not None
        assert (m.loss.name, m.loss.accuracy) == ("cross_entropy", True)
    # what it wrote comes back, the newer keys aside
    assert _within(m.to_json(), written) == written
    assert Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda j: j.update(bn="interpolate"), 'bn is "interpolate", expected an object'),
        (lambda j: j["bn"].pop("policy"), "bn.policy is missing"),
        (lambda j: j.pop("grid"), "grid is missing"),
        (lambda j: j["grid"].update(alphas=["a", "b"]), 'grid.alphas[0] is "a", expected a number'),
        (lambda j: j["grid"].update(alphas=0.5), "grid.alphas is 0.5, expected a list of numbers"),
        (lambda j: j["engine"].update(batch_size=True), "engine.batch_size is true, expected a whole number"),
        (lambda j: j["engine"].update(batch_size=2.5), "engine.batch_size is 2.5, expected a whole number"),
        (lambda j: j.update(tol="0"), 'tol is "0", expected a number'),
        (
            lambda j: j["data"]["splits"]["test"].update(indices="some"),
            'data.splits.test.indices is "some", expected a list of whole numbers or "all"',
        ),
        (
            lambda j: j["data"].update(normalization=[0.3]),
            "data.normalization is [0.3], expected a list of 2 values or null",
        ),
        (
            lambda j: j["checkpoints"]["final"].update(size="45845"),
            'checkpoints.final.size is "45845", expected a whole number',
        ),
        (lambda j: j.update(groups=[]), "groups is [], expected an object or null"),
        (lambda j: j["groups"]["groups"][1].pop("name"), "groups.groups[1].name is missing"),
    ],
)
def test_a_damaged_run_json_is_refused_naming_its_key(edit: Any, message: str, tmp_path: Path) -> None:
    run = shutil.copytree(old_runs.GROUPS, tmp_path / "run")
    manifest = json.loads((run / "run.json").read_text())
    edit(manifest)
    (run / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputError) as info:
        ScanResult.load(run)
    assert str(info.value) == f"{run / 'run.json'}: {message}"
    assert "restore it" in (info.value.hint or "")


def test_keys_a_later_version_adds_are_left_aside() -> None:
    written = json.loads((old_runs.GROUPS / "run.json").read_text())
    later = {**written, "planes": {"n": 3}, "bn": {**written["bn"], "momentum": 0.1}}
    assert Manifest.from_json(later) == Manifest.from_json(written)


def test_a_bare_results_csv_loads_without_summary_or_manifest_and_cannot_be_saved(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(old_runs.FIRST / "results.csv", bare / "results.csv")
    back = ScanResult.load(bare / "results.csv")
    assert not back.has_manifest
    assert not back.has_summary
    with pytest.raises(UsageError, match=r"has no summary\.csv: it was read from a results\.csv alone"):
        _ = back.summary
    with pytest.raises(UsageError, match=r"has no run\.json: it was read from a results\.csv alone"):
        _ = back.manifest
    assert back.examples is None
    assert back.files == {"results.csv": bare / "results.csv"}
    assert back.figure().layout.title.text == str(bare / "results.csv")
    with pytest.raises(UsageError, match="cannot be saved as a run"):
        back.save(tmp_path / "again")


def test_a_damaged_per_example_file_is_refused(rich: tuple[ScanResult, dict[str, Any], Path], tmp_path: Path) -> None:
    _, _, out = rich
    run = shutil.copytree(out, tmp_path / "run")
    (run / "per_example.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(OutputError, match=r"per_example.npz: not an .npz archive of arrays"):
        ScanResult.load(run)
    assert ScanResult.load(run, examples=False).examples is None  # plot and compare never read it
    other = {"all/valid/alpha": np.zeros(3)}
    np.savez(run / "per_example.npz", **other)
    with pytest.raises(OutputError, match="'all/valid/alpha' names no curve and split of the results"):
        ScanResult.load(run)
    np.savez(run / "per_example.npz", **{"all/test/alpha": np.zeros(2)})
    with pytest.raises(OutputError, match=r"all/test/alpha has 2 rows where results\.csv has 10 points"):
        ScanResult.load(run)
