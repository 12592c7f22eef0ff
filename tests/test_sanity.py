"""No silent wrong answers from defaults: without data a scan runs only on the dataset the checkpoints record, and
a final network that scores at chance, or worse than the initial one, is warned about."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli
from torch import nn

from interpscan import scan
from interpscan.errors import UsageError
from interpscan.models import build_model, parse_model_spec
from interpscan.sanity import chance_warnings
from interpscan.train import save_checkpoint


def _task() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Three classes a linear model separates, an untrained linear model and one that solves them."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=gen)
    w = torch.randn(3, 8, generator=gen)
    y = (x @ w.T).argmax(1)
    init = {"weight": torch.randn(3, 8, generator=gen) * 0.01, "bias": torch.zeros(3)}
    final = {"weight": w * 4, "bias": torch.zeros(3)}
    return x, y, init, final


def _warnings(result: object) -> list[str]:
    return [w for w in result.manifest["warnings"] if "final network" in w]  # type: ignore[attr-defined]


def test_a_trained_network_on_its_own_data_is_not_warned_about() -> None:
    x, y, init, final = _task()
    result = scan(nn.Linear(8, 3), init, final, (x, y), alphas=3, bootstrap=0)
    assert result.results["accuracy"].iloc[-1] > 0.95
    assert _warnings(result) == []


def test_a_final_network_at_chance_is_warned_about_with_the_likely_causes() -> None:
    x, y, init, final = _task()
    wrong = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]  # labels of other examples
    result = scan(nn.Linear(8, 3), init, final, (x, wrong), alphas=3, bootstrap=0)
    base = float(torch.bincount(wrong).max()) / len(wrong)
    accuracy = float(result.results["accuracy"].iloc[-1])
    (warning,) = _warnings(result)
    assert warning.startswith(
        f"warning: the final network scores {accuracy:.1%} on the test split, no better than chance ({base:.1%}, "
        "always the most common class)"
    )
    assert "data" in warning and "normalize" in warning and "key" in warning  # noqa: PT018
    assert "--" not in warning  # the library's words


def test_a_final_network_worse_than_the_initial_one_is_warned_about() -> None:
    x, y, _, final = _task()
    timid = {k: v * 0.05 for k, v in final.items()}  # the same predictions, made with less confidence
    result = scan(nn.Linear(8, 3), final, timid, (x, y), alphas=3, bootstrap=0)
    assert result.results["accuracy"].iloc[-1] > 0.95
    (warning,) = _warnings(result)
    assert "loss on the test split" in warning and "is higher than the initial network's" in warning  # noqa: PT018


def test_chance_is_judged_against_the_noise_of_the_examples() -> None:
    def frame(accuracy: float, n: int, loss: tuple[float, float] = (2.0, 1.0)) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "curve": ["all", "all"],
                "split": ["test", "test"],
                "alpha": [0.0, 1.0],
                "loss": list(loss),
                "loss_se": [0.01, 0.01],
                "accuracy": [0.1, accuracy],
                "n": [n, n],
                "segment": [1, 1],
                "refined": pd.array([False, False], dtype="boolean"),
            }
        )

    # 10 classes, 100 examples: chance is 10% ± 2·3% (two standard errors)
    assert len(chance_warnings(frame(0.15, 100), {"test": 0.1})) == 1
    assert chance_warnings(frame(0.17, 100), {"test": 0.1}) == []
    assert chance_warnings(frame(0.15, 100), {"test": None}) == []  # unknown (streamed) splits are not judged
    assert chance_warnings(frame(0.9, 100, loss=(1.0, 1.01)), {"test": 0.1}) == []  # within the noise
    assert len(chance_warnings(frame(0.9, 100, loss=(1.0, 1.1)), {"test": 0.1})) == 1


def _cnn_checkpoints(tmp_path: Path, data: str | None) -> tuple[Path, Path]:
    spec = parse_model_spec("cnn", {"width": 4})
    torch.manual_seed(0)
    save_checkpoint(build_model(spec), tmp_path / "init.pt", spec, data=data)
    save_checkpoint(build_model(spec), tmp_path / "final.pt", spec, data=data)
    return tmp_path / "init.pt", tmp_path / "final.pt"


def test_without_data_a_scan_needs_checkpoints_that_record_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    init, final = _cnn_checkpoints(tmp_path, None)
    code, err = run_cli(monkeypatch, capsys, "run", str(init), str(final), "-o", str(tmp_path / "out"), "-q")
    assert code == 2
    assert err.splitlines() == [
        "error: no --data given, and the checkpoints do not record their dataset",
        "hint: name the data the network was trained on: --data cifar10, a tensor file, an image folder or a factory",
    ]
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match=r"^no data given, and the checkpoints do not record their dataset$"):
        scan(None, init, final)


def test_a_recorded_dataset_is_scanned_and_a_recorded_file_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    init, final = _cnn_checkpoints(tmp_path, "fashion-mnist-small")
    result = scan(None, init, final, samples=64, alphas=2, bootstrap=0)
    assert result.manifest["data"]["name"] == "fashion-mnist-small"
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    init, final = _cnn_checkpoints(elsewhere, str(tmp_path / "data.pt"))  # a checkpoint naming a file: never read
    torch.save({"x": torch.randn(4, 1, 28, 28), "y": torch.zeros(4, dtype=torch.long)}, tmp_path / "data.pt")
    code, err = run_cli(monkeypatch, capsys, "run", str(init), str(final), "-o", str(tmp_path / "out"), "-q")
    assert code == 2
    assert "which is not a named dataset, and no --data was given" in err


def test_the_cli_prints_the_warning_in_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y, init, final = _task()
    torch.save({"x": x, "y": y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]}, tmp_path / "d.pt")
    (tmp_path / "net.py").write_text("from torch import nn\n\ndef make():\n    return nn.Linear(8, 3)\n")
    torch.save(init, tmp_path / "init.pt")
    torch.save(final, tmp_path / "final.pt")
    args = ["--model", f"{tmp_path / 'net.py'}:make", "--data", str(tmp_path / "d.pt"), "--alphas", "3"]
    code, err = run_cli(
        monkeypatch, capsys, "run", str(tmp_path / "init.pt"), str(tmp_path / "final.pt"), *args, "-o",
        str(tmp_path / "out"), "--no-html", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "no better than chance" in line)
    assert "(--data)" in warning and "(--normalize)" in warning and "(--key)" in warning  # noqa: PT018
    manifest = (tmp_path / "out" / "run.json").read_text()
    assert "no better than chance" in manifest
    assert "(--normalize)" in manifest  # run.json says it as the command that made it
