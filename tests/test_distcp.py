"""torch.distributed.checkpoint folders read in place: saved by dcp.save from one process and, sharded as FSDP2
saves them (DTensors split along dim 0), from two gloo processes; equal to the same weights in a torch file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

from interpscan import scan
from interpscan.checkpoints import load_checkpoint
from interpscan.errors import CheckpointError
from tests.bad_inputs.case import good_state
from tests.dcp_ranks import save_rank

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("dcp")
    init, final = good_state(0), good_state(1)
    torch.save(init, root / "init.pt")
    torch.save(final, root / "final.pt")
    optimizer = {"state": {k: {"exp_avg": torch.ones_like(v)} for k, v in final.items()}}
    dcp.save({"model": final, "optimizer": optimizer, "step": 9}, checkpoint_id=root / "one", no_dist=True)
    # fork: the ranks start with torch imported (spawning two fresh interpreters takes seconds)
    mp.start_processes(
        save_rank, args=(2, str(root / "store"), final, str(root / "two")), nprocs=2, start_method="fork"
    )
    return {"root": root, "final": final}


def test_one_and_two_process_saves_read_as_the_torch_file(saved: dict[str, Any]) -> None:
    root, final = saved["root"], saved["final"]
    assert {p.name for p in (root / "two").iterdir()} >= {".metadata", "__0_0.distcp", "__1_0.distcp"}
    for folder in (root / "one", root / "two", root / "two" / ".metadata"):
        ckpt = load_checkpoint(folder)
        assert ckpt.info.format == "torch-dcp"
        assert ckpt.info.container_key == "model"
        assert set(ckpt.tensors) == set(final)
        for k, v in final.items():
            assert torch.equal(ckpt.tensors[k], v), k
    one = load_checkpoint(root / "one")
    assert "optimizer" in one.info.ignored_keys
    assert "step" in one.info.ignored_keys
    assert len(load_checkpoint(root / "two").info.files) == 3  # .metadata and both ranks' files
    optimizer = load_checkpoint(root / "one", key="optimizer.state.conv1.weight")  # --key reaches other entries
    assert set(optimizer.tensors) == {"exp_avg"}


def test_scan_of_a_dcp_folder_equals_the_scan_of_the_torch_file(saved: dict[str, Any]) -> None:
    root = saved["root"]
    data = (torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10)
    kw: dict[str, Any] = {"alphas": 3, "bootstrap": 0, "bn": "interpolate"}
    files = scan("cnn", root / "init.pt", root / "final.pt", data, model_args={"width": 2}, **kw).results
    folder = scan("cnn", root / "init.pt", root / "two", data, model_args={"width": 2}, **kw).results
    assert folder["loss"].tolist() == files["loss"].tolist()


def test_metadata_naming_code_is_refused_without_running_it(saved: dict[str, Any], tmp_path: Path) -> None:
    """torch's own reader would unpickle .metadata with no restriction; interpscan allows torch's classes only."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes((saved["root"] / "one" / "__0_0.distcp").read_bytes())
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    (folder / ".metadata").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=r"the metadata pickle names pathlib.*touch.*refused"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_metadata_naming_other_objects_needs_unsafe_pickle(saved: dict[str, Any], tmp_path: Path) -> None:
    """A .metadata carrying an object torch's metadata never holds (a date, here harmless) is refused by default
    and read with unsafe_pickle, as any pickle naming Python objects is."""
    import datetime

    from interpscan.distcp import read_metadata

    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes((saved["root"] / "one" / "__0_0.distcp").read_bytes())
    metadata = read_metadata(saved["root"] / "one")
    metadata.storage_meta.modules = [datetime.date(2026, 1, 1)]
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"names datetime.date, .*refused") as info:
        load_checkpoint(folder)
    assert "unsafe_pickle" in str(info.value.hint)
    ckpt = load_checkpoint(folder, unsafe_pickle=True)
    assert torch.equal(ckpt.tensors["fc.weight"], saved["final"]["fc.weight"])
