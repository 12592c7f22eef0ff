"""Splits by name and data in several places: a tensor file (.pt, .npz, .safetensors) holds any number of named
splits, every one found and none dropped without a word; ``--data`` repeated gives one scan the splits of several
sources (NAME=SOURCE naming one). Each split's curve must equal the same split scanned alone."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from interpscan import scan
from interpscan.compare import compare_runs
from interpscan.data import open_data
from interpscan.errors import DataError, UsageError
from interpscan.results import load_run
from interpscan.values import check_data, data_entry
from tests.conftest import run_cli
from tests.floats import approx32, tol32

SPLITS = ("train", "test", "shifted", "sketch")
MLP = {"in_features": 6, "width": 8, "depth": 1, "num_classes": 2}


def _split_data(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=gen), torch.randint(0, 2, (n,), generator=gen)


@pytest.fixture(scope="module")
def parts() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Four splits of 6 features and 2 classes, each of its own size."""
    return {name: _split_data(i, 10 + 3 * i) for i, name in enumerate(SPLITS)}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from interpscan.models import build_model, parse_model_spec

    root = tmp_path_factory.mktemp("mlp")
    spec = parse_model_spec("mlp", MLP)
    torch.manual_seed(0)
    a, b = build_model(spec), build_model(spec)
    torch.save(a.state_dict(), root / "a.pt")
    torch.save(b.state_dict(), root / "b.pt")
    return root / "a.pt", root / "b.pt"


def _save(path: Path, parts: dict[str, tuple[torch.Tensor, torch.Tensor]], layout: str) -> Path:
    """The splits in one file: nested dicts (.pt), or x_NAME / y_NAME entries (.pt, .npz, .safetensors)."""
    if layout == "nested":
        torch.save({name: {"inputs": x, "labels": y} for name, (x, y) in parts.items()}, path)
        return path
    flat = {f"{key}_{name}": t for name, (x, y) in parts.items() for key, t in (("x", x), ("y", y))}
    if path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in flat.items()})
    elif path.suffix == ".safetensors":
        save_file(flat, str(path))
    else:
        torch.save(flat, path)
    return path


@pytest.mark.parametrize(
    ("name", "layout"), [("d.pt", "nested"), ("d.pt", "suffixed"), ("d.npz", "suffixed"), ("d.safetensors", "suffixed")]
)
def test_a_tensor_file_holds_splits_of_any_name(
    tmp_path: Path, parts: dict[str, tuple[torch.Tensor, torch.Tensor]], name: str, layout: str
) -> None:
    # stored in another order: train and test come first, the others in the file's order
    shuffled = {k: parts[k] for k in ("shifted", "test", "sketch", "train")}
    source = open_data(str(_save(tmp_path / name, shuffled, layout)))
    assert source.splits == ("train", "test", "shifted", "sketch")
    for split, (x, y) in parts.items():
        got_x, got_y = source.read(split)
        assert isinstance(got_x, torch.Tensor)
        assert torch.equal(got_x, x)
        assert torch.equal(got_y, y)


def test_a_flat_pair_is_the_test_split_beside_named_ones(
    tmp_path: Path, parts: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> None:
    (x, y), (xs, ys) = parts["test"], parts["shifted"]
    torch.save({"x": x, "y": y, "x_shifted": xs, "y_shifted": ys}, tmp_path / "d.pt")
    assert open_data(str(tmp_path / "d.pt")).splits == ("test", "shifted")
    torch.save({"x": x, "y": y, "x_test": xs, "y_test": ys}, tmp_path / "both.pt")
    with pytest.raises(DataError, match="at its top level \\(the test split\\) and a test split besides"):
        open_data(str(tmp_path / "both.pt"))


def _curves(result: Any) -> dict[str, pd.DataFrame]:
    frame = result.results
    return {
        str(s): rows.sort_values("alpha")[["alpha", "loss", "accuracy", "n"]].reset_index(drop=True)
        for s, rows in frame.groupby("split")
    }


def test_each_split_of_a_file_equals_that_split_scanned_alone(
    tmp_path: Path, parts: dict[str, tuple[torch.Tensor, torch.Tensor]], pair: tuple[Path, Path]
) -> None:
    both = _save(tmp_path / "all.pt", parts, "nested")
    said: list[str] = []
    result = scan("mlp", *pair, both, model_args=MLP, splits="test,shifted", alphas=3, bootstrap=0, log=said.append)
    assert list(result.summary["split"]) == ["test", "shifted"]
    # the splits left out are named, once, and a split that is not there is an error listing those that are
    assert [line for line in said if "also holds" in line] == [
        "all.pt also holds the splits train, sketch, not evaluated (name the splits to evaluate with splits)"
    ]
    with pytest.raises(DataError, match=r"has no 'bogus' split \(it has: train, test, shifted, sketch\)"):
        scan("mlp", *pair, both, model_args=MLP, splits="test,bogus", alphas=3, bootstrap=0)
    many = _curves(result)
    for split in ("test", "shifted"):
        x, y = parts[split]
        torch.save({"x": x, "y": y}, tmp_path / f"{split}.pt")
        alone = _curves(scan("mlp", *pair, tmp_path / f"{split}.pt", model_args=MLP, alphas=3, bootstrap=0))["test"]
        pd.testing.assert_frame_equal(many[split], alone, **tol32())
        assert many[split]["n"].tolist() == [len(y)] * 3


def test_several_sources_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    pair: tuple[Path, Path],
) -> None:
    """A file with train and test, and a second file read as the split ood: one scan, every output carries it."""
    main = tmp_path / "main.pt"
    torch.save({f"{k}_{s}": t for s in ("train", "test") for k, t in zip("xy", parts[s], strict=True)}, main)
    xo, yo = parts["shifted"]
    torch.save({"x": xo, "y": yo}, tmp_path / "shifted.pt")
    mlp = [w for k, v in MLP.items() for w in ("-a", f"{k}={v}")]
    args = ["run", str(pair[0]), str(pair[1]), "--model", "mlp", *mlp, "--alphas", "3", "--bootstrap", "0", "--quiet"]
    sources = ["--data", str(main), "--data", f"ood={tmp_path / 'shifted.pt'}"]
    code, err = run_cli(monkeypatch, capsys, *args, *sources, "-o", str(tmp_path / "o"))
    assert code == 0, err
    out = tmp_path / "o"
    results, summary = pd.read_csv(out / "results.csv"), pd.read_csv(out / "summary.csv")
    assert list(pd.unique(results["split"])) == ["test", "ood"]  # each source's default: main's test, and ood
    assert list(summary["split"]) == ["test", "ood"]
    assert (results.loc[results["split"] == "ood", "n"] == len(yo)).all()
    record = json.loads((out / "run.json").read_text())["data"]
    assert record["name"] == "main.pt + ood=shifted.pt"
    assert [(s["given"], s["kind"], s["splits"]) for s in record["sources"]] == [
        (str(main), "tensor file", {"train": "train", "test": "test"}),
        (f"ood={tmp_path / 'shifted.pt'}", "tensor file", {"ood": "test"}),
    ]
    assert '"ood"' in (out / "results.html").read_text()
    compared = compare_runs([load_run(out, need_summary=True)], split="ood")
    assert compared.table["final_loss"].iloc[0] == approx32(float(summary["loss_end"].iloc[1]))
    # equal to the split scanned alone
    alone = scan("mlp", *pair, tmp_path / "shifted.pt", model_args=MLP, alphas=3, bootstrap=0).results
    np.testing.assert_allclose(
        results.loc[results["split"] == "ood", "loss"].to_numpy(), alone["loss"].to_numpy(), **tol32()
    )
    # a split two sources give is an error naming both; so is one that none gives
    twice = ["--data", str(main), "--data", str(tmp_path / "shifted.pt"), "-o", str(tmp_path / "o3")]
    code, err = run_cli(monkeypatch, capsys, *args, *twice)  # its own --out: the default is shared with other tests
    assert code == 2
    assert f"the split 'test' comes from both {main} and {tmp_path / 'shifted.pt'}" in err
    code, err = run_cli(monkeypatch, capsys, *args, *sources, "--split", "test,sketch", "-o", str(tmp_path / "o2"))
    assert code == 2
    assert "has no 'sketch' split (it has: train, test, ood)" in err


def test_name_equals_source_is_read_without_ambiguity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pair: tuple[Path, Path]
) -> None:
    assert data_entry("ood=data/shifted.pt") == ("ood", "data/shifted.pt")
    assert data_entry("cifar10.1=c.npz") == ("cifar10.1", "c.npz")
    assert data_entry("./a=b.pt") == (None, "./a=b.pt")  # a folder part: a path
    assert data_entry("runs/x=1/data.pt") == (None, "runs/x=1/data.pt")
    assert data_entry("cifar10") == (None, "cifar10")
    assert check_data(["test.pt"]) == "test.pt"
    assert check_data(["test.pt", "ood=o.pt"]) == ("test.pt", "ood=o.pt")
    with pytest.raises(UsageError, match="the split 'ood' is named twice"):
        check_data(["ood=a.pt", "ood=b.pt"])
    with pytest.raises(UsageError, match="names the split 'ood' of no source"):
        check_data("ood=")
    monkeypatch.chdir(tmp_path)
    Path("a=b.pt").write_bytes(b"")
    with pytest.raises(UsageError, match=r"reads as the split a of b\.pt, and a=b\.pt is also a file here"):
        scan("mlp", *pair, "a=b.pt", model_args=MLP)


def test_a_named_source_of_several_splits_gives_the_one_asked_for(
    tmp_path: Path, parts: dict[str, tuple[torch.Tensor, torch.Tensor]], pair: tuple[Path, Path]
) -> None:
    both = _save(tmp_path / "all.npz", parts, "suffixed")
    said: list[str] = []
    result = scan(
        "mlp", *pair, {"shifted": both, "id": both}, model_args=MLP, alphas=3, bootstrap=0, log=said.append
    )  # shifted: the split of that name; id: none is, so its test split
    assert list(result.summary["split"]) == ["shifted", "id"]
    assert "id=all.npz: its test split is read as id (it also holds train, shifted, sketch)" in said
    assert result.manifest.data.sources[1].splits == {"id": "test"}
    by_name = _curves(scan("mlp", *pair, both, model_args=MLP, splits="shifted,test", alphas=3, bootstrap=0))
    got = _curves(result)
    pd.testing.assert_frame_equal(got["shifted"], by_name["shifted"], **tol32())
    pd.testing.assert_frame_equal(got["id"], by_name["test"], **tol32())
    odd = tmp_path / "odd.pt"
    torch.save(
        {"a": {"x": parts["test"][0], "y": parts["test"][1]}, "b": {"x": parts["test"][0], "y": parts["test"][1]}}, odd
    )
    with pytest.raises(DataError, match="holds the splits a, b, and ood= reads one of them"):
        scan("mlp", *pair, {"ood": odd}, model_args=MLP, alphas=3, bootstrap=0)


def test_the_wise_ft_example_draws_test_and_shifted_on_one_page(tmp_path: Path) -> None:
    """examples/wise_ft.py with one epoch each: both sets scanned from the one file it writes, both curves on the
    page; the two files it also writes, each naming its split, give the same numbers."""
    example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "wise_ft.py"))
    result = example["main"](tmp_path, epochs=(1, 1), alphas=3)
    assert list(result.summary["split"]) == ["test", "shifted"]
    page = (tmp_path / "scan" / "results.html").read_text()
    assert '"name":"test"' in page.replace(" ", "")
    assert '"name":"shifted"' in page.replace(" ", "")
    files = {"test": tmp_path / "test.pt", "shifted": tmp_path / "shifted.pt"}
    again = scan(
        "mlp", tmp_path / "pretrained.pt", tmp_path / "finetuned.pt", files, model_args=example["MODEL_ARGS"], alphas=3
    )
    pd.testing.assert_frame_equal(_curves(again)["shifted"], _curves(result)["shifted"], **tol32())


def test_a_loss_that_rises_on_one_set_and_falls_on_another_is_called_a_finding() -> None:
    """Fine-tuning costs a shifted set loss (WiSE-FT's subject): beside a set the path improves, that rise is
    not blamed on the data or the weights alone."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=gen)
    w = torch.randn(3, 8, generator=gen)
    y = (x @ w.T).argmax(1)
    shifted = torch.where(torch.rand(600, generator=gen) < 0.35, (y + 1) % 3, y)  # a third labelled otherwise
    init = {"weight": torch.randn(3, 8, generator=gen) * 0.01, "bias": torch.zeros(3)}
    final = {"weight": w * 4, "bias": torch.zeros(3)}
    data = {"test": (x, y), "shifted": (x, shifted)}
    said: list[str] = []
    scan(torch.nn.Linear(8, 3), init, final, data, alphas=3, bootstrap=0, log=said.append)
    assert "the data also holds the split shifted, not evaluated (name the splits to evaluate with splits)" in said
    result = scan(torch.nn.Linear(8, 3), init, final, data, splits="test,shifted", alphas=3, bootstrap=0)
    (warning,) = [w for w in result.manifest.warnings if "final network" in w]
    assert warning.startswith("warning: the final network's loss on the shifted split (")
    assert "while it falls on test: what fine-tuning often costs a shifted set; if shifted is the network's" in warning
