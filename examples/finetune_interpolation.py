"""Fine-tuning interpolation (WiSE-FT, model soups): the path from a pretrained model to its fine-tuned version,
scanned on the fine-tuning task and on the task it was pretrained for.

Everything is built here from a config (no downloads): a tiny BERT is "pretrained" on task A (is the first token
odd?), saved with ``save_pretrained``, fine-tuned on task B (is the second token odd?), saved again. interpscan
then reads both folders through transformers (no ``--model``) and scans both tasks. What to look for: along the
path, task B's loss falls while task A's rises; a point in between that keeps most of both is what weight-space
ensembling exploits.

    python examples/finetune_interpolation.py runs/finetune      # trains, saves, scans, prints the summary

The same scan from the command line, on the folders this writes:

    interpscan run runs/finetune/pretrained runs/finetune/finetuned \\
        --data examples/finetune_interpolation.py:data --split task_a,task_b --out runs/finetune/scan

Text data for interpscan is a dict of ``input_ids``, ``attention_mask`` (and ``token_type_ids``) beside
``labels``; from a tokenizer, three lines (``tok`` any Hugging Face tokenizer, ``texts`` and ``labels`` yours):

    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    torch.save({**enc, "labels": torch.tensor(labels)}, "text.pt")
    # interpscan run pretrained/ finetuned/ --data text.pt
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

import interpscan

VOCAB, LENGTH, EXAMPLES = 64, 12, 256


def _sequences(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, T) padded with 0 after a random length, and the attention mask."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (EXAMPLES, LENGTH), generator=gen)
    lengths = torch.randint(4, LENGTH + 1, (EXAMPLES,), generator=gen)
    mask = (torch.arange(LENGTH) < lengths[:, None]).long()
    return ids * mask, mask


def data() -> dict[str, dict[str, torch.Tensor]]:
    """The factory ``--data`` calls: both tasks, each a dict of input_ids, attention_mask and labels."""
    out = {}
    for seed, task in ((1, "task_a"), (2, "task_b")):
        ids, mask = _sequences(seed)
        labels = ids[:, 0 if task == "task_a" else 1] % 2
        out[task] = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return out


def _train(model: Any, batch: dict[str, torch.Tensor], steps: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        pick = torch.randint(0, EXAMPLES, (64,), generator=gen)
        loss = model(**{k: v[pick] for k, v in batch.items()}).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def main(out: str | Path, steps: int = 300, alphas: int = 11) -> interpscan.ScanResult:
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging

    logging.disable_progress_bar()

    out = Path(out)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    tasks = data()
    _train(model, tasks["task_a"], steps)  # "pretraining"
    model.save_pretrained(out / "pretrained")
    _train(model, tasks["task_b"], steps)  # fine-tuning
    model.save_pretrained(out / "finetuned")
    splits = {name: ({k: v for k, v in t.items() if k != "labels"}, t["labels"]) for name, t in tasks.items()}
    result = interpscan.scan(None, out / "pretrained", out / "finetuned", splits, alphas=alphas, splits=list(splits))
    result.save(out / "scan", force=True)
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    summary = main(sys.argv[1]).summary
    print(summary[["split", "loss_start", "loss_end", "delta", "barrier_linear"]].to_string(index=False))
