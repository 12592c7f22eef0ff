"""Train a model on Fashion-MNIST and save θ_init and θ_final for ``interpscan run``.

Writes DIR/init.pt (before the first step), DIR/final.pt (after the last) and DIR/train.json (config,
per-epoch history, test metrics). The checkpoints record the model spec, so the scan needs no --model:

    python examples/train_fashion_mnist.py --out /tmp/wd5e-4 --weight-decay 5e-4 --epochs 4
    interpscan run /tmp/wd5e-4/init.pt /tmp/wd5e-4/final.pt --split train,test --out /tmp/wd5e-4/scan

Training itself is interpscan.train (seeded SGD or AdamW, cosine schedule); this script only wires flags to it.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import interpscan
from interpscan.data import DataSource, Split, load_split, open_data
from interpscan.errors import InterpscanError, UsageError
from interpscan.models import ModelSpec, build_model, factory_parameters, parse_model_spec
from interpscan.options import flags
from interpscan.rundir import prepare_output_dir, write_json
from interpscan.train import TrainConfig, config_dict, save_checkpoint, train
from interpscan.values import parse_model_args

# Peak learning rates that train the zoo CNN on Fashion-MNIST in a few epochs (cosine-decayed to 0).
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train a model on Fashion-MNIST; save init.pt, final.pt and train.json for `interpscan run`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output directory (must be empty or new)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing our files")
    p.add_argument("--model", default="cnn", help="zoo name (mlp, cnn, resnet20, resnet18) or path/to/file.py:factory")
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="argument for the model factory, repeatable; values are Python literals (width=32, bn=false)",
    )
    p.add_argument(
        "--data",
        default="fashion-mnist-small",
        help="fashion-mnist-small (bundled: 2500 train / 1000 test images) or fashion-mnist (60000 / 10000)",
    )
    p.add_argument("--data-root", type=Path, help="where fashion-mnist's IDX files live [default: interpscan's]")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="examples per step")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="SGD with Nesterov momentum, or AdamW")
    p.add_argument("--lr", type=float, help="peak learning rate, cosine-decayed to 0 [default: 0.05 sgd, 1e-3 adam]")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 (sgd) or decoupled (adam) weight decay")
    p.add_argument("--data-fraction", type=float, default=1.0, help="train on this seeded fraction, in (0, 1]")
    p.add_argument("--augment", action="store_true", help="random 2-pixel shifts and horizontal flips")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, data order and subset")
    return p.parse_args(argv)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig for ``args``, with every range checked before anything is written.

    Raises:
        UsageError: a value outside its range.
    """
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    problems = []
    if args.epochs < 1:
        problems.append(f"--epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 1:
        problems.append(f"--batch-size must be at least 1, got {args.batch_size}")
    if not (math.isfinite(lr) and lr > 0):
        problems.append(f"--lr must be positive, got {lr}")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        problems.append(f"--weight-decay must be 0 or more, got {args.weight_decay}")
    if not 0 < args.data_fraction <= 1:
        problems.append(f"--data-fraction must be in (0, 1], got {args.data_fraction}")
    if problems:
        raise UsageError("; ".join(problems))
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        data_fraction=args.data_fraction,
        augment=args.augment,
        seed=args.seed,
    )


def with_data_defaults(spec: ModelSpec, data: Split, source: DataSource) -> ModelSpec:
    """Give a zoo model the data's input shape and class count unless --model-arg set them (as `run` does).

    Recording them in the checkpoint means `interpscan run` rebuilds exactly this model. A model file's factory
    gets only what the user passed: its signature is its own business.
    """
    if spec.kind != "zoo":
        return spec
    accepted = factory_parameters(spec)
    args = dict(spec.args)
    x = data.inputs  # (N, C, H, W) images, or (N, F) features from a tensor file
    if "in_channels" in accepted and "in_channels" not in args:
        args["in_channels"] = int(x.shape[1])
    if "in_features" in accepted and "in_features" not in args:
        args["in_features"] = int(math.prod(x.shape[1:]))
    if "num_classes" in accepted and "num_classes" not in args:
        args["num_classes"] = 10 if source.name.startswith("fashion-mnist") else int(data.targets.max()) + 1
    return ModelSpec(spec.kind, spec.target, spec.factory, args)


def evaluate(model: nn.Module, data: Split, batch_size: int = 1000) -> dict[str, float]:
    """Mean cross-entropy (nats) and accuracy over ``data``, in eval mode (dropout off, BN running stats)."""
    model.eval()
    n = len(data)
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            x, y = data.inputs[lo : lo + batch_size], data.targets[lo : lo + batch_size]
            logits = model(x)  # (B, classes)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": n}


def scan_command(args: argparse.Namespace) -> str:
    """The `interpscan run` line that scans this run's path on the same data, train and test splits."""
    words = ["interpscan", "run", str(args.out / "init.pt"), str(args.out / "final.pt"), "--data", args.data]
    if args.data_root is not None:
        words += ["--data-root", str(args.data_root)]
    words += ["--split", "train,test", "--out", str(args.out / "scan")]
    return shlex.join(words)


def run(args: argparse.Namespace) -> None:
    config = train_config(args)
    source: DataSource = open_data(args.data, args.data_root)
    train_split = load_split(source, "train", normalization=source.normalization)
    test_split = load_split(source, "test", normalization=source.normalization)
    spec = with_data_defaults(parse_model_spec(args.model, parse_model_args(args.model_arg)), train_split, source)
    torch.manual_seed(args.seed)  # the initial weights, and dropout masks during training
    model = build_model(spec)
    # Only now, with every input known to be good, touch the output directory.
    out = prepare_output_dir(args.out, force=args.force)

    meta: dict[str, Any] = {"train": config_dict(config), "data": source.name}
    save_checkpoint(model, out / "init.pt", spec, {**meta, "epoch": 0})
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"training {spec.text} ({n_params:,} parameters) on {source.name}"
        f" ({len(train_split)} train images{f' × {config.data_fraction:g}' if config.data_fraction < 1 else ''}):"
        f" {config.epochs} epoch(s), {config.optimizer} lr {config.lr:g}, weight decay {config.weight_decay:g}"
        + (", augmented" if config.augment else ""),
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    history = train(model, train_split, config, log=lambda m: print(m, file=sys.stderr))
    seconds = time.perf_counter() - t0
    save_checkpoint(model, out / "final.pt", spec, {**meta, "epoch": config.epochs})
    test = evaluate(model, test_split)

    # write_json: sorted keys, NaN (a diverged run) as null, written atomically (interpscan.atomic.write_atomic).
    write_json(
        {
            "interpscan": interpscan.__version__,
            "torch": torch.__version__,
            "argv": sys.argv,
            "model": {**spec.to_json(), "parameters": n_params},
            "data": {
                "name": source.name,
                "location": source.location,
                "normalization": source.normalization,
                "train_examples": len(train_split),
                "test_examples": len(test_split),
            },
            "train": config_dict(config),
            "history": history,
            "test": test,
            "train_seconds": round(seconds, 2),
            "checkpoints": {"init": "init.pt", "final": "final.pt"},
        },
        out / "train.json",
    )
    if not math.isfinite(history[-1]["loss"]):
        print("warning: the training loss is not finite; try a smaller --lr", file=sys.stderr)
    print(f"trained in {seconds:.1f} s; wrote {out / 'init.pt'}, {out / 'final.pt'}, {out / 'train.json'}")
    print(f"test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f} ({test['n']} images)")
    print(f"scan the path with:\n  {scan_command(args)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except InterpscanError as exc:
        if os.environ.get("INTERPSCAN_DEBUG"):
            raise
        message, hint = exc.rendered(flags())  # this script's flags are interpscan's: --out, --force, --model, ...
        print(f"error: {message}", file=sys.stderr)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return exc.exit_code  # 2: bad input (all this script can raise); 1: a failed run
    return 0


if __name__ == "__main__":
    sys.exit(main())
