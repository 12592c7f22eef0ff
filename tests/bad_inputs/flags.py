"""Bad flag values: odd characters and extreme numbers in the flags of `run`, `layers` and `demo`. Each is
refused in one line before any file is read (or, for the NaN run, runs and says so); none crashes, hangs, exhausts
memory or is silently read as something else.

The endless alphabet of such values is fuzzed in tests/test_fuzz_flags.py; here is one case per class found.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .case import OUT, RUN_ARGS, Case, good_state, run_args

TITLE = "Flags"
NAMES = (
    "alphas-superscript-digit",
    "alphas-other-script-digit",
    "alphas-negative-count",
    "alphas-too-narrow-range",
    "seed-beyond-64-bits",
    "seed-negative",
    "samples-in-exponent-form",
    "model-arg-expression",
    "model-arg-larger-than-memory",
    "model-arg-zero-width",
    "model-arg-number-for-bool",
    "model-arg-beyond-64-bits",
    "out-name-too-long",
    "checkpoint-name-too-long",
    "data-name-too-long",
    "data-flag-empty",
    "key-empty",
    "normalize-std-underflows",
    "layers-empty-group",
    "demo-epochs-endless",
    "nan-loss-summary-table",
)


def build(root: Path) -> list[Case]:
    """Write two valid checkpoints (and one with NaN weights) into ``root``; return the cases."""
    init, final, nan = root / "init.pt", root / "final.pt", root / "nan.pt"
    torch.save(good_state(0), init)
    torch.save(good_state(1), final)
    nan_state = good_state(1)
    nan_state["fc.weight"][:] = float("nan")
    torch.save(nan_state, nan)
    long_name = "x" * 300
    cases: list[Case] = []

    def run(name: str, description: str, error: str, *flags: str) -> None:
        cases.append(Case(name, description, run_args(init, final, *flags), 2, error))

    run("alphas-superscript-digit", "--alphas ² (int() of it raised)", "is neither a count nor a list", "--alphas", "²")
    run(
        "alphas-other-script-digit",
        "--alphas ٣ (an Arabic-Indic 3, once read as α=3)",
        "is neither a count nor a list",
        "--alphas",
        "٣",
    )
    run(
        "alphas-negative-count",
        "--alphas -3 (once read as α=-3)",
        "a count of points must be at least 2",
        "--alphas",
        "-3",
    )
    run(
        "alphas-too-narrow-range",
        "--alphas 10000 over --alpha-range 0,1e-9 (fewer distinct α than asked)",
        "the range is too narrow for 10000 distinct points",
        "--alphas",
        "10000",
        "--alpha-range",
        "0,1e-9",
    )
    run(
        "seed-beyond-64-bits",
        "--seed 2**70 (torch raised an overflow)",
        "--seed must be from 0 to 2**63",
        "--seed",
        str(2**70),
    )
    run("seed-negative", "--seed -1", "--seed must be from 0 to 2**63", "--seed", "-1")
    run("samples-in-exponent-form", "--samples 1e3", "--samples '1e3' is not a count", "--samples", "1e3")
    run(
        "model-arg-expression",
        "--model-arg width=10**9 (an expression, so the text '10**9')",
        "cnn's width takes a whole number",
        "--model-arg",
        "width=10**9",
    )
    run(
        "model-arg-larger-than-memory",
        "--model-arg width=1000000 (weights of terabytes)",
        "GiB for its weights, more than this machine's",
        "--model-arg",
        "width=1000000",
    )
    run("model-arg-zero-width", "--model-arg width=0", "has empty tensors", "--model-arg", "width=0")
    run("model-arg-number-for-bool", "--model-arg bn=2", "cnn's bn takes true or false", "--model-arg", "bn=2")
    run(
        "model-arg-beyond-64-bits",
        "--model-arg width=2**67 as digits (torch's message carried a C++ stack)",
        "rejected its arguments",
        "--model-arg",
        f"width={2**67}",
    )
    cases.append(
        Case(
            "out-name-too-long",
            "--out of a 300-character name (exists() raised)",
            ("run", str(init), str(final), *RUN_ARGS, "--out", str(root / long_name)),
            2,
            "is 300 bytes long, where file systems allow 255",
        )
    )
    run_long = ("run", str(init), str(root / f"{long_name}.pt"), *RUN_ARGS, "--out", OUT)
    cases.append(Case("checkpoint-name-too-long", "a checkpoint named by 303 characters", run_long, 2, "FINAL"))
    run("data-name-too-long", "--data naming a 300-character file", "--data", "--data", str(root / long_name / "d.pt"))
    run("data-flag-empty", "--data '' (once read as the image folder .)", "--data is empty", "--data", "")
    run("key-empty", "--key '' (once silently no key)", "--key '' names no entry", "--key", "")
    run(
        "normalize-std-underflows",
        "--normalize 0.5,1e-320 (a std that is 0 in float32: every loss NaN, exit 0)",
        "is below 1e-12",
        "--normalize",
        "0.5,1e-320",
    )
    cases.append(
        Case(
            "layers-empty-group",
            "layers --groups '' (once ignored)",
            ("layers", str(init), "--groups", ""),
            2,
            "each value must be a non-empty pattern",
        )
    )
    cases.append(
        Case(
            "demo-epochs-endless",
            "demo --epochs 10**20 (trained for ever)",
            ("demo", "--epochs", str(10**20), "-q", "--out", OUT),
            2,
            "--epochs must be from 1 to 100",
        )
    )
    cases.append(
        Case(
            "nan-loss-summary-table",
            "a final checkpoint of NaN weights, without -q (the summary table crashed on NA)",
            tuple(a for a in run_args(init, nan) if a != "-q"),
            0,
            "",
            warning="final holds 640 non-finite values (fc.weight)",
        )
    )
    return cases
