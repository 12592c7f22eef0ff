"""Inputs that used to give wrong numbers with exit 0: ignored labels, a zero-length path, empty or non-finite data,
resuming after an input's contents changed, and `demo --force` over the user's own checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from floats import approx32
from torch import nn

from interpscan import scan
from interpscan.api import ScanConfig, run_scan
from interpscan.errors import DataError, OutputError, UsageError
from interpscan.models import build_model, parse_model_spec


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5))


@pytest.fixture
def endpoints() -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    return _mlp(0), _mlp(0).state_dict(), _mlp(1).state_dict()


def _data(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(n, 12, generator=gen), torch.randint(0, 5, (n,), generator=gen)


def _besides_chance(warnings: list[str]) -> list[str]:
    """The warnings but the one about a final network at chance (these endpoints are random networks)."""
    return [w for w in warnings if "no better than chance" not in w]


def test_label_minus_100_is_left_out_of_every_mean(endpoints) -> None:  # type: ignore[no-untyped-def]
    """Cross-entropy's ignore_index, in the last batches as in the first: the curve equals the one of the data
    without those examples (loss, its standard error, accuracy and n), and a warning says how many."""
    model, init, final = endpoints
    x, y = _data()
    ignored = torch.tensor([2, 17, 28, 29])
    y_marked = y.clone()
    y_marked[ignored] = -100
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[ignored] = False
    marked = scan(model, init, final, (x, y_marked), alphas=5, batch_size=8)
    clean = scan(model, init, final, (x[keep], y[keep]), alphas=5, batch_size=8)
    cols = ["loss", "loss_se", "accuracy", "n"]
    assert (marked.results["n"] == 26).all()
    # batches of other examples: a CPU may pick other kernels for them, so float32 steps, not 1e-9
    assert marked.results[cols].to_numpy() == approx32(clean.results[cols].to_numpy())
    assert _besides_chance(marked.manifest["warnings"]) == [
        "warning: 4 examples of the test split are labelled -100 (cross-entropy's ignore_index) and left out of "
        "every mean"
    ]
    assert _besides_chance(clean.manifest["warnings"]) == []


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (-1, r"and the targets \[6\]: targets include class -1; class labels run from 0 to classes − 1"),
        (-101, "targets include class -101"),
        (5, "targets go up to class 5 but the model outputs 5 classes"),
    ],
)
def test_a_bad_label_in_the_last_batch_is_an_error(endpoints, label: int, message: str) -> None:  # type: ignore[no-untyped-def]
    model, init, final = endpoints
    x, y = _data()
    y[-1] = label
    with pytest.raises(DataError, match=message):
        scan(model, init, final, (x, y), alphas=2, batch_size=8)


def test_nothing_to_evaluate_is_an_error(endpoints) -> None:  # type: ignore[no-untyped-def]
    model, init, final = endpoints
    x, y = _data()
    with pytest.raises(DataError, match=r"the test split of .* has no examples: nothing to evaluate"):
        scan(model, init, final, (x[:0], y[:0]), alphas=2)
    with pytest.raises(DataError, match="nothing to evaluate on the test split: all 30 of its examples are labelled"):
        scan(model, init, final, (x, torch.full_like(y, -100)), alphas=2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:0], y[:0]), batch_size=4)
    with pytest.raises(DataError, match="nothing to evaluate on the test split: it is empty"):
        scan(model, init, final, loader, alphas=2)


def test_a_path_of_length_zero_is_refused(endpoints, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, init, _ = endpoints
    torch.save(init, tmp_path / "a.pt")
    torch.save({k: v.clone() for k, v in init.items()}, tmp_path / "copy.pt")
    with pytest.raises(UsageError, match=r"init and final are the same network \(the same file\)"):
        scan(model, tmp_path / "a.pt", tmp_path / "a.pt", _data(), alphas=2)
    with pytest.raises(UsageError, match="init and final are the same network: every tensor is equal"):
        scan(model, tmp_path / "a.pt", tmp_path / "copy.pt", _data(), alphas=2)
    moved = {k: v.clone() for k, v in init.items()}
    moved["3.bias"] += 1e-6  # one tensor moved a little: a real path
    assert scan(model, init, moved, _data(), alphas=2).results["loss"].notna().all()


def test_non_finite_inputs_are_said(endpoints) -> None:  # type: ignore[no-untyped-def]
    model, init, final = endpoints
    x, y = _data()
    x[4, 1] = math.nan
    x[9, 0] = math.inf
    result = scan(model, init, final, (x, y), alphas=2)
    assert _besides_chance(result.manifest["warnings"]) == [
        "warning: the test split holds 2 non-finite input values — the scan runs; expect NaN losses"
    ]
    assert result.results["loss"].isna().all()


def _interrupted(config: ScanConfig):  # type: ignore[no-untyped-def]
    """The snapshot a scan of ``config`` leaves after its first batch."""
    snapshots = []
    run_scan(config, on_batch=snapshots.append)
    return snapshots[0]


def test_resume_checks_contents_not_names(tmp_path: Path) -> None:
    """A data file, a model file or a loss file replaced by another of the same name and size: the partial scan
    no longer belongs to the scan, and resuming is refused (it would mix old and new numbers)."""
    x, y = _data(24)
    torch.save({"inputs": x, "targets": y}, tmp_path / "data.pt")
    net = tmp_path / "net.py"
    net.write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), "
        "nn.Linear(8, 5))  # v1\n"
    )
    loss = tmp_path / "loss.py"
    loss.write_text(
        "import torch.nn.functional as F\n\ndef ce(o, t):\n    return F.cross_entropy(o, t, reduction='none')  # 1\n"
    )
    torch.save(_mlp(0).state_dict(), tmp_path / "init.pt")
    torch.save(_mlp(1).state_dict(), tmp_path / "final.pt")
    config = ScanConfig.from_values(
        [tmp_path / "init.pt", tmp_path / "final.pt"],
        {"data": str(tmp_path / "data.pt"), "model": f"{net}:make", "loss": f"{loss}:ce", "alphas": 3, "batch_size": 8},
    )
    snapshot = _interrupted(config)
    assert run_scan(config, resume=snapshot).results["n"].tolist() == [24, 24, 24]  # unchanged: resumes

    def refused() -> None:
        with pytest.raises(UsageError, match="made with other inputs or options"):
            run_scan(config, resume=snapshot)

    size = (tmp_path / "data.pt").stat().st_size
    y2 = y.clone()
    y2[0] = (y2[0] + 1) % 5
    torch.save({"inputs": x, "targets": y2}, tmp_path / "data.pt")
    assert (tmp_path / "data.pt").stat().st_size == size
    refused()
    torch.save({"inputs": x, "targets": y}, tmp_path / "data.pt")
    net.write_text(net.read_text().replace("# v1", "# v2"))
    refused()
    net.write_text(net.read_text().replace("# v2", "# v1"))
    loss.write_text(loss.read_text().replace("# 1", "# 2"))
    refused()


def test_demo_force_replaces_its_own_checkpoints_never_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`demo --force` replaces the init.pt/final.pt an earlier demo wrote, never a user's, nor one changed since;
    it says so before training. (Training and the scan are stubbed: the writes are what is tested.)"""
    from interpscan import demo
    from interpscan.checkpoints import load_checkpoint

    monkeypatch.setattr(demo, "train", lambda *args, **kwargs: [])
    monkeypatch.setattr(demo, "scan", lambda *args, **kwargs: None)
    out = tmp_path / "demo"
    out.mkdir()
    spec = parse_model_spec("cnn", {"width": 2})
    torch.save(build_model(spec).state_dict(), out / "init.pt")
    mine = (out / "init.pt").read_bytes()
    with pytest.raises(OutputError, match=r"demo: init\.pt was not written by interpscan\."):
        demo.run_demo(out, epochs=1)
    assert (out / "init.pt").read_bytes() == mine
    assert sorted(p.name for p in out.iterdir()) == ["init.pt"]
    (out / "init.pt").unlink()
    demo.run_demo(out, epochs=1)
    demo.run_demo(out, epochs=3)  # its own files: replaced
    assert load_checkpoint(out / "final.pt").info.metadata["interpscan"]["epoch"] == 3
    with (out / "final.pt").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(OutputError, match=r"final\.pt changed since interpscan wrote it"):
        demo.run_demo(out, epochs=1)


def test_tensors_in_memory_are_fingerprinted_by_content() -> None:
    """0-d tensors (a BN layer's num_batches_tracked) included: a resume of tensors passed in memory checks them."""
    from interpscan.inputs import content_digest, in_memory

    state = nn.BatchNorm1d(3).state_dict()
    assert state["num_batches_tracked"].dim() == 0
    before = content_digest(in_memory(state, "init"))
    state["num_batches_tracked"] += 1
    assert content_digest(in_memory(state, "init")) != before
