"""Hugging Face transformers directories, as their users save them: tiny models built from configs (no downloads),
trained a few steps, saved with save_pretrained (also sharded) and by the Trainer, then scanned with no --model.
The scan's endpoints must equal each model's own evaluation through transformers."""

from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from interpscan import scan
from interpscan.checkpoints import load_checkpoint
from interpscan.errors import CheckpointError
from tests.conftest import run_cli
from tests.floats import tol32

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _quiet() -> None:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _train(model: Any, batch: dict[str, torch.Tensor], steps: int = 4, lr: float = 0.3) -> None:
    """A few steps of plain SGD on the model's own loss (labels in ``batch``)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _own_loss(cls: Any, directory: Path, batch: dict[str, torch.Tensor]) -> float:
    """The model's own evaluation: transformers loads the folder and computes its loss with ``labels=``."""
    _quiet()
    model = cls.from_pretrained(str(directory)).eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def _trainer_checkpoint(model: Any, rows: list[dict[str, torch.Tensor]], out: Path) -> Path:
    """Two steps of transformers' Trainer, saving checkpoint-2/ as a Trainer run does."""
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        save_steps=2,
        per_device_train_batch_size=8,
        learning_rate=0.1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    return out / "checkpoint-2"


def _ends(results: pd.DataFrame) -> tuple[float, float]:
    whole = results[results["curve"] == "all"].set_index("alpha")["loss"]
    return float(whole.loc[0.0]), float(whole.loc[1.0])


# ---------------------------------------------------------------------------------------------- ViT


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny ViT image classifier: init, fine-tuned (plain and sharded), a Trainer checkpoint, and its data."""
    _quiet()
    root = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=8,
        patch_size=4,
        num_channels=1,
        num_labels=3,
    )
    model = transformers.ViTForImageClassification(config)
    model.save_pretrained(root / "init")
    x, y = torch.randn(48, 1, 8, 8), torch.randint(0, 3, (48,))
    _train(model, {"pixel_values": x, "labels": y})
    model.save_pretrained(root / "final")
    model.save_pretrained(root / "sharded", max_shard_size="8KB")
    rows = [{"pixel_values": x[i], "labels": y[i]} for i in range(len(y))]
    trainer = _trainer_checkpoint(transformers.ViTForImageClassification.from_pretrained(root / "init"), rows, root)
    torch.save({"pixel_values": x, "labels": y}, root / "data.pt")
    return {"root": root, "x": x, "y": y, "trainer": trainer}


def test_vit_folders_scan_with_no_model_and_end_at_their_own_evaluation(vit: dict[str, Any]) -> None:
    root, batch = vit["root"], {"pixel_values": vit["x"], "labels": vit["y"]}
    cls = transformers.ViTForImageClassification
    assert len(list((root / "sharded").glob("model-*.safetensors"))) > 1  # really sharded
    for final in (root / "final", root / "sharded", vit["trainer"]):
        result = scan(None, root / "init", final, (vit["x"], vit["y"]), alphas=3, bootstrap=0)
        start, end = _ends(result.results)
        assert start == pytest.approx(_own_loss(cls, root / "init", batch), abs=1e-5)
        assert end == pytest.approx(_own_loss(cls, final, batch), abs=1e-5)
        assert result.manifest["model"]["kind"] == "transformers"


def test_vit_files_hold_older_names_that_transformers_renames(vit: dict[str, Any]) -> None:
    """transformers 5 writes ViT's tensors under their older names; read through transformers they are the
    model's, so nothing is missing and no --no-strict is needed."""
    stored = set(load_file(str(vit["root"] / "final" / "model.safetensors")))
    ckpt = load_checkpoint(vit["root"] / "final")
    assert ckpt.module is not None
    assert set(ckpt.tensors) == set(ckpt.module.state_dict())
    assert stored != set(ckpt.tensors)  # e.g. ...attention.attention.key.weight stored, ...k_proj.weight in the model
    assert ckpt.info.format == "transformers"
    assert ckpt.info.metadata["transformers"]["architecture"] == "ViTForImageClassification"
    assert ckpt.info.metadata["transformers"]["task"] == "image-classification"


def test_trainer_checkpoint_records_its_step_and_skips_optimizer_state(vit: dict[str, Any]) -> None:
    ckpt = load_checkpoint(vit["trainer"])
    assert ckpt.info.metadata["transformers"]["trainer_global_step"] == 2
    assert "optimizer.pt" in ckpt.info.ignored_keys
    assert {Path(f["path"]).name for f in ckpt.info.files} >= {"config.json", "model.safetensors"}


def test_cli_scans_vit_folders_with_no_model(
    vit: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = vit["root"]
    out = tmp_path / "run"
    code, err = run_cli(
        monkeypatch, capsys, "run", str(root / "init"), str(root / "sharded"), "--data", str(root / "data.pt"),
        "--alphas", "3", "--out", str(out), "--no-html", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 0, err
    assert "ViTForImageClassification" in err
    results = pd.read_csv(out / "results.csv")
    batch = {"pixel_values": vit["x"], "labels": vit["y"]}
    end = _own_loss(transformers.ViTForImageClassification, root / "sharded", batch)
    assert _ends(results)[1] == pytest.approx(end, abs=1e-5)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["checkpoints"]["final"]["format"] == "transformers"


def test_vit_pair_over_test_and_shifted_from_one_file_and_from_two(
    vit: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two save_pretrained ViTs scored on an in-distribution test set and a shifted one (the images inverted):
    from one tensor file holding both splits, and from two --data files each naming its split; each split's
    curve is the same either way."""
    test = {"pixel_values": vit["x"], "labels": vit["y"]}
    shifted = {"pixel_values": -vit["x"], "labels": vit["y"]}
    torch.save({"test": test, "shifted": shifted}, tmp_path / "both.pt")
    torch.save(test, tmp_path / "test.pt")
    torch.save(shifted, tmp_path / "shifted.pt")
    ends = [str(vit["root"] / "init"), str(vit["root"] / "final")]
    common = ["run", *ends, "--alphas", "3", "--bootstrap", "0", "--quiet", "--no-html"]
    one = ["--data", str(tmp_path / "both.pt"), "--split", "test,shifted", "-o", str(tmp_path / "one")]
    two = ["--data", f"test={tmp_path / 'test.pt'}", "--data", f"shifted={tmp_path / 'shifted.pt'}"]
    for words in (one, [*two, "-o", str(tmp_path / "two")]):
        code, err = run_cli(monkeypatch, capsys, *common, *words)
        assert code == 0, err
    columns = ["split", "alpha", "loss", "accuracy", "n"]
    a, b = (pd.read_csv(tmp_path / name / "results.csv")[columns] for name in ("one", "two"))
    assert list(pd.unique(a["split"])) == ["test", "shifted"]
    pd.testing.assert_frame_equal(a, b, **tol32())
    # a real second set: the shifted images score otherwise; α=1 on test is transformers' own evaluation
    assert not np.allclose(a.loc[a["split"] == "test", "loss"], a.loc[a["split"] == "shifted", "loss"])
    own = _own_loss(transformers.ViTForImageClassification, vit["root"] / "final", test)
    assert float(a.query("split == 'test' and alpha == 1")["loss"].iloc[0]) == pytest.approx(own, abs=1e-5)


# --------------------------------------------------------------------------------------------- BERT


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny BERT sequence classifier on padded token ids: init, fine-tuned (sharded), a Trainer checkpoint."""
    _quiet()
    root = tmp_path_factory.mktemp("bert")
    torch.manual_seed(1)
    config = transformers.BertConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=40,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)
    model.save_pretrained(root / "init")
    ids = torch.randint(1, 40, (36, 10))
    mask = torch.ones_like(ids)
    mask[::3, 6:] = 0  # every third sequence is padded after 6 tokens
    ids = ids.masked_fill(mask == 0, 0)
    labels = ids[:, 0] % 2
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    _train(model, batch)
    model.save_pretrained(root / "final", max_shard_size="10KB")
    rows = [{k: v[i] for k, v in batch.items()} for i in range(len(labels))]
    trainer = _trainer_checkpoint(
        transformers.BertForSequenceClassification.from_pretrained(root / "init"), rows, root / "trainer"
    )
    torch.save(batch, root / "text.pt")
    return {"root": root, "batch": batch, "trainer": trainer}


def test_bert_scan_from_a_text_tensor_file_ends_at_its_own_evaluation(bert: dict[str, Any]) -> None:
    root, batch = bert["root"], bert["batch"]
    cls = transformers.BertForSequenceClassification
    for final in (root / "final", bert["trainer"]):
        result = scan(None, root / "init", final, root / "text.pt", alphas=3, bootstrap=0)
        start, end = _ends(result.results)
        assert start == pytest.approx(_own_loss(cls, root / "init", batch), abs=1e-5)
        assert end == pytest.approx(_own_loss(cls, final, batch), abs=1e-5)
        assert int(result.results["n"].iloc[0]) == 36  # one example per sequence


def test_bert_scan_from_tensors_in_memory(bert: dict[str, Any]) -> None:
    """The library takes (inputs dict, labels) as well as a file."""
    root, batch = bert["root"], bert["batch"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    result = scan(None, root / "init", root / "final", (inputs, batch["labels"]), alphas=2, bootstrap=0)
    end = _own_loss(transformers.BertForSequenceClassification, root / "final", batch)
    assert _ends(result.results)[1] == pytest.approx(end, abs=1e-5)


# -------------------------------------------------------------------------------------------- GPT-2


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny GPT-2 with tied input and output embeddings, fine-tuned on padded sequences."""
    _quiet()
    root = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(2)
    config = transformers.GPT2Config(
        n_embd=16, n_layer=2, n_head=2, vocab_size=30, n_positions=16, bos_token_id=1, eos_token_id=1, pad_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(root / "init")
    ids = torch.randint(2, 30, (24, 12))
    mask = torch.ones_like(ids)
    mask[1::2, 7:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)  # what DataCollatorForLanguageModeling does with padding
    _train(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    model.save_pretrained(root / "final")
    # the file as users tokenize it: labels a copy of input_ids, padding and all (the attention mask says which)
    torch.save({"input_ids": ids, "attention_mask": mask, "labels": ids.clone()}, root / "text.pt")
    return {"root": root, "batch": {"input_ids": ids, "attention_mask": mask, "labels": labels}}


def test_gpt2_per_token_loss_equals_transformers_own_labels_loss(gpt2: dict[str, Any]) -> None:
    root, batch = gpt2["root"], gpt2["batch"]
    cls = transformers.GPT2LMHeadModel
    result = scan(None, root / "init", root / "final", root / "text.pt", alphas=3, bootstrap=0)
    start, end = _ends(result.results)
    assert start == pytest.approx(_own_loss(cls, root / "init", batch), abs=1e-5)
    assert end == pytest.approx(_own_loss(cls, root / "final", batch), abs=1e-5)
    assert result.manifest["loss"] == {"name": "next_token", "accuracy": True, "per_token": True}
    scored = int((batch["labels"][:, 1:] != -100).sum())
    assert int(result.results["n"].iloc[0]) == scored  # tokens, padding left out


def test_gpt2_next_token_accuracy_matches_a_plain_count(gpt2: dict[str, Any]) -> None:
    root, batch = gpt2["root"], gpt2["batch"]
    _quiet()
    model = transformers.GPT2LMHeadModel.from_pretrained(str(root / "final")).eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    predicted, target = logits[:, :-1].argmax(-1), batch["labels"][:, 1:]
    kept = target != -100
    accuracy = int((predicted[kept] == target[kept]).sum()) / int(kept.sum())
    result = scan(None, root / "init", root / "final", root / "text.pt", alphas=2, bootstrap=0)
    whole = result.results.set_index("alpha")
    assert float(whole.loc[1.0, "accuracy"]) == pytest.approx(accuracy, abs=1e-9)


def test_gpt2_ties_are_kept_and_perplexity_is_shown(
    gpt2: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = gpt2["root"]
    stored = set(load_file(str(root / "final" / "model.safetensors")))
    assert "lm_head.weight" not in stored  # the tie is stored once
    out = tmp_path / "run"
    code, err = run_cli(
        monkeypatch, capsys, "run", str(root / "init"), str(root / "final"), "--data", str(root / "text.pt"),
        "--alphas", "3", "--out", str(out), "--no-html", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 0, err
    assert "ppl(1)" in err
    assert "next_token" in err
    manifest = json.loads((out / "run.json").read_text())
    assert ["lm_head.weight", "transformer.wte.weight"] in [sorted(g) for g in manifest["weights"]["tied"]]
    end = float(pd.read_csv(out / "results.csv").query("alpha == 1")["loss"].iloc[0])
    assert f"{math.exp(end):.4g}" in err


# ---------------------------------------------------------------------------------- what goes wrong


def test_without_transformers_a_folder_is_one_line_saying_how_to_install(
    vit: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an environment without it imports
    root = vit["root"]
    code, err = run_cli(
        monkeypatch, capsys, "run", str(root / "init"), str(root / "final"), "--data", str(root / "data.pt"),
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == 2
    assert "pip install transformers" in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 2  # the error and its hint


def test_a_broken_transformers_install_is_one_line(vit: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def broken(name: str, *args: Any) -> Any:
        if name == "transformers":
            raise RuntimeError("Failed to import transformers.utils because of\nits C extension")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(CheckpointError, match="fails to import: RuntimeError: Failed to import") as info:
        load_checkpoint(vit["root"] / "final")
    assert "\n" not in str(info.value)
    assert "reinstall" in str(info.value.hint)


def test_weights_that_do_not_belong_to_the_config_are_refused(vit: dict[str, Any], tmp_path: Path) -> None:
    """transformers would fill missing tensors from a random init and carry on; interpscan refuses, listing them."""
    from safetensors.torch import save_file

    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "config.json").write_text((vit["root"] / "final" / "config.json").read_text())
    tensors = load_file(str(vit["root"] / "final" / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if not k.startswith("classifier.")}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"2 of the ViTForImageClassification's tensors .* missing classifier"):
        load_checkpoint(folder)


def test_a_config_naming_code_transformers_lacks_is_refused(vit: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "remote"
    folder.mkdir()
    config = json.loads((vit["root"] / "final" / "config.json").read_text())
    config.update(architectures=["MyViT"], auto_map={"AutoModel": "modeling.MyViT"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((vit["root"] / "final" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"'MyViT'.*remote code in auto_map"):
        load_checkpoint(folder)


def test_key_is_refused_for_a_transformers_folder(vit: dict[str, Any]) -> None:
    with pytest.raises(
        CheckpointError, match=r"final: key picks an entry of a pickled dict, and this is a transformers directory$"
    ):
        load_checkpoint(vit["root"] / "final", key="ema")


# ------------------------------------------------------------------------------------------ the example


@pytest.mark.slow
def test_finetune_example_scans_both_tasks_and_the_cli_reads_its_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/finetune_interpolation.py with a few training steps: both folders, both tasks, and the command
    its docstring gives, whose α=1 on task B is transformers' own evaluation of the fine-tuned folder."""
    example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "finetune_interpolation.py"))
    result = example["main"](tmp_path, steps=3, alphas=3)
    assert sorted(set(result.results["split"])) == ["task_a", "task_b"]
    assert len(result.results) == 6
    assert (tmp_path / "scan" / "results.csv").is_file()
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    code, err = run_cli(
        monkeypatch, capsys, "run", str(tmp_path / "pretrained"), str(tmp_path / "finetuned"),
        "--data", "examples/finetune_interpolation.py:data", "--split", "task_a,task_b", "--alphas", "2",
        "--out", str(tmp_path / "cli"), "--no-html", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 0, err
    task_b = example["data"]()["task_b"]
    own = _own_loss(transformers.BertForSequenceClassification, tmp_path / "finetuned", task_b)
    end = pd.read_csv(tmp_path / "cli" / "results.csv").query("split == 'task_b' and alpha == 1")["loss"]
    assert float(end.iloc[0]) == pytest.approx(own, abs=1e-5)
