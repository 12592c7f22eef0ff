"""The rules for files interpscan reads or hands to a library (transformers, safetensors), one test per class of
issue 23, each with a case that failed before the rule:

- only regular files inside the folder's tree: a FIFO in place of a shard hung transformers, deaf to Ctrl-C;
- sizes bounded by what the file can honestly need, peak memory measured in a child process against a bound
  stated here: a 60 MB config.json took 3.4 GiB, a safetensors header near its 100 MB cap 2.8 GiB;
- no silent wrong numbers: config.json's float16 rounded float32 weights (and run.json said float16), and an
  unparseable config.json made the folder a bare weights file with the model built from elsewhere;
- any path bytes: a folder named in Latin-1 made the page unencodable and lost the finished scan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from interpscan.checkpoints import load_checkpoint
from interpscan.errors import CheckpointError
from tests.bad_inputs.case import RUN_ARGS, good_state
from tests.conftest import run_cli

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

# What reading a refused file may add to a process's peak memory: the refusal comes before the file is parsed, so
# only the error's own objects and page-cache noise remain. Before the bounds, the same reads took 3.4 GiB and
# 2.8 GiB.
PEAK_BOUND_MIB = 64


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ViT classifier saved with save_pretrained, sharded in two (vit/, sharded/)."""
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("rules")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4,
        num_channels=1, num_labels=3,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config)
    model.save_pretrained(root / "vit")
    model.save_pretrained(root / "sharded", max_shard_size="8KB")
    return root


def _copy(source: Path, target: Path) -> Path:
    target.mkdir()
    for f in source.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


def _child(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh Python (this worktree's interpscan), its stdout and stderr captured."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


# ------------------------------------------------------------------------------ only regular files in the tree


# Opens the FIFO for writing whenever a reader waits on it (then closes it: the reader sees an empty pipe), saying so
_GUARD = """
import os, sys, time
while True:
    try:
        os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))
        print("opened", flush=True)
    except OSError:
        pass
    time.sleep(0.05)
"""


def test_a_fifo_in_place_of_a_shard_is_refused_before_transformers_opens_it(vit: Path, tmp_path: Path) -> None:
    """Before: transformers opened the FIFO and waited for a writer forever, holding Python's lock (SIGTERM and
    Ctrl-C did not stop it). A guard process lets such a reader see an empty pipe instead, so a regression fails
    rather than hangs."""
    folder = _copy(vit / "sharded", tmp_path / "fifo")
    shard = sorted(folder.glob("*.safetensors"))[1]
    shard.unlink()
    os.mkfifo(shard)
    guard = subprocess.Popen(
        [sys.executable, "-c", _GUARD, str(shard)], stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    try:
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(folder)
    finally:
        guard.terminate()
        opened = guard.communicate()[0]
    assert str(info.value) == (
        f"{shard} is a named pipe (FIFO), not a regular file transformers reads; reading it could wait forever or "
        "never end"
    )
    assert opened == "", "something opened the FIFO"


def test_links_out_of_the_folder_are_refused_and_the_hub_cache_is_read(vit: Path, tmp_path: Path) -> None:
    """Before: config.json linking to a file anywhere on the machine was read (and hashed into run.json). A snapshot
    of the hub's cache, whose files link to ../../blobs, is one tree and is read."""
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((vit / "vit" / "config.json").read_bytes())
    folder = _copy(vit / "vit", tmp_path / "linked")
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"config.json links to .*elsewhere.json, outside the folder"):
        load_checkpoint(folder)

    cache = tmp_path / "models--tiny--vit"
    snapshot = cache / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (cache / "blobs").mkdir()
    for f in (vit / "vit").iterdir():
        (cache / "blobs" / f.name).write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(Path("../../blobs") / f.name)
    read, original = load_checkpoint(snapshot), load_checkpoint(vit / "vit")
    assert read.tensors.keys() == original.tensors.keys()
    assert all(torch.equal(read.tensors[k], v) for k, v in original.tensors.items())


# --------------------------------------------------------------------------------- sizes, with peak memory


def test_config_and_safetensors_header_are_refused_before_they_cost_memory(tmp_path: Path, vit: Path) -> None:
    """A 60 MB config.json (it took 3.4 GiB) and a safetensors header of 90 MB over a few KiB of data (the library
    took 2.8 GiB near its 100 MB cap) are refused from their sizes: the child's peak RSS grows by less than
    PEAK_BOUND_MIB over its baseline once interpscan is imported."""
    config = _copy(vit / "vit", tmp_path / "big-config")
    text = (config / "config.json").read_text()
    with (config / "config.json").open("w") as fh:
        fh.write(text[:-2] + ',\n  "padding": [')
        fh.write("[]," * (20 << 20))  # 60 MiB of empty lists: 24 bytes of Python objects per 3 bytes of JSON
        fh.write("[]]}")
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in good_state(1).items()}, str(plain))
    raw = plain.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n].rstrip() + b" " * (90 << 20)
    bloated = tmp_path / "bloated.safetensors"
    bloated.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n :])
    done = _child(
        """
        import resource, sys
        from pathlib import Path
        from interpscan.checkpoints import load_checkpoint
        from interpscan.errors import CheckpointError
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        for path in sys.argv[1:]:
            before = peak()
            try:
                load_checkpoint(Path(path))
            except CheckpointError as exc:
                print(f"{peak() - before:.1f}", str(exc).split(";")[0])
        """,
        str(config),
        str(bloated),
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stderr
    grown = {line.split(" ", 1)[1]: float(line.split(" ", 1)[0]) for line in lines}
    print(f"peak RSS growth, MiB (bound {PEAK_BOUND_MIB}): {grown}")
    assert f"{config / 'config.json'}: a config.json of 60.0 MiB" in grown
    assert f"{bloated}: a safetensors header of 90.0 MiB describing 3.0 KiB of tensors" in grown
    assert all(0 <= mib < PEAK_BOUND_MIB for mib in grown.values()), grown


def test_an_honest_header_far_larger_than_its_tiny_tensors_is_read(tmp_path: Path) -> None:
    """The bound leaves room for real files: 5,000 tensors of one float each (a header 100 times its data)."""
    tensors = {f"layer.{i}.scale": torch.full((1,), float(i)) for i in range(5000)}
    path = tmp_path / "tiny.safetensors"
    save_file(tensors, str(path))
    read = load_checkpoint(path)
    assert read.info.tensor_count == 5000
    assert float(read.tensors["layer.4999.scale"]) == 4999.0


# ------------------------------------------------------------------------------------- no silent wrong numbers


def test_config_float16_over_float32_weights_keeps_the_stored_values(vit: Path, tmp_path: Path) -> None:
    """Before: the model was built in config.json's float16, every weight rounded, and run.json said float16."""
    folder = _copy(vit / "vit", tmp_path / "float16")
    config = json.loads((folder / "config.json").read_text())
    assert config["dtype"] == "float32"
    (folder / "config.json").write_text(json.dumps({**config, "dtype": "float16"}))
    read, original = load_checkpoint(folder), load_checkpoint(vit / "vit")
    weight = original.tensors["classifier.weight"]
    assert weight.dtype == torch.float32
    assert not torch.equal(weight, weight.half().float())  # float16 would round it
    assert all(torch.equal(read.tensors[k], v) for k, v in original.tensors.items())
    assert read.info.dtypes == {"float32": len(load_file(str(folder / "model.safetensors")))}
    assert read.info.metadata["transformers"]["config_dtype_ignored"] == "float16"


def test_float16_weights_stay_float16(vit: Path, tmp_path: Path) -> None:
    folder = _copy(vit / "vit", tmp_path / "half")
    stored = {k: v.half() for k, v in load_file(str(folder / "model.safetensors")).items()}
    save_file(stored, str(folder / "model.safetensors"), metadata={"format": "pt"})
    read = load_checkpoint(folder)
    assert read.info.dtypes == {"float16": len(stored)}
    assert read.tensors["classifier.weight"].dtype == torch.float16
    assert torch.equal(read.tensors["classifier.weight"], stored["classifier.weight"])


def test_a_config_json_that_cannot_be_parsed_is_an_error_not_a_bare_weights_file(vit: Path, tmp_path: Path) -> None:
    """Before: the folder read as a bare model.safetensors, its model built from the other endpoint's config."""
    folder = _copy(vit / "vit", tmp_path / "broken")
    (folder / "config.json").write_text('{"model_type": "vit", "hidden_size": 16,')
    with pytest.raises(CheckpointError, match=r"config.json: not valid JSON \(Expecting property name") as info:
        load_checkpoint(folder)
    assert "pass the weights file with model" in str(info.value.hint)


# -------------------------------------------------------------------------------------------- any path bytes


def _latin1(tmp_path: Path, name: bytes) -> Path:
    return Path(os.fsdecode(bytes(tmp_path) + b"/" + name))


def test_a_folder_named_in_latin1_gets_every_output_and_run_json_names_its_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "internal error: UnicodeEncodeError" while writing results.html, and no output at all."""
    folder = _latin1(tmp_path, b"caf\xe9")
    folder.mkdir()
    torch.save(good_state(0), folder / "init.pt")
    torch.save(good_state(1), folder / "final.pt")
    out = tmp_path / "out"
    args = [a for a in RUN_ARGS if a != "--no-html"]
    code, err = run_cli(monkeypatch, capsys, "run", str(folder / "init.pt"), str(folder / "final.pt"), *args,
                        "--out", str(out))  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert os.fsencode(manifest["checkpoints"]["init"]["path"]) == bytes(tmp_path) + b"/caf\xe9/init.pt"
    page = (out / "results.html").read_bytes().decode("utf-8")  # strict: the page is UTF-8 throughout
    assert "caf\\udce9" in page
