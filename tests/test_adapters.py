"""PEFT adapter folders as checkpoints: tiny transformers models built from configs (no downloads), LoRA adapters
saved by PEFT itself, merged by interpscan and compared with PEFT's own merge_and_unload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from interpscan import scan
from interpscan.checkpoints import load_checkpoint
from interpscan.errors import CheckpointError
from tests.conftest import run_cli

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _quiet() -> None:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _perturb(model: Any, seed: int) -> None:
    """Every trainable tensor moved (LoRA's B starts at zero, so an untrained adapter would merge to nothing)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def _adapter(base: Any, base_dir: Path, out: Path, seed: int, **config: Any) -> dict[str, torch.Tensor]:
    """PEFT's adapter on ``base`` saved to ``out``; the merged model's state dict, by PEFT's merge_and_unload."""
    model = peft.get_peft_model(base, peft.LoraConfig(**config))
    _perturb(model, seed)
    model.save_pretrained(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(base_dir)  # PEFT records where the base was loaded from
    return {k: v.detach().clone() for k, v in model.merge_and_unload().state_dict().items()}


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny BERT classifier, and a LoRA adapter with most options that change the merge: per-module ranks and
    alphas, trained biases and a bias on B, a full classifier copy (modules_to_save), rsLoRA."""
    _quiet()
    root = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, vocab_size=40,
        max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    transformers.BertForSequenceClassification(config).save_pretrained(root / "base")
    cls = transformers.BertForSequenceClassification
    merged = _adapter(
        cls.from_pretrained(str(root / "base")), root / "base", root / "adapter", 1,
        r=4, lora_alpha=8, target_modules=["query", "value", "dense"], modules_to_save=["classifier"],
        bias="lora_only", lora_bias=True, rank_pattern={"layer.1.attention.self.query": 2}, alpha_pattern={"value": 3},
        use_rslora=True,
    )  # fmt: skip
    ids = torch.randint(1, 40, (12, 8))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, 0] % 2}
    torch.save(batch, root / "text.pt")
    return {"root": root, "merged": merged, "batch": batch}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny GPT-2 (Conv1D layers: fan_in_fan_out) with tied embeddings, LoRA on attention and the embedding."""
    _quiet()
    root = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(2)
    config = transformers.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=30, n_positions=16)
    transformers.GPT2LMHeadModel(config).save_pretrained(root / "base")
    base = transformers.GPT2LMHeadModel.from_pretrained(str(root / "base"))
    merged = _adapter(
        base, root / "base", root / "adapter", 3,
        r=2, lora_alpha=5, target_modules=["c_attn", "c_proj", "wte"], fan_in_fan_out=True,
    )  # fmt: skip
    return {"root": root, "merged": merged}


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_merged_adapter_equals_peft_merge_and_unload(name: str, request: pytest.FixtureRequest) -> None:
    case = request.getfixturevalue(name)
    root, expected = case["root"], case["merged"]
    ckpt = load_checkpoint(root / "adapter")
    assert ckpt.info.format == "peft-lora"
    assert ckpt.info.metadata["peft"]["base"]["from"] == "base_model_name_or_path"
    assert set(ckpt.tensors) == set(expected)
    base = load_checkpoint(root / "base").tensors
    changed = [k for k in expected if not torch.equal(expected[k], base[k])]
    assert len(changed) >= 8  # the adapter really moves the model
    for k, v in expected.items():
        torch.testing.assert_close(ckpt.tensors[k], v.float(), rtol=1e-6, atol=1e-6, msg=k)
    if name == "gpt2":  # merging into the tied embedding moved the output layer with it, as in PEFT
        assert torch.equal(ckpt.tensors["lm_head.weight"], ckpt.tensors["transformer.wte.weight"])
    else:  # the classifier (modules_to_save) and the adapted layers' biases (bias="lora_only") came whole
        assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.bias"} <= set(
            ckpt.info.metadata["peft"]["replaced"]
        )


def test_scan_base_to_adapter_equals_scan_base_to_merged(bert: dict[str, Any], tmp_path: Path) -> None:
    """`interpscan run base/ adapter/` is the scan to PEFT's merged model, saved as a transformers folder."""
    root = bert["root"]
    model = transformers.BertForSequenceClassification.from_pretrained(str(root / "base"))
    model.load_state_dict(bert["merged"])
    model.save_pretrained(tmp_path / "merged")
    one = scan(None, root / "base", root / "adapter", root / "text.pt", alphas=3, bootstrap=0).results
    two = scan(None, root / "base", tmp_path / "merged", root / "text.pt", alphas=3, bootstrap=0).results
    assert list(one["alpha"]) == list(two["alpha"])
    for column in ("loss", "accuracy"):
        assert one[column].tolist() == pytest.approx(two[column].tolist(), rel=1e-6, abs=1e-6)
    assert one["loss"].iloc[0] != pytest.approx(one["loss"].iloc[-1], abs=1e-4)


def test_base_not_here_is_the_other_endpoint(
    bert: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An adapter trained elsewhere (its base a Hub name) takes the other checkpoint as its base; alone, one line."""
    root = bert["root"]
    moved = tmp_path / "adapter"
    moved.mkdir()
    config = json.loads((root / "adapter" / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "org/tiny-bert"}))
    (moved / "adapter_model.safetensors").write_bytes((root / "adapter" / "adapter_model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"adapter: a LoRA adapter whose base 'org/tiny-bert' is not a folder"):
        load_checkpoint(moved)
    out = tmp_path / "run"
    code, err = run_cli(
        monkeypatch, capsys, "run", str(root / "base"), str(moved), "--data", str(root / "text.pt"),
        "--alphas", "2", "--out", str(out), "--no-html", "--bootstrap", "0",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["checkpoints"]["final"]["format"] == "peft-lora"
    merged = load_checkpoint(moved, base=load_checkpoint(root / "base"))
    assert merged.info.metadata["peft"]["base"]["from"] == "the other checkpoint"
    for k, v in bert["merged"].items():
        torch.testing.assert_close(merged.tensors[k], v, rtol=1e-6, atol=1e-6, msg=k)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"peft_type": "IA3"}, r"a PEFT IA3 adapter; interpscan merges LoRA adapters only"),
        ({"peft_type": "PREFIX_TUNING"}, r"a PEFT PREFIX_TUNING adapter"),
        ({"use_dora": True}, r"a LoRA adapter with DoRA \(use_dora\), whose merge is not"),
        ({"layer_replication": [[0, 1]]}, r"layer replication"),
    ],
)
def test_adapters_interpscan_cannot_merge_are_named(
    bert: dict[str, Any], tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    config = json.loads((bert["root"] / "adapter" / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
    (folder / "adapter_model.safetensors").write_bytes(
        (bert["root"] / "adapter" / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(folder)
    assert "merge_and_unload" in str(info.value.hint)


def test_an_adapter_for_another_base_lists_what_does_not_fit(bert: dict[str, Any], gpt2: dict[str, Any]) -> None:
    with pytest.raises(CheckpointError, match=r"of the adapter's tensors do not fit its base: .*not in the base"):
        load_checkpoint(_copy_with_base(bert["root"] / "adapter", gpt2["root"] / "base"))


def _copy_with_base(adapter: Path, base: Path) -> Path:
    """The adapter folder beside itself, its config naming ``base``."""
    folder = adapter.with_name(f"{adapter.name}-on-{base.parent.name}")
    folder.mkdir(exist_ok=True)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
    (folder / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes())
    return folder


class _Net(torch.nn.Module):
    """Every layer kind a LoRA merge treats differently: convolutions (3×3 and 1×1), a linear layer, an embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(7, 4)
        self.conv = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.point = torch.nn.Conv2d(6, 5, 1)
        self.head = torch.nn.Linear(5, 3)


def test_conv_linear_and_embedding_layers_of_a_plain_state_dict_merge_as_peft(tmp_path: Path) -> None:
    torch.manual_seed(4)
    net = _Net()
    torch.save(net.state_dict(), tmp_path / "base.pt")
    config = {"r": 3, "lora_alpha": 6, "target_modules": ["embed", "conv", "point", "head"]}
    model = peft.get_peft_model(net, peft.LoraConfig(**config))
    _perturb(model, 5)
    model.save_pretrained(tmp_path / "adapter")
    expected = model.merge_and_unload().state_dict()
    ckpt = load_checkpoint(tmp_path / "adapter", base=load_checkpoint(tmp_path / "base.pt"))
    assert ckpt.info.metadata["peft"]["merged"] == 4
    for k, v in expected.items():
        torch.testing.assert_close(ckpt.tensors[k], v, rtol=1e-6, atol=1e-6, msg=k)
