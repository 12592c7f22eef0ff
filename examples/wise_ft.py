"""WiSE-FT in miniature: the path from a pretrained model to its fine-tuned version, scored in one scan on the
in-distribution test set and on a shifted one, both curves on one page.

A small MLP is "pretrained" on broad data (the bundled Fashion-MNIST images, half of them inverted: white
clothes on black and black on white), then fine-tuned on the target distribution alone (the images as they
are). The shifted evaluation set is the test images inverted. Fine-tuning raises in-distribution accuracy and
loses much of the robustness the pretrained model had; along the straight line between the two (weight-space
ensembling, Wortsman et al. 2022) a point in between keeps most of both. Under a minute on a laptop CPU, offline:

    python examples/wise_ft.py runs/wise-ft        # trains, saves, scans test and shifted, prints the accuracies

The same scan from the command line, on the files this writes: one tensor file holding both splits,

    interpscan run runs/wise-ft/pretrained.pt runs/wise-ft/finetuned.pt --model mlp -a width=128 -a depth=1 \\
        --data runs/wise-ft/data.pt --split test,shifted --out runs/wise-ft/scan

or the two sets where they live, each naming its split (the numbers are the same):

    interpscan run runs/wise-ft/pretrained.pt runs/wise-ft/finetuned.pt --model mlp -a width=128 -a depth=1 \\
        --data test=runs/wise-ft/test.pt --data shifted=runs/wise-ft/shifted.pt --out runs/wise-ft/scan
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import interpscan
from interpscan.models import MLP

ALPHAS = 11
MODEL_ARGS = {"width": 128, "depth": 1}  # 784 → 128 → 10


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> None:
    """Plain SGD with momentum, batches of 64, in a seeded order."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), 64):
            batch = order[start : start + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    model.eval()


def _as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as interpscan reads a tensor file's: float32 in [0, 1] (no normalization for your own data)."""
    return images.float() / 255.0


def main(out: str | Path, epochs: tuple[int, int] = (8, 4), alphas: int = ALPHAS) -> interpscan.ScanResult:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    source = interpscan.open_data("fashion-mnist-small")  # bundled: 2,500 train and 1,000 test images
    (train_x, train_y), (test_x, test_y) = (source.read(s) for s in ("train", "test"))
    assert isinstance(train_x, torch.Tensor)  # images: one tensor (a text dataset's inputs are a dict)
    assert isinstance(test_x, torch.Tensor)

    # pretrained: broad data, half the images inverted; fine-tuned: the target distribution alone
    model = MLP(**MODEL_ARGS)
    flip = torch.rand(len(train_y), generator=torch.Generator().manual_seed(1)) < 0.5
    broad = torch.where(flip[:, None, None, None], 255 - train_x, train_x)
    _train(model, _as_input(broad), train_y, epochs[0], lr=0.05)
    torch.save(model.state_dict(), out / "pretrained.pt")
    _train(model, _as_input(train_x), train_y, epochs[1], lr=0.1)
    torch.save(model.state_dict(), out / "finetuned.pt")

    test = {"images": test_x, "labels": test_y}
    shifted = {"images": 255 - test_x, "labels": test_y}
    torch.save({"test": test, "shifted": shifted}, out / "data.pt")  # one file, two named splits
    torch.save(test, out / "test.pt")  # ... or each set in its own file
    torch.save(shifted, out / "shifted.pt")

    result = interpscan.scan(
        "mlp",
        out / "pretrained.pt",
        out / "finetuned.pt",
        out / "data.pt",
        model_args=MODEL_ARGS,
        splits="test,shifted",
        alphas=alphas,
        out=out / "scan",
        force=True,
    )
    table = result.results.pivot_table(index="alpha", columns="split", values="accuracy")[["test", "shifted"]]
    print(table.to_string(float_format="%.3f"))
    print(f"wrote {out / 'scan' / 'results.html'}: the test and shifted curves on one page", file=sys.stderr)
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/wise-ft")
