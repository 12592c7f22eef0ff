"""interpscan as a library: a model and two states held in memory, data from DataLoaders, no files needed.

Trains the zoo CNN for two epochs on the bundled Fashion-MNIST subset, keeping θ_init and θ_final as state dicts,
then scans the whole network and each layer group on the test split (batch norm re-estimated per point from
the train split), prints the summary and, given a directory, saves the run as `interpscan run` would:

    python examples/library.py                 # prints the summary table
    python examples/library.py runs/library    # also writes results.csv, summary.csv, run.json, results.html
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import interpscan
from interpscan.models import CNN


def train(model: torch.nn.Module, loader: DataLoader, epochs: int = 2) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()


def main(out: str | None = None) -> interpscan.ScanResult:
    torch.manual_seed(0)
    source = interpscan.open_data("fashion-mnist-small")  # bundled: 2,500 train and 1,000 test images
    train_split, test_split = (
        interpscan.load_split(source, s, normalization=source.normalization) for s in ("train", "test")
    )
    loaders = {
        "train": DataLoader(TensorDataset(train_split.inputs, train_split.targets), batch_size=256),
        "test": DataLoader(TensorDataset(test_split.inputs, test_split.targets), batch_size=256),
    }

    model = CNN(in_channels=1, num_classes=10, width=8)
    init = {k: v.clone() for k, v in model.state_dict().items()}  # θ_init, before any step
    train(model, DataLoader(TensorDataset(train_split.inputs, train_split.targets), batch_size=64, shuffle=True))
    final = model.state_dict()  # θ_final

    # recompute (the default for a network with batch norm) re-estimates each point's statistics from 512
    # training images here (the command line's default is 2048)
    result = interpscan.scan(
        model, init, final, loaders, alphas=11, groups=["conv*", "fc"], splits=["test"], bn_samples=512
    )
    columns = ["curve", "loss_start", "loss_end", "delta", "barrier_linear", "plateau_alpha"]
    print(result.summary[columns].to_string(index=False, float_format="%.4f"))
    if out is not None:
        written = result.save(out, force=True)
        print(f"wrote {', '.join(map(str, written.values()))}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
