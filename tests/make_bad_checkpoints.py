"""Generate the corpus of bad checkpoints, and render what the CLI says about each as a Markdown table.

    python tests/make_bad_checkpoints.py DIR                      # write the corpus into DIR
    python tests/make_bad_checkpoints.py --table docs/bad-inputs.md  # run every case through the CLI, write the table

Every file is built here from code (never hand-edited bytes), so the corpus can be regenerated and reviewed.
Each case pairs one bad file with a valid ``cnn width=2`` partner; tests/test_bad_inputs.py runs them all.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import pickle
import re
import struct
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

# The fast run every case goes through: a tiny conv net, 16 examples, the two endpoints.
MODEL_ARGS = ("--model", "cnn", "--model-arg", "width=2")
RUN_ARGS = (*MODEL_ARGS, "--samples", "16", "--alphas", "2", "--bn", "interpolate", "-q", "--no-html")


# The cases build_corpus writes, in order (checked there), so a test can be parametrized before it runs.
CASE_NAMES = (
    "missing-file",
    "empty-file",
    "random-bytes",
    "text-file",
    "json-renamed",
    "png-renamed",
    "gzipped-torch",
    "empty-directory",
    "directory-without-weights",
    "directory-two-checkpoints",
    "truncated-zip",
    "truncated-zip-head",
    "truncated-legacy",
    "truncated-pickle",
    "plain-pickle",
    "zip-bomb",
    "zip-bomb-pickle",
    "zip-size-lie",
    "pickle-of-list",
    "non-tensor-values",
    "empty-state-dict",
    "unknown-container",
    "code-pickle",
    "code-pickle-legacy",
    "npz-object-array",
    "truncated-npz",
    "truncated-safetensors",
    "safetensors-short-data",
    "safetensors-absurd-header",
    "safetensors-header-past-end",
    "safetensors-bad-dtype",
    "safetensors-overlapping",
    "safetensors-reversed-offsets",
    "safetensors-shape-vs-bytes",
    "safetensors-header-not-json",
    "sharded-missing-shard",
    "sharded-shard-outside",
    "sharded-index-not-json",
    "sharded-index-empty-map",
    "shape-mismatch",
    "other-width",
    "missing-key",
    "unexpected-key",
    "other-model",
    "dtype-mismatch",
    "nan-weights",
    "inf-weights",
)


@dataclass(frozen=True)
class Case:
    """One bad input: the checkpoints to pass and what the user must see."""

    name: str
    description: str  # what is wrong, for the table
    init: Path
    final: Path
    exit_code: int  # 2 bad input, 1 failed run, 0 ran (with a warning)
    error: str  # a substring of the first "error: …" line; "" when the run succeeds
    warning: str = ""  # a substring of a warning line, for inputs that run
    must_not_exist: tuple[Path, ...] = field(default=())  # files a refused payload would have written


def good_state(seed: int = 0, width: int = 2) -> dict[str, torch.Tensor]:
    """A valid state dict of ``cnn width=WIDTH`` (1 input channel, 10 classes)."""
    from interpscan.models import CNN

    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in CNN(width=width).state_dict().items()}


def safetensors_bytes(header: dict[str, Any], data: bytes, *, length: int | None = None) -> bytes:
    """A safetensors file from a header dict and a data buffer; ``length`` overrides the declared header size."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _torch_bytes(obj: Any, *, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _declare_huge(blob: bytes, entry_suffix: str, *, deflate: bool = True, size: int = 0xFFFF_FFF0) -> bytes:
    """Re-zip ``blob`` (deflated, or stored as torch writes it) and make one entry declare ``size`` bytes
    uncompressed (local header and central directory) while its compressed data stays as it is."""
    src = zipfile.ZipFile(io.BytesIO(blob))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    data = bytearray(out.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        target = next(i for i in zf.infolist() if i.filename.endswith(entry_suffix))
    struct.pack_into("<I", data, target.header_offset + 22, size)  # local header: uncompressed size at +22
    name = target.filename.encode()
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        (name_len,) = struct.unpack_from("<H", data, pos + 28)
        if bytes(data[pos + 46 : pos + 46 + name_len]) == name:
            struct.pack_into("<I", data, pos + 24, size)  # central record: uncompressed size at +24
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    return bytes(data)


class _RunsCode:
    """Unpickling this calls ``exec``: a stand-in for a malicious checkpoint. It writes ``marker`` if it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _png() -> bytes:
    """A valid 1×1 PNG, built from its chunks."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


def build_corpus(directory: str | Path) -> list[Case]:
    """Write every bad input (and the valid partner checkpoint) into ``directory``; return the cases."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    good = good_state(0)
    good_path = root / "good.pt"
    torch.save(good, good_path)
    good_zip = good_path.read_bytes()
    sd_header: dict[str, Any] = {}
    offset = 0
    for k, v in good.items():
        n = v.numel() * v.element_size()
        sd_header[k] = {
            "dtype": {torch.float32: "F32", torch.int64: "I64"}[v.dtype],
            "shape": list(v.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    sd_data = b"".join(v.contiguous().numpy().tobytes() for v in good.values())
    cases: list[Case] = []

    def write(name: str, data: bytes) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def bad(
        name: str, description: str, path: Path, error: str, *, exit_code: int = 2, side: str = "final", **extra: Any
    ) -> None:
        init, final = (path, good_path) if side == "init" else (good_path, path)
        cases.append(Case(name, description, init, final, exit_code, error, **extra))

    # -- not a checkpoint at all
    bad("missing-file", "the path does not exist", root / "no-such-file.pt", "checkpoint not found")
    bad("empty-file", "a file of 0 bytes", write("empty.pt", b""), "an empty file")
    rng = np.random.default_rng(0)
    bad("random-bytes", "4 KiB of random bytes", write("random.pt", rng.bytes(4096)), "not a checkpoint")
    bad("text-file", "a text file named .pt", write("notes.pt", b"hello, these are not weights\n"), "not a checkpoint")
    bad(
        "json-renamed",
        "a JSON config renamed .pt",
        write("config.pt", json.dumps({"lr": 0.1}).encode()),
        "not a checkpoint",
    )
    bad("png-renamed", "a PNG image renamed .pt", write("image.pt", _png()), "not a checkpoint")
    bad(
        "gzipped-torch",
        "a torch file compressed with gzip",
        write("good.pt.gz", gzip.compress(good_zip, mtime=0)),
        "not a checkpoint",
    )
    (root / "empty-dir").mkdir(exist_ok=True)
    bad("empty-directory", "a directory with nothing in it", root / "empty-dir", "no candidate checkpoint files")
    write("no-weights/README.md", b"# weights to follow\n")
    write("no-weights/config.json", b"{}")
    bad(
        "directory-without-weights",
        "a directory with a README and a config",
        root / "no-weights",
        "no candidate checkpoint files",
    )
    write("two-files/a.pt", good_zip)
    write("two-files/b.pt", good_zip)
    bad(
        "directory-two-checkpoints",
        "a directory holding two checkpoint files",
        root / "two-files",
        "2 candidate checkpoint files",
    )

    # -- broken PyTorch files
    bad(
        "truncated-zip",
        "torch.save output cut in half",
        write("truncated-zip.pt", good_zip[: len(good_zip) // 2]),
        "unreadable PyTorch file",
    )
    bad(
        "truncated-zip-head",
        "only the first 64 bytes of a torch.save file",
        write("head.pt", good_zip[:64]),
        "unreadable PyTorch file",
    )
    legacy = _torch_bytes(good, legacy=True)
    # the last 8 bytes cut: where a cut mid-file lands depends on the order torch writes storages in, which varies
    bad(
        "truncated-legacy",
        "a legacy (pre-1.6) torch file missing its last 8 bytes",
        write("truncated-legacy.pt", legacy[:-8]),
        "unreadable PyTorch file",
    )
    plain = pickle.dumps({k: v.tolist() for k, v in good.items()})
    bad(
        "truncated-pickle",
        "a plain pickle cut in half",
        write("truncated.pkl.pt", plain[: len(plain) // 2]),
        "unreadable PyTorch file",
    )
    bad(
        "plain-pickle",
        "a plain pickle (not torch.save) of a dict of lists",
        write("plain.pt", plain),
        "unreadable PyTorch file",
    )
    bad(
        "zip-bomb",
        "a deflated torch zip whose tensor entry declares ~4 GiB uncompressed",
        write("bomb.pt", _declare_huge(good_zip, "/data/0")),
        "refused without reading it",
    )
    bad(
        "zip-bomb-pickle",
        "a deflated torch zip whose data.pkl declares ~4 GiB uncompressed",
        write("bomb-pkl.pt", _declare_huge(good_zip, "/data.pkl")),
        "refused without reading it",
    )
    bad(
        "zip-size-lie",
        "a stored (uncompressed) entry declaring ~4 GiB, more than the file holds",
        write("size-lie.pt", _declare_huge(good_zip, "/data/0", deflate=False)),
        "refused without reading it",
    )

    # -- readable, but not a state dict
    bad(
        "pickle-of-list",
        "torch.save of a list of tensors",
        write("list.pt", _torch_bytes(list(good.values()))),
        "no tensors found",
    )
    bad(
        "non-tensor-values",
        "a dict of numbers and strings",
        write("scalars.pt", _torch_bytes({"epoch": 3, "lr": "0.1"})),
        "no tensors found",
    )
    bad("empty-state-dict", "torch.save({})", write("empty-dict.pt", _torch_bytes({})), "no tensors found")
    bad(
        "unknown-container",
        "the weights nested under an unknown key",
        write("nested.pt", _torch_bytes({"weights": good})),
        "no tensors found",
    )
    marker = root / "PWNED"
    bad(
        "code-pickle",
        "a torch file whose pickle calls exec()",
        write("evil.pt", _torch_bytes({"x": _RunsCode(marker)})),
        "refused to unpickle",
        must_not_exist=(marker,),
    )
    legacy_marker = root / "PWNED-legacy"
    bad(
        "code-pickle-legacy",
        "a legacy torch file whose pickle calls exec()",
        write("evil-legacy.pt", _torch_bytes(_RunsCode(legacy_marker), legacy=True)),
        "refused to unpickle",
        must_not_exist=(legacy_marker,),
    )
    buf = io.BytesIO()
    np.savez(buf, w=np.array([{"a": 1}], dtype=object))
    bad(
        "npz-object-array",
        "an .npz whose array needs pickle (dtype=object)",
        write("object.npz", buf.getvalue()),
        "unreadable .npz",
    )
    buf = io.BytesIO()
    np.savez(buf, **{k: v.numpy() for k, v in good.items()})
    npz = buf.getvalue()
    bad("truncated-npz", "an .npz cut in half", write("truncated.npz", npz[: len(npz) // 2]), "unreadable")

    # -- broken safetensors
    real = safetensors_bytes(sd_header, sd_data)
    bad(
        "truncated-safetensors",
        "a .safetensors file cut in half",
        write("truncated.safetensors", real[: len(real) // 2]),
        "unreadable safetensors",
    )
    bad(
        "safetensors-short-data",
        "a header whose offsets run past the end of the data",
        write("short.safetensors", real[:-16]),
        "unreadable safetensors",
    )
    bad(
        "safetensors-absurd-header",
        "a header length of 2**60 bytes",
        write("absurd.safetensors", safetensors_bytes(sd_header, sd_data, length=2**60)),
        "not a checkpoint",
    )
    bad(
        "safetensors-header-past-end",
        "a header length 1 KiB larger than the file",
        write("past-end.safetensors", safetensors_bytes(sd_header, sd_data, length=len(real) + 1024)),
        "not a checkpoint",
    )
    bad(
        "safetensors-bad-dtype",
        "a tensor of dtype 'Q7'",
        write(
            "dtype.safetensors",
            safetensors_bytes({**sd_header, "fc.bias": {**sd_header["fc.bias"], "dtype": "Q7"}}, sd_data),
        ),
        "unreadable safetensors",
    )
    first, second = next(iter(sd_header)), list(sd_header)[1]
    overlap = {**sd_header, second: {**sd_header[second], "data_offsets": sd_header[first]["data_offsets"]}}
    bad(
        "safetensors-overlapping",
        "two tensors whose byte ranges overlap",
        write("overlap.safetensors", safetensors_bytes(overlap, sd_data)),
        "unreadable safetensors",
    )
    rev = sd_header["fc.bias"]["data_offsets"]
    backwards = {**sd_header, "fc.bias": {**sd_header["fc.bias"], "data_offsets": [rev[1], rev[0]]}}
    bad(
        "safetensors-reversed-offsets",
        "a tensor whose end offset is before its start",
        write("reversed.safetensors", safetensors_bytes(backwards, sd_data)),
        "unreadable safetensors",
    )
    wrong_size = {**sd_header, "fc.bias": {**sd_header["fc.bias"], "shape": [11]}}
    bad(
        "safetensors-shape-vs-bytes",
        "a shape that does not match its byte range",
        write("shape-bytes.safetensors", safetensors_bytes(wrong_size, sd_data)),
        "unreadable safetensors",
    )
    text = b"{not json" + b" " * 32
    bad(
        "safetensors-header-not-json",
        "a header that is not JSON",
        write("garbage.safetensors", struct.pack("<Q", len(text)) + text + sd_data),
        "unreadable safetensors",
    )

    # -- sharded checkpoints
    shard_dir = root / "sharded-missing"
    shard_dir.mkdir(exist_ok=True)
    names = list(good)
    half = len(names) // 2
    save_file({k: good[k].contiguous() for k in names[:half]}, str(shard_dir / "model-00001-of-00002.safetensors"))
    weight_map = {k: f"model-0000{1 if i < half else 2}-of-00002.safetensors" for i, k in enumerate(names)}
    index = shard_dir / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    bad("sharded-missing-shard", "an index naming a shard that is not there", index, "shards are missing")
    outside_dir = root / "sharded-outside"
    outside_dir.mkdir(exist_ok=True)
    outside_map = dict.fromkeys(names, "../sharded-missing/model-00001-of-00002.safetensors")
    outside_index = outside_dir / "model.safetensors.index.json"
    outside_index.write_text(json.dumps({"metadata": {}, "weight_map": outside_map}))
    bad(
        "sharded-shard-outside",
        "an index naming a shard outside its folder (../)",
        outside_index,
        "names shards outside its folder",
    )
    bad(
        "sharded-index-not-json",
        "a *.index.json that is not JSON",
        write("bad-index/model.safetensors.index.json", b'{"weight_map": {'),
        "not a checkpoint",
    )
    bad(
        "sharded-index-empty-map",
        "an index whose weight_map is empty",
        write("empty-index/model.safetensors.index.json", b'{"weight_map": {}}'),
        "no tensors found",
    )

    # -- readable tensors that do not fit the model or each other
    shapes = {**good, "fc.weight": torch.zeros(10, 7)}
    bad("shape-mismatch", "fc.weight of shape [10, 7]", write("shapes.pt", _torch_bytes(shapes)), "shape of fc.weight")
    wider = good_state(1, width=3)
    bad("other-width", "a cnn of width 3 against one of width 2", write("width3.pt", _torch_bytes(wider)), "shape of")
    missing = {k: v for k, v in good.items() if k != "fc.bias"}
    bad("missing-key", "fc.bias left out", write("missing.pt", _torch_bytes(missing)), "missing fc.bias")
    extra = {**good, "fc2.weight": torch.zeros(3)}
    bad("unexpected-key", "an extra tensor fc2.weight", write("extra.pt", _torch_bytes(extra)), "unexpected fc2.weight")
    from interpscan.models import MLP

    other = MLP(in_features=784, width=4, depth=1).state_dict()
    bad("other-model", "an MLP's state dict where a CNN's belongs", write("mlp.pt", _torch_bytes(other)), "missing")
    ints = {**good, "conv1.weight": torch.zeros_like(good["conv1.weight"], dtype=torch.int64)}
    bad("dtype-mismatch", "conv1.weight stored as int64", write("ints.pt", _torch_bytes(ints)), "dtype of conv1.weight")

    # -- non-finite weights: the scan runs, with a warning
    nan = {**good, "fc.weight": good["fc.weight"].clone()}
    nan["fc.weight"][0, :3] = float("nan")
    bad(
        "nan-weights",
        "three NaN entries in fc.weight",
        write("nan.pt", _torch_bytes(nan)),
        "",
        exit_code=0,
        warning="final holds 3 non-finite values (fc.weight)",
    )
    inf = {**good, "conv1.weight": good["conv1.weight"].clone()}
    inf["conv1.weight"].view(-1)[0] = float("inf")
    bad(
        "inf-weights",
        "an Inf in conv1.weight of init",
        write("inf.pt", _torch_bytes(inf)),
        "",
        exit_code=0,
        warning="init holds 1 non-finite value (conv1.weight)",
        side="init",
    )
    assert tuple(c.name for c in cases) == CASE_NAMES, "update CASE_NAMES to match the cases built"
    return cases


# ------------------------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class Outcome:
    """What the CLI did with one case."""

    exit_code: int
    stderr: str

    @property
    def first_line(self) -> str:
        """The line a user reads first: the error, else the first warning, else the first line."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        for prefix in ("error:", "warning:"):
            found = [ln for ln in lines if ln.startswith(prefix)]
            if found:
                return found[0]
        return lines[0] if lines else ""


def cli_args(case: Case, out: Path) -> list[str]:
    """The `interpscan run` arguments for one case."""
    return ["run", str(case.init), str(case.final), *RUN_ARGS, "--out", str(out)]


def run_case(case: Case, out: Path) -> Outcome:
    """Run one case through the real entry point in-process, capturing stderr."""
    from interpscan.cli import main

    argv, err = sys.argv, io.StringIO()
    sys.argv = ["interpscan", *cli_args(case, out)]
    os.environ.pop("INTERPSCAN_DEBUG", None)
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return Outcome(code, err.getvalue())


def render_table(rows: Sequence[tuple[Case, Outcome]]) -> str:
    """The bad-input table as Markdown: case, what is wrong, what the user sees, exit code."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Bad inputs: what the user sees",
        "",
        "Generated by `python tests/make_bad_checkpoints.py --table docs/bad-inputs.md` from the corpus that",
        "`tests/test_bad_inputs.py` runs through `interpscan run` (bad file as one endpoint, a valid `cnn width=2`",
        "state dict as the other). Paths are shortened to the file name. Exit codes: 0 ran, 1 the run failed,",
        "2 bad input.",
        "",
        "| case | input | what the user sees (first line) | exit |",
        "|---|---|---|---|",
    ]
    for case, outcome in rows:
        seen = outcome.first_line
        for p in (case.init, case.final):
            seen = seen.replace(str(p.parent) + os.sep, "")
        # safetensors checks a header's tensors in hash-map order, so which problem it names varies from
        # process to process; keep the table stable
        seen = re.sub(r"(Error while deserializing header: )[^)]*", r"\1…", seen)
        lines.append(f"| `{case.name}` | {cell(case.description)} | {cell(seen)} | {outcome.exit_code} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", help="write the corpus here")
    parser.add_argument("--table", metavar="MD", help="run every case through the CLI and write the table here")
    args = parser.parse_args(argv)
    if not args.directory and not args.table:
        parser.error("give a directory, --table, or both")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.directory) if args.directory else Path(tmp) / "corpus"
        cases = build_corpus(corpus)
        print(f"{len(cases)} cases in {corpus}", file=sys.stderr)
        if args.table:
            rows = [(c, run_case(c, Path(tmp) / "out" / c.name)) for c in cases]
            Path(args.table).parent.mkdir(parents=True, exist_ok=True)
            Path(args.table).write_text(render_table(rows))
            print(f"wrote {args.table}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
