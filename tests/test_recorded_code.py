"""A checkpoint is data: a model spec recorded in it that names Python code (``os:system``, ``subprocess:run``,
``builtins:exec``, a file) is never imported or called unless the user names it with --model or passes
--trust-recorded-code. Each payload would create a marker file if it ran; the marker must not exist."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import run_cli, run_cli_output
from safetensors.torch import save_file
from torch import nn

from interpscan.checkpoints import META_KEY

# A tiny model whose state the payload checkpoints carry (any tensors do: the run must stop before using them).
STATE = {"fc.weight": torch.zeros(10, 784), "fc.bias": torch.zeros(10)}


def payloads(marker: Path) -> dict[str, dict[str, object]]:
    """Recorded specs that would create ``marker`` if interpscan imported and called what they name."""
    return {
        "os:system": {"model": "os:system", "model_args": {"command": f"touch {marker}"}},
        "subprocess:run": {"model": "subprocess:run", "model_args": {"args": ["touch", str(marker)]}},
        "builtins:exec": {"model": "builtins:exec", "model_args": {"source": f"open({str(marker)!r}, 'w').close()"}},
        "subprocess:getoutput": {"model": "subprocess:getoutput", "model_args": {"cmd": f"touch {marker}"}},
    }


def payload_file(tmp_path: Path, marker: Path) -> Path:
    """A Python file whose import alone creates ``marker``."""
    path = tmp_path / "evil.py"
    path.write_text(f"open({str(marker)!r}, 'w').close()\n\ndef make():\n    raise SystemExit(0)\n")
    return path


def save(spec: dict[str, object], path: Path, fmt: str) -> Path:
    if fmt == "torch":
        torch.save({"state_dict": STATE, META_KEY: spec}, path)
    else:
        save_file(STATE, str(path), metadata={META_KEY: json.dumps(spec), "format": "pt"})
    return path


def both(tmp_path: Path, spec: dict[str, object], fmt: str) -> tuple[Path, Path]:
    suffix = ".pt" if fmt == "torch" else ".safetensors"
    return save(spec, tmp_path / f"init{suffix}", fmt), save(spec, tmp_path / f"final{suffix}", fmt)


def assert_refused(code: int, err: str, marker: Path, text: str, ckpt: Path) -> None:
    assert not marker.exists(), "the payload ran"
    assert code == 2, err
    assert "Traceback" not in err
    what = "a Python file" if text.endswith(".py:make") else "a Python module"
    assert err.splitlines() == [
        f"error: {ckpt} records model {text!r}, {what} to import and call; interpscan does not run code that a "
        "checkpoint names",
        f"hint: if you trust this checkpoint, pass --model {text} (it keeps the recorded --model-arg values) or "
        "--trust-recorded-code; `interpscan inspect` shows what a checkpoint records",
    ]


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
@pytest.mark.parametrize("name", ["os:system", "subprocess:run", "builtins:exec", "subprocess:getoutput", "file"])
@pytest.mark.parametrize("command", ["run", "layers"])
def test_a_recorded_callable_never_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    name: str,
    command: str,
) -> None:
    marker = tmp_path / "PWNED"
    spec = {"model": f"{payload_file(tmp_path, marker)}:make", "model_args": {}} if name == "file" else None
    spec = spec or payloads(marker)[name]
    init, final = both(tmp_path, spec, fmt)
    monkeypatch.chdir(tmp_path)
    args = [command, str(init), str(final)]
    if command == "run":
        # a dataset that is not there and may not be downloaded: the refusal must come before any data is read
        args += ["--data", "cifar10", "--data-root", str(tmp_path / "nodata"), "--no-download", "-o", "out"]
    code, err = run_cli(monkeypatch, capsys, *args)
    assert_refused(code, err, marker, str(spec["model"]), final)
    assert not (tmp_path / "out").exists()  # nothing written
    assert not (tmp_path / "nodata").exists()


def test_the_installed_entry_point_refuses_too(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    init, final = both(tmp_path, payloads(marker)["os:system"], "torch")
    proc = subprocess.run(
        [sys.executable, "-m", "interpscan", "run", str(init), str(final), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert_refused(proc.returncode, proc.stderr, marker, "os:system", final)


def test_inspect_shows_recorded_code_without_running_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    path = save(payloads(marker)["os:system"], tmp_path / "final.pt", "torch")
    code, out, _ = run_cli_output(monkeypatch, capsys, "inspect", str(path))
    assert code == 0
    model_line = next(line for line in out.splitlines() if line.startswith("model:"))
    assert model_line.split(None, 1)[1] == (
        f"os:system (recorded: command=touch {marker}) - Python code: imported only with --model or "
        "--trust-recorded-code"
    )
    code, out, _ = run_cli_output(monkeypatch, capsys, "inspect", str(path), "--format", "json")
    assert json.loads(out)["model"] == {
        "source": "recorded",
        "model": "os:system",
        "args": {"command": f"touch {marker}"},
        "code": True,
    }
    assert not marker.exists()


# ------------------------------------------------------------------------- what trust and --model allow

NET_PY = """
    from torch import nn

    def make(width=8):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))
"""


@pytest.fixture
def recorded_file_ckpts(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Checkpoints of the model in ``net.py:make`` (width 6), recording that file as their model."""
    from interpscan.models import build_model, parse_model_spec
    from interpscan.train import save_checkpoint

    net = tmp_path / "net.py"
    net.write_text(textwrap.dedent(NET_PY))
    spec = parse_model_spec(f"{net}:make", {"width": 6})
    torch.manual_seed(0)
    models: list[nn.Module] = [build_model(spec), build_model(spec)]
    save_checkpoint(models[0], tmp_path / "init.pt", spec)
    save_checkpoint(models[1], tmp_path / "final.pt", spec)
    return tmp_path / "init.pt", tmp_path / "final.pt", net


def _scan(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    flags = ["--data", "fashion-mnist-small", "--samples", "40", "--alphas", "3", "--no-html", "-q"]
    return run_cli(monkeypatch, capsys, "run", *args, *flags)


def test_a_recorded_file_runs_with_trust_and_run_json_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recorded_file_ckpts: tuple[Path, Path, Path],
) -> None:
    init, final, net = recorded_file_ckpts
    code, err = _scan(monkeypatch, capsys, str(init), str(final), "-o", str(tmp_path / "refused"))
    assert code == 2
    assert f"records model '{net}:make', a Python file to import and call" in err
    assert not (tmp_path / "refused").exists()

    code, err = _scan(monkeypatch, capsys, str(init), str(final), "--trust-recorded-code", "-o", str(tmp_path / "a"))
    assert code == 0, err
    model = json.loads((tmp_path / "a" / "run.json").read_text())["model"]
    assert model["runs_recorded_code"] is True
    assert model["source"] == "recorded"
    assert model["args"] == {"width": 6}
    assert model["origin"] == f"recorded in {final}, code trusted with --trust-recorded-code"

    # --model naming the file is the user's own choice: no flag needed, the recorded width is kept
    code, err = _scan(monkeypatch, capsys, str(init), str(final), "--model", f"{net}:make", "-o", str(tmp_path / "b"))
    assert code == 0, err
    model = json.loads((tmp_path / "b" / "run.json").read_text())["model"]
    assert model["runs_recorded_code"] is False
    assert model["source"] == "--model"
    assert model["args"] == {"width": 6}
    a = (tmp_path / "a" / "results.csv").read_text()
    assert a == (tmp_path / "b" / "results.csv").read_text()  # the same model either way


def test_layers_builds_a_recorded_file_only_with_trust(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recorded_file_ckpts: tuple[Path, Path, Path],
) -> None:
    init, final, _ = recorded_file_ckpts
    code, err = run_cli(monkeypatch, capsys, "layers", str(init), str(final))
    assert code == 2
    assert "interpscan does not run code that a checkpoint names" in err
    code, out, err = run_cli_output(
        monkeypatch, capsys, "layers", str(init), str(final), "--trust-recorded-code", "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["model"].endswith("net.py:make")
    assert [g["group"] for g in report["groups"]] == ["1", "3"]  # the Sequential's layers with parameters


def test_a_recorded_zoo_model_needs_no_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from interpscan.models import build_model, parse_model_spec
    from interpscan.train import save_checkpoint

    spec = parse_model_spec("mlp", {"width": 8, "depth": 1})
    torch.manual_seed(0)
    save_checkpoint(build_model(spec), tmp_path / "init.pt", spec)
    save_checkpoint(build_model(spec), tmp_path / "final.pt", spec)
    out = tmp_path / "out"
    code, err = _scan(monkeypatch, capsys, str(tmp_path / "init.pt"), str(tmp_path / "final.pt"), "-o", str(out))
    assert code == 0, err
    model = json.loads((out / "run.json").read_text())["model"]
    assert (model["spec"], model["source"], model["runs_recorded_code"]) == ("mlp", "recorded", False)
