"""Tests for interpscan.objectives: --loss parsing, custom per-sample losses, and the shape checks that run on
the first batch."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from interpscan.errors import DataError, InterpscanError, RunError, UsageError
from interpscan.objectives import CROSS_ENTROPY, MSE, NEXT_TOKEN, parse_objective
from interpscan.objectives import IGNORE_INDEX as IGNORE
from interpscan.options import flags

LOSSES = """
import torch


def l1(outputs, targets):
    return (outputs - targets).abs().flatten(1).mean(1)


def batch_mean(outputs, targets):
    return (outputs - targets).abs().mean()  # wrong: one number for the whole batch


def as_list(outputs, targets):
    return [0.0] * len(outputs)


def integers(outputs, targets):
    return torch.zeros(len(outputs), dtype=torch.int64)


def shape_error(outputs, targets):
    return outputs @ targets


def fails_on_small_batches(outputs, targets):
    if len(outputs) < 4:
        raise ValueError("batch too small")
    return (outputs - targets).abs().flatten(1).mean(1)


THRESHOLD = 0.5
"""


@pytest.fixture
def losses(tmp_path: Path) -> Path:
    path = tmp_path / "losses.py"
    path.write_text(LOSSES)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("cross_entropy", CROSS_ENTROPY), ("cross-entropy", CROSS_ENTROPY), ("mse", MSE), (" mse ", MSE)],
)
def test_builtin_losses(text: str, expected: object) -> None:
    assert parse_objective(text) is expected


def test_builtin_loss_values() -> None:
    outputs = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(
        CROSS_ENTROPY.per_sample(outputs, torch.tensor([0, 0])),
        F.cross_entropy(outputs, torch.tensor([0, 0]), reduction="none"),
    )
    assert MSE.per_sample(outputs, torch.tensor([[1.0, 0.0], [0.0, 3.0]])).tolist() == [0.5, 2.0]
    assert CROSS_ENTROPY.classification
    assert not MSE.classification


def test_custom_loss_from_a_file(losses: Path) -> None:
    objective = parse_objective(f"{losses}:l1")
    assert objective.name == f"{losses}:l1"
    assert not objective.classification  # no accuracy column for custom losses
    outputs, targets = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 3.0]])
    objective.check(outputs, targets)
    assert objective.per_sample(outputs, targets).tolist() == [1.5, 2.0]


def test_custom_loss_from_a_module(losses: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(losses.parent))
    try:
        objective = parse_objective("losses:l1")
    finally:
        sys.modules.pop("losses", None)  # the next test's tmp_path holds another losses.py
    assert objective.per_sample(torch.ones(3, 2), torch.zeros(3, 2)).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        ("batch_mean", "returned shape [] float32 for outputs [4, 2] and targets [4, 2]; a per-sample loss"),
        ("as_list", "returned list for outputs [4, 2] and targets [4, 2]"),
        ("integers", "returned shape [4] int64 for outputs [4, 2] and targets [4, 2]"),
        ("shape_error", "raised RuntimeError on outputs [4, 2] and targets [4, 2]: "),
    ],
)
def test_custom_loss_is_checked_on_the_first_batch(losses: Path, fn: str, message: str) -> None:
    objective = parse_objective(f"{losses}:{fn}")
    with pytest.raises(DataError) as exc:
        objective.check(torch.ones(4, 2), torch.zeros(4, 2))
    assert str(exc.value).startswith(f"loss='{losses}:{fn}' ")
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_custom_loss_failing_on_a_later_batch_is_one_line(losses: Path) -> None:
    """check tries the first batch; a failure on a later one (here the short last batch) is still one line."""
    objective = parse_objective(f"{losses}:fails_on_small_batches")
    objective.check(torch.ones(4, 2), torch.zeros(4, 2))
    with pytest.raises(RunError) as exc:
        objective.per_sample(torch.ones(2, 2), torch.zeros(2, 2))
    assert str(exc.value) == (
        f"loss='{losses}:fails_on_small_batches' raised ValueError on outputs [2, 2] and targets [2, 2]: "
        "batch too small"
    )
    assert isinstance(exc.value.__cause__, ValueError)


def test_custom_loss_batch_sizes_must_agree(losses: Path) -> None:
    with pytest.raises(DataError, match=r"output has shape \[4, 2\] but the targets \[3, 2\]; they differ"):
        parse_objective(f"{losses}:l1").check(torch.ones(4, 2), torch.zeros(3, 2))


@pytest.mark.parametrize(
    ("text", "error", "message", "flagged"),
    [
        ("hinge", UsageError, "loss 'hinge' is not a loss", "--loss 'hinge' is not a loss"),
        ("missing.py:fn", UsageError, "loss='missing.py:fn': file not found", "--loss missing.py:fn: file not found"),
        (
            "no_such_module_xyz:fn",
            UsageError,
            "loss='no_such_module_xyz:fn': cannot",
            "--loss no_such_module_xyz:fn: cannot",
        ),
    ],
)
def test_bad_loss_specs(text: str, error: type[Exception], message: str, flagged: str) -> None:
    with pytest.raises(error) as exc:
        parse_objective(text)
    assert isinstance(exc.value, InterpscanError)
    assert str(exc.value).startswith(message)
    assert exc.value.rendered(flags())[0].startswith(flagged)  # the command line's words


def test_loss_that_is_not_a_function(losses: Path) -> None:
    with pytest.raises(UsageError, match="is a float, not a function"):
        parse_objective(f"{losses}:THRESHOLD")
    with pytest.raises(UsageError, match="has no 'l2'"):
        parse_objective(f"{losses}:l2")


def test_unknown_loss_hint() -> None:
    with pytest.raises(UsageError) as exc:
        parse_objective("hinge")
    assert exc.value.hint == "use cross_entropy, mse, next_token, path/to/file.py:fn or package.module:fn"


@pytest.mark.parametrize(
    ("outputs", "targets", "message"),
    [
        (
            torch.zeros(4, 3),
            torch.zeros(4, 2, dtype=torch.int64),
            "the model's output has shape [4, 3] and the targets [4, 2]; cross-entropy needs outputs "
            "(batch, classes) and integer targets (batch,)",
        ),
        (
            torch.zeros(4, 3, 2),
            torch.zeros(4, dtype=torch.int64),
            "the model's output has shape [4, 3, 2] and the targets [4]; cross-entropy needs",
        ),
        (
            torch.zeros(4, 3),
            torch.zeros(4),
            "the model's output has shape [4, 3] and the targets [4]; cross-entropy needs integer class targets, "
            "got float32",
        ),
        (
            torch.zeros(4, 3),
            torch.tensor([0, 1, 2, 7]),
            "the model's output has shape [4, 3] and the targets [4]: targets go up to class 7 but the model "
            "outputs 3 classes",
        ),
        (
            torch.zeros(4, 3),
            torch.tensor([0, -1, 2, 1]),
            "the model's output has shape [4, 3] and the targets [4]: targets include class -1",
        ),
    ],
)
def test_classification_check_names_both_shapes(outputs: torch.Tensor, targets: torch.Tensor, message: str) -> None:
    with pytest.raises(DataError) as exc:
        CROSS_ENTROPY.check(outputs, targets)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_classification_check_accepts_good_batches() -> None:
    CROSS_ENTROPY.check(torch.zeros(4, 3), torch.tensor([0, 1, 2, 2]))
    CROSS_ENTROPY.check(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))


def test_regression_check() -> None:
    MSE.check(torch.zeros(4, 2), torch.zeros(4, 2))
    MSE.check(torch.zeros(4, 1), torch.zeros(4))  # one value per output, in any shape
    with pytest.raises(DataError) as exc:
        MSE.check(torch.zeros(4, 2), torch.zeros(4, 3))
    assert str(exc.value) == (
        "the model's output has shape [4, 2] but the targets [4, 3]; mse needs one target value per output value"
    )
    assert math.isclose(float(MSE.per_sample(torch.ones(1, 2), torch.zeros(1, 2))[0]), 1.0)


class _TinyLM(torch.nn.Module):
    """Logits (B, T, V) from token ids: an embedding and a linear map, enough for a next-token loss."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 5)
        self.out = torch.nn.Linear(5, vocab)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(input_ids) * attention_mask.unsqueeze(-1))  # type: ignore[no-any-return]


def test_next_token_is_the_mean_over_scored_tokens_of_the_shifted_cross_entropy() -> None:
    """Every scored token counts once, whichever sequence it is in (a token mean, not a mean of sequence means),
    labels -100 left out, over batches that split the sequences."""
    from interpscan import scan

    torch.manual_seed(0)
    a, b = _TinyLM(), _TinyLM()
    ids = torch.randint(0, 7, (9, 6))
    mask = torch.ones_like(ids)
    mask[::2, 3:] = 0
    labels = ids.masked_fill(mask == 0, IGNORE)
    inputs = {"input_ids": ids, "attention_mask": mask}
    result = scan(b, a.state_dict(), b.state_dict(), (inputs, labels), alphas=2, loss="next_token", batch_size=4)
    with torch.no_grad():
        logits = b(**inputs)[:, :-1].reshape(-1, 7)
    target = labels[:, 1:].reshape(-1)
    kept = target != IGNORE
    expected = F.cross_entropy(logits[kept], target[kept], reduction="sum").item() / int(kept.sum())
    end = result.results.set_index("alpha").loc[1.0]
    assert float(end["loss"]) == pytest.approx(expected, rel=1e-6)
    assert int(end["n"]) == int(kept.sum())
    assert float(end["accuracy"]) == int((logits[kept].argmax(-1) == target[kept]).sum()) / int(kept.sum())
    assert result.manifest["loss"] == {"name": "next_token", "accuracy": True, "per_token": True}


def test_next_token_refuses_outputs_that_are_not_per_token() -> None:
    with pytest.raises(DataError, match=r"logits \(batch, tokens, vocabulary\) and labels \(batch, tokens\)"):
        NEXT_TOKEN.check(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
