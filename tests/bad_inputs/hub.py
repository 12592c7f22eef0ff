"""Hugging Face folders from a stranger: the files interpscan hands to transformers (config.json, the index, the
shards, whatever else transformers opens by name) must be regular files inside the folder's tree, of sizes their
contents can honestly need, and say what they hold; and a folder whose name is not UTF-8 still gets its outputs.

Each case pairs a tiny ViT folder (save_pretrained) with a broken copy, through `interpscan run` with no --model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .case import Case, good_state, run_args

TITLE = "Hugging Face folders"
NAMES = (
    "hf-shard-is-fifo",
    "hf-config-is-fifo",
    "hf-generation-config-is-fifo",
    "hf-shard-is-a-device",
    "hf-config-links-outside",
    "hf-shard-links-outside",
    "hf-config-link-loop",
    "hf-index-dotdot",
    "hf-index-absolute",
    "hf-index-names-missing-shard",
    "hf-index-map-of-numbers",
    "hf-tensor-in-two-shards",
    "hf-config-not-json",
    "hf-config-not-utf8",
    "hf-config-is-a-list",
    "hf-config-model-type-number",
    "hf-config-nested-too-deep",
    "hf-config-too-large",
    "hf-generation-config-too-large",
    "hf-weights-is-a-directory",
    "hf-header-bloated",
    "hf-header-many-empty-tensors",
    "safetensors-header-bloated",
    "safetensors-duplicate-name",
    "sharded-tensor-in-two-shards",
    "hf-config-says-float16",
    "hf-hub-cache-snapshot",
    "hf-folder-name-not-utf8",
    "checkpoint-folder-name-not-utf8",
)


def _vit(root: Path) -> tuple[Path, Path, Path]:
    """A tiny ViT classifier saved with save_pretrained (vit/, vit-sharded/, and another one in vit-init/), and data
    for it: (folder, sharded folder, data file)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4,
        num_channels=1, num_labels=3,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(root / "vit-init")
    model = transformers.ViTForImageClassification(config)
    model.save_pretrained(root / "vit")
    model.save_pretrained(root / "vit-sharded", max_shard_size="8KB")
    data = root / "vit-data.pt"
    torch.save({"pixel_values": torch.randn(16, 1, 8, 8), "labels": torch.randint(0, 3, (16,))}, data)
    return root / "vit", root / "vit-sharded", data


def _header(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return dict(json.loads(fh.read(n)))


def _with_header(path: Path, header: dict[str, Any], *, pad: int = 0) -> bytes:
    """The file's data under another header (padded with ``pad`` spaces, as safetensors pads to 8 bytes)."""
    data = path.read_bytes()[8 + struct.unpack("<Q", path.read_bytes()[:8])[0] :]
    text = json.dumps(header).encode() + b" " * pad
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def build(root: Path) -> list[Case]:
    """Write the good folders, the broken copies and the data into ``root``; return the cases."""
    vit, sharded, data = _vit(root)
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    outside = root / "outside"
    outside.mkdir()
    cases: list[Case] = []

    def copy(name: str, source: Path = vit) -> Path:
        path = root / name
        shutil.copytree(source, path, symlinks=True)
        return path

    def hf(name: str, description: str, folder: Path, error: str, *, exit_code: int = 2, html: bool = False) -> None:
        args = ("run", str(root / "vit-init"), str(folder), "--data", str(data), "--samples", "16", "--alphas", "2")
        args += ("-q",)
        args += ("--out", "{out}") if html else ("--no-html", "--out", "{out}")
        cases.append(Case(name, description, args, exit_code, error, keep=(folder,) if exit_code else ()))

    def fifo_in(name: str, source: Path, file: str) -> Path:
        folder = copy(name, source)
        (folder / file).unlink(missing_ok=True)
        os.mkfifo(folder / file)
        return folder

    # -- files that are not regular files: transformers would open them and wait, deaf to Ctrl-C
    hf("hf-shard-is-fifo", "a sharded folder whose second shard is a FIFO", fifo_in("fifo-shard", sharded, shards[1]),
       "is a named pipe (FIFO)")  # fmt: skip
    hf("hf-config-is-fifo", "config.json is a FIFO", fifo_in("fifo-config", vit, "config.json"), "is a named pipe")
    hf("hf-generation-config-is-fifo", "a FIFO named generation_config.json beside the model",
       fifo_in("fifo-generation", vit, "generation_config.json"), "is a named pipe")  # fmt: skip
    device = copy("device-shard")
    (device / "model.safetensors").unlink()
    (device / "model.safetensors").symlink_to("/dev/zero")
    hf("hf-shard-is-a-device", "model.safetensors is a link to /dev/zero", device, "is a character device")

    # -- links out of the folder: a folder from a stranger must not make transformers read files elsewhere
    secret = outside / "config.json"
    secret.write_bytes((vit / "config.json").read_bytes())
    linked = copy("config-link")
    (linked / "config.json").unlink()
    (linked / "config.json").symlink_to(secret)
    hf("hf-config-links-outside", "config.json links to a file outside the folder", linked, "outside the folder")
    away = outside / shards[0]
    away.write_bytes((sharded / shards[0]).read_bytes())
    shard_link = copy("shard-link", sharded)
    (shard_link / shards[0]).unlink()
    (shard_link / shards[0]).symlink_to(away)
    hf("hf-shard-links-outside", "a shard links to a copy outside the folder", shard_link, "outside the folder")
    loop = copy("config-loop")
    (loop / "config.json").unlink()
    (loop / "config.json").symlink_to("config.json")
    hf("hf-config-link-loop", "config.json is a link to itself", loop, "a loop of symbolic links")

    # -- the index: names out of the folder, shards that are not there, a map that is not one
    def index_case(name: str, description: str, edit: Any, error: str) -> None:
        folder = copy(name, sharded)
        path = folder / "model.safetensors.index.json"
        index = json.loads(path.read_text())
        edit(index["weight_map"])
        path.write_text(json.dumps(index))
        hf(f"hf-{name}", description, folder, error)

    first = next(iter(json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]))
    index_case("index-dotdot", "the index names ../vit/model.safetensors for a tensor",
               lambda m: m.update({first: "../vit/model.safetensors"}), "outside its folder")  # fmt: skip
    index_case("index-absolute", "the index names /etc/passwd for a tensor",
               lambda m: m.update({first: "/etc/passwd"}), "outside its folder")  # fmt: skip
    index_case("index-names-missing-shard", "the index names a shard that is not in the folder",
               lambda m: m.update({first: "model-00009-of-00009.safetensors"}), "not found")  # fmt: skip
    index_case("index-map-of-numbers", "the index maps tensor names to numbers",
               lambda m: m.update(dict.fromkeys(m, 1)), "no weight_map of tensor names to file names")  # fmt: skip
    twice = copy("tensor-twice", sharded)
    one, other = (twice / s for s in shards)
    tensors = load_file(str(other))
    save_file({**tensors, first: load_file(str(one))[first] + 1}, str(other), metadata={"format": "pt"})
    hf("hf-tensor-in-two-shards", "a tensor stored in both shards, with other values in the second", twice,
       "stored in more than one shard")  # fmt: skip

    # -- config.json that cannot be read: never read as a bare weights file with the model from elsewhere
    def config_case(name: str, description: str, content: bytes, error: str) -> None:
        folder = copy(name)
        (folder / "config.json").write_bytes(content)
        hf(f"hf-{name}", description, folder, error)

    text = (vit / "config.json").read_bytes()
    config_case("config-not-json", "config.json cut off after its first line", text[:40], "not valid JSON")
    config_case("config-not-utf8", "config.json in Latin-1 with a byte that is not UTF-8",
                text.replace(b'"vit"', b'"vit\xe9"'), "not UTF-8")  # fmt: skip
    config_case("config-is-a-list", "config.json holds a list", b"[]", "holds a JSON list")
    config_case("config-model-type-number", "config.json's model_type is a number",
                text.replace(b'"vit"', b"7"), "model_type is 7")  # fmt: skip
    deep = b'{"model_type": "vit", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    config_case("config-nested-too-deep", "config.json nests 100,000 lists (Python's decoder recurses)", deep,
                "nested too deeply")  # fmt: skip
    config_case("config-too-large", "config.json of 9 MiB (it held 3.4 GiB at 60 MB)",
                text[:-2] + b',\n  "padding": [' + b"[]," * (3 << 20) + b"[]]}", "refused before reading")  # fmt: skip
    generation = copy("generation-too-large")
    with (generation / "generation_config.json").open("wb") as fh:
        fh.write(b'{"padding": [' + b"[]," * (3 << 20) + b"[]]}")
    hf("hf-generation-config-too-large", "generation_config.json of 9 MiB beside the model", generation,
       "refused before reading")  # fmt: skip
    weights_dir = copy("weights-dir")
    (weights_dir / "model.safetensors").unlink()
    (weights_dir / "model.safetensors").mkdir()
    hf("hf-weights-is-a-directory", "model.safetensors is a directory", weights_dir, "is a directory")

    # -- safetensors headers far larger than what they describe (the library took 2.8 GiB for one of 100 MB)
    bloated = copy("header-bloated")
    path = bloated / "model.safetensors"
    path.write_bytes(_with_header(path, _header(path), pad=2 << 20))
    hf("hf-header-bloated", "model.safetensors whose header is padded to 2 MiB around 10 KiB of tensors", bloated,
       "refused before reading")  # fmt: skip
    many = copy("header-many")
    path = many / "model.safetensors"
    empties = {f"empty.{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(40_000)}
    path.write_bytes(_with_header(path, {**empties, **_header(path)}))
    hf("hf-header-many-empty-tensors", "model.safetensors declaring 40,000 empty tensors beside the model's", many,
       "refused before reading")  # fmt: skip

    # -- the same rules for checkpoints read without transformers
    good = root / "good.pt"
    torch.save(good_state(0), good)
    plain = root / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in good_state(1).items()}, str(plain))
    padded = root / "bloated.safetensors"
    padded.write_bytes(_with_header(plain, _header(plain), pad=2 << 20))
    cases.append(Case("safetensors-header-bloated", "a .safetensors checkpoint whose header is padded to 2 MiB",
                      run_args(good, padded), 2, "refused before reading"))  # fmt: skip
    header = _header(plain)
    name = next(k for k in header if k != "__metadata__")
    stored = plain.read_bytes()[8 + struct.unpack("<Q", plain.read_bytes()[:8])[0] :]
    begin, end = header[name]["data_offsets"]
    again = {**header[name], "data_offsets": [len(stored), len(stored) + end - begin]}  # other values, after the rest
    raw = json.dumps(header).encode()
    raw = raw[:-1] + b", " + json.dumps({name: again}).encode()[1:]  # the same name again, last
    raw += b" " * (-len(raw) % 8)
    duplicate = root / "duplicate.safetensors"
    duplicate.write_bytes(struct.pack("<Q", len(raw)) + raw + stored + bytes(end - begin))
    cases.append(Case("safetensors-duplicate-name", "a .safetensors header naming one tensor twice, over other data",
                      run_args(good, duplicate), 2, "unreadable safetensors file"))  # fmt: skip
    twice_dir = root / "sharded-twice"
    twice_dir.mkdir()
    state = good_state(1)
    keys = list(state)
    save_file({k: state[k].contiguous() for k in keys[:3]}, str(twice_dir / "a.safetensors"))
    second = {k: (state[k] + 1 if k == keys[0] else state[k]).contiguous() for k in [keys[0], *keys[3:]]}
    save_file(second, str(twice_dir / "b.safetensors"))
    weight_map = {k: "a.safetensors" if i < 3 else "b.safetensors" for i, k in enumerate(keys)}
    (twice_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    cases.append(Case("sharded-tensor-in-two-shards", "a sharded checkpoint with a tensor in both shards, the index "
                      "naming the first", run_args(good, twice_dir / "model.safetensors.index.json"), 2,
                      "stored in more than one shard"))  # fmt: skip

    # -- inputs that run: the files' dtype wins over config.json's, the hub's cache links into its blobs
    float16 = copy("config-float16")
    (float16 / "config.json").write_bytes(text.replace(b'"dtype": "float32"', b'"dtype": "float16"'))
    hf("hf-config-says-float16", "config.json says float16 over float32 weights (read as stored)", float16, "",
       exit_code=0)  # fmt: skip
    cache = root / "hub" / "models--tiny--vit"
    snapshot = cache / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (cache / "blobs").mkdir()
    for f in vit.iterdir():
        blob = cache / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    hf("hf-hub-cache-snapshot", "a snapshot in the hub's cache, its files links to ../../blobs", snapshot, "",
       exit_code=0)  # fmt: skip
    latin = Path(os.fsdecode(bytes(root) + b"/vit-\xe9t\xe9"))  # a folder named in Latin-1
    shutil.copytree(vit, latin)
    hf("hf-folder-name-not-utf8", "a transformers folder whose name is not UTF-8, with the page", latin, "",
       exit_code=0, html=True)  # fmt: skip
    plain_latin = Path(os.fsdecode(bytes(root) + b"/caf\xe9"))
    plain_latin.mkdir()
    torch.save(good_state(1), plain_latin / "final.pt")
    args = run_args(good, plain_latin / "final.pt")
    cases.append(Case("checkpoint-folder-name-not-utf8", "a checkpoint in a folder whose name is not UTF-8, with "
                      "the page", tuple(a for a in args if a != "--no-html"), 0, ""))  # fmt: skip
    return cases
