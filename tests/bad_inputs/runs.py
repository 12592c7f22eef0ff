"""Runs and their output directories: data whose numbers would have been wrong (ignored or out-of-range labels,
non-finite or empty inputs, a path of length zero), output locations that hold something the user must not lose,
locks that cannot be checked, and resumes that would mix two scans."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .case import OUT, Case, good_state, run_args

TITLE = "Runs and output directories"
NAMES = (
    "records-os-system",
    "records-subprocess-run",
    "records-builtins-exec",
    "records-code-in-safetensors",
    "records-a-python-file",
    "alphas-hundred-million",
    "alpha-range-beyond-float32",
    "tol-negative",
    "label-ignore-index",
    "label-out-of-range-late",
    "label-negative",
    "labels-all-ignored",
    "targets-float",
    "inputs-nan",
    "inputs-inf",
    "data-empty",
    "same-file-twice",
    "identical-copies",
    "loss-mse-on-class-labels",
    "loss-returns-scalar",
    "loss-raises",
    "split-missing",
    "recompute-without-train",
    "key-missing",
    "out-is-a-file",
    "out-under-a-file",
    "out-not-empty",
    "out-holds-interrupted-scan",
    "resume-nothing",
    "resume-damaged-partial",
    "resume-after-data-changed",
    "force-keeps-other-files",
    "lock-other-kernel",
    "lock-older-interpscan",
    "lock-garbage",
    "demo-force-over-user-checkpoints",
)


def _data(path: Path, n: int = 16, **change: object) -> Path:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=gen)
    y = torch.arange(n) % 10
    payload = {"inputs": x, "targets": y}
    for key, value in change.items():
        payload[key] = value(payload[key]) if callable(value) else value
    torch.save(payload, path)
    return path


def _set(index: int, value: float) -> object:
    def apply(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t.view(t.shape[0], -1)[index, 0] = value
        return t

    return apply


def _label(index: int, value: int) -> object:
    def apply(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t[index] = value
        return t

    return apply


def _partial(out: Path, init: Path, final: Path, data: Path) -> None:
    """A partial scan of `run INIT FINAL --data DATA --batch-size 8`, as an interrupted run leaves it."""
    from interpscan.api import ScanConfig, run_scan
    from interpscan.rundir import PARTIAL_NAME

    config = ScanConfig.from_values(
        [init, final],
        {
            "data": str(data),
            "model": "cnn",
            "model_args": {"width": 2},
            "alphas": 2,
            "bn": "interpolate",
            "batch_size": 8,
        },
    )
    snapshots: list[object] = []
    run_scan(config, on_batch=snapshots.append)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(snapshots[0].to_state(), out / PARTIAL_NAME)  # type: ignore[attr-defined]


def build(root: Path) -> list[Case]:
    """Write the checkpoints, data files and output directories of every case into ``root``."""
    init, final = root / "init.pt", root / "final.pt"
    torch.save(good_state(0), init)
    torch.save(good_state(1), final)
    cases: list[Case] = []

    def run(name: str, description: str, error: str, *extra: str, exit_code: int = 2, **kw: object) -> None:
        cases.append(Case(name, description, run_args(init, final, *extra), exit_code, error, **kw))  # type: ignore[arg-type]

    def data(name: str, **change: object) -> str:
        return str(_data(root / name, **change))

    # -- a checkpoint is data: a model spec it records that names code is refused; the payload would write a marker
    state = good_state(0)

    def recorded(name: str, description: str, spec: dict[str, object], marker: Path, fmt: str = "torch") -> None:
        if fmt == "torch":
            path = root / f"{name}.pt"
            torch.save({"state_dict": state, "interpscan": spec}, path)
        else:
            path = root / f"{name}.safetensors"
            save_file(state, str(path), metadata={"interpscan": json.dumps(spec), "format": "pt"})
        args = ("run", str(path), str(path), "--samples", "16", "--alphas", "2", "-q", "--no-html", "--out", OUT)
        cases.append(Case(name, description, args, 2, "interpscan does not run code that a checkpoint names",
                          must_not_exist=(marker,)))  # fmt: skip

    marker = root / "PWNED"
    recorded(
        "records-os-system",
        "a checkpoint recording model os:system, command=touch PWNED",
        {"model": "os:system", "model_args": {"command": f"touch {marker}"}},
        marker,
    )
    recorded(
        "records-subprocess-run",
        "a checkpoint recording model subprocess:run",
        {"model": "subprocess:run", "model_args": {"args": ["touch", str(marker)]}},
        marker,
    )
    recorded(
        "records-builtins-exec",
        "a checkpoint recording model builtins:exec",
        {"model": "builtins:exec", "model_args": {"source": f"open({str(marker)!r}, 'w').close()"}},
        marker,
    )
    recorded(
        "records-code-in-safetensors",
        "safetensors metadata recording model os:system",
        {"model": "os:system", "model_args": {"command": f"touch {marker}"}},
        marker,
        fmt="safetensors",
    )
    evil = root / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n\ndef make():\n    raise SystemExit(0)\n")
    recorded(
        "records-a-python-file",
        "a checkpoint recording a Python file whose import writes PWNED",
        {"model": f"{evil}:make", "model_args": {}},
        marker,
    )

    # -- a grid or tolerance that would exhaust memory or say something false
    run("alphas-hundred-million", "--alphas 100000000 (once ran out of memory)", "at most 10,000 points", "--alphas",
        "100000000")  # fmt: skip
    run(
        "alpha-range-beyond-float32",
        "--alpha-range -1e308,1e308 (once put inf and NaN into the grid)",
        "α must lie within ±1e+06",
        "--alpha-range=-1e308,1e308",
    )
    run("tol-negative", "--tol -1 (once called a flat path non-monotone)", "--tol must be a finite number ≥ 0",
        "--tol=-1")  # fmt: skip

    # -- numbers that would have been wrong
    run(
        "label-ignore-index",
        "a label -100 (cross-entropy's ignore_index) in the data",
        "",
        "--data",
        data("ignore.pt", targets=_label(3, -100)),
        exit_code=0,
        warning="1 example of the test split is labelled -100 (cross-entropy's ignore_index) and left out",
    )
    run(
        "label-out-of-range-late",
        "class 12 for a 10-class model, in the last batch only",
        "targets go up to class 12 but the model outputs 10 classes",
        "--data",
        data("late.pt", targets=_label(15, 12)),
        "--batch-size",
        "4",
    )
    run(
        "label-negative",
        "a label -1",
        "targets include class -1",
        "--data",
        data("negative.pt", targets=_label(7, -1)),
        "--batch-size",
        "4",
    )
    run(
        "labels-all-ignored",
        "every label -100",
        "nothing to evaluate on the test split: all 16 of its examples are labelled -100",
        "--data",
        data("all-ignored.pt", targets=torch.full((16,), -100)),
    )
    run(
        "targets-float",
        "float targets under cross-entropy",
        "test targets are float32, expected integer class labels",
        "--data",
        data("float-targets.pt", targets=lambda t: t.float()),
    )
    run(
        "inputs-nan",
        "a NaN among the inputs",
        "",
        "--data",
        data("nan.pt", inputs=_set(5, float("nan"))),
        exit_code=0,
        warning="the test split holds 1 non-finite input value",
    )
    run(
        "inputs-inf",
        "an Inf among the inputs",
        "",
        "--data",
        data("inf.pt", inputs=_set(0, float("inf"))),
        exit_code=0,
        warning="the test split holds 1 non-finite input value",
    )
    run(
        "data-empty",
        "a data file of 0 examples",
        "the test split of empty.pt has no examples: nothing to evaluate",
        "--data",
        str(_data(root / "empty.pt", n=0)),
    )
    cases.append(
        Case(
            "same-file-twice",
            "`run a.pt a.pt`: a path of length zero",
            run_args(init, init),
            2,
            "init and final are the same network (the same file)",
        )
    )
    copy = root / "copy.pt"
    torch.save(good_state(0), copy)
    cases.append(
        Case(
            "identical-copies",
            "two files holding the same tensors",
            run_args(init, copy),
            2,
            "init and final are the same network: every tensor is equal",
        )
    )
    run(
        "loss-mse-on-class-labels",
        "--loss mse with one class label per example",
        "mse needs one target value per output value",
        "--loss",
        "mse",
    )
    (root / "losses.py").write_text(
        "def scalar(outputs, targets):\n    return (outputs - outputs).sum()\n\n"
        "def broken(outputs, targets):\n    raise KeyError('logits')\n"
    )
    run(
        "loss-returns-scalar",
        "a --loss function that averages over the batch",
        "returned shape [] float32",
        "--loss",
        f"{root / 'losses.py'}:scalar",
    )
    run(
        "loss-raises",
        "a --loss function that raises",
        "raised KeyError",
        "--loss",
        f"{root / 'losses.py'}:broken",
    )
    run(
        "split-missing",
        "--split train on data with only a test split",
        "has no 'train' split",
        "--data",
        data("test-only.pt"),
        "--split",
        "train",
    )
    run(
        "recompute-without-train",
        "--bn recompute with data that has no train split",
        "needs a train split to re-estimate statistics",
        "--data",
        data("no-train.pt"),
        "--bn",
        "recompute",
    )
    run("key-missing", "--key ema on a plain state dict", "ema", "--key", "ema")

    # -- output locations
    a_file = root / "results.txt"
    a_file.write_text("the user's notes\n")
    cases.append(
        Case(
            "out-is-a-file",
            "--out names an existing file",
            run_args(init, final, out=str(a_file)),
            2,
            "exists and is not a directory",
            keep=(a_file,),
        )
    )
    cases.append(
        Case(
            "out-under-a-file",
            "--out inside a path that is a file",
            run_args(init, final, out=str(a_file / "run")),
            2,
            "cannot write to output directory",
            keep=(a_file,),
        )
    )
    full = root / "full"
    full.mkdir()
    (full / "paper.tex").write_text("\\section{Results}\n")
    cases.append(
        Case(
            "out-not-empty",
            "--out holds the user's files, no --force",
            run_args(init, final, out=str(full)),
            2,
            "is not empty",
            keep=(full,),
        )
    )
    interrupted = root / "interrupted"
    _partial(interrupted, init, final, _data(root / "resume-data.pt"))
    partial_args = ("--data", str(root / "resume-data.pt"), "--batch-size", "8")
    cases.append(
        Case(
            "out-holds-interrupted-scan",
            "--out holds an interrupted scan, neither --resume nor --force",
            run_args(init, final, *partial_args, out=str(interrupted)),
            2,
            "holds an interrupted scan",
            keep=(interrupted,),
        )
    )
    empty = root / "nothing-to-resume"
    empty.mkdir()
    cases.append(
        Case(
            "resume-nothing",
            "--resume where no scan was interrupted",
            run_args(init, final, "--resume", out=str(empty)),
            2,
            "nothing to resume",
            keep=(empty,),
        )
    )
    damaged = root / "damaged"
    damaged.mkdir()
    (damaged / ".interpscan-partial.pt").write_bytes(b"PK\x03\x04 not a partial scan")
    cases.append(
        Case(
            "resume-damaged-partial",
            "--resume from a damaged partial scan",
            run_args(init, final, "--resume", out=str(damaged)),
            2,
            "cannot read the partial scan",
            keep=(damaged,),
        )
    )
    changed = root / "changed"
    changed_data = root / "changed-data.pt"
    _partial(changed, init, final, _data(changed_data))
    size = changed_data.stat().st_size
    _data(changed_data, targets=_label(0, 5))  # same name, same size, other contents
    assert changed_data.stat().st_size == size
    cases.append(
        Case(
            "resume-after-data-changed",
            "--resume after the data file was replaced by one of the same name and size",
            run_args(init, final, "--data", str(changed_data), "--batch-size", "8", "--resume", out=str(changed)),
            2,
            "the partial scan saved in the output directory was made with other inputs or options",
            keep=(changed,),
        )
    )
    shared = root / "shared"
    shared.mkdir()
    notes = shared / "notes.md"
    notes.write_text("# my notes\n")
    cases.append(
        Case(
            "force-keeps-other-files",
            "--force over a directory that also holds the user's files",
            run_args(init, final, "--force", out=str(shared)),
            0,
            "",
            keep=(notes,),
        )
    )

    # -- locks interpscan cannot check
    def locked(name: str, description: str, content: str) -> None:
        folder = root / name
        folder.mkdir()
        (folder / ".interpscan.lock").write_text(content)
        cases.append(
            Case(
                name,
                description,
                run_args(init, final, out=str(folder)),
                2,
                "is locked and interpscan cannot tell whether the run that locked it is alive",
                keep=(folder,),
            )
        )

    other = {"pid": 1234, "host": "node-17", "boot_id": "0f" * 16, "pid_namespace": "pid:[1]", "started": "99"}
    locked("lock-other-kernel", "a lock taken on another machine sharing the disk", json.dumps(other))
    locked("lock-older-interpscan", "a lock holding a bare pid (an older interpscan's)", "1234")
    locked("lock-garbage", "a lock file holding binary garbage", "\x00\x01\x02")

    # -- the demo
    demo = root / "demo"
    demo.mkdir()
    torch.save(good_state(3), demo / "init.pt")
    cases.append(
        Case(
            "demo-force-over-user-checkpoints",
            "`demo --force` where init.pt is the user's own checkpoint",
            ("demo", "--out", str(demo), "--force", "--epochs", "1", "-q"),
            2,
            "init.pt was not written by interpscan",
            keep=(demo,),
        )
    )
    return cases
