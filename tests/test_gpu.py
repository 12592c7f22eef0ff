"""The CUDA path: batched on the GPU against sequential on the CPU. Run by benchmarks/gpu_check.sh on a
machine with a GPU; skipped elsewhere (the batched strategy itself is tested on the CPU in test_engine)."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyConvBN, make_state, run_engine

from interpscan.data import Split
from interpscan.engine import Point
from interpscan.models import resnet20

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("policy", ["interpolate", "recompute", "batch"])
def test_cuda_batched_equals_cpu_sequential(policy: str, image_data) -> None:  # type: ignore[no-untyped-def]
    x, y, calib = image_data
    model = TinyConvBN().eval()
    start, end = make_state(model, 1), make_state(model, 2)
    points = [Point("all", a) for a in (-0.2, 0.0, 0.3, 0.7, 1.0)]
    kw = {"policy": policy, "calibration": calib, "calibration_batch_size": 16, "batch_size": 32}
    cpu, _ = run_engine(model, start, end, points, [Split("t", x, y, None)], strategy="sequential", **kw)
    gpu, report = run_engine(
        model, start, end, points, [Split("t", x, y, None)], strategy="batched", device="cuda", **kw
    )
    assert report.chunk_size is not None
    assert report.chunk_size >= 1
    for a, b in zip(cpu, gpu, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=2e-3)  # TF32 is allowed on CUDA


def test_cuda_chunk_is_sized_from_free_memory() -> None:
    torch.manual_seed(0)
    model = resnet20().eval()
    a, b = model.state_dict(), resnet20().state_dict()
    x, y = torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,))
    points = [Point("all", i / 50) for i in range(51)]
    results, report = run_engine(
        model, a, b, points, [Split("t", x, y, None)], strategy="batched", device="cuda", batch_size=256
    )
    assert report.chunk_size == 51  # a small model: every point fits at once on any current GPU
    assert len(results) == 51


@pytest.mark.parametrize("strategy", ["sequential", "batched", "prefix", "prefix-batched"])
def test_cuda_streams_and_groups_through_the_api_equal_the_cpu(strategy: str) -> None:
    """The library entry point on CUDA: DataLoader batches moved as they come, groups, recompute from a stream."""
    from torch.utils.data import DataLoader, TensorDataset

    import interpscan

    torch.manual_seed(0)
    model = resnet20(width=8).eval()
    a, b = make_state(model, 1), make_state(model, 2)
    gen = torch.Generator().manual_seed(3)
    data = {
        s: DataLoader(TensorDataset(torch.randn(96, 3, 32, 32, generator=gen), torch.randint(0, 10, (96,))), 32)
        for s in ("train", "test")
    }
    kw = {"alphas": 5, "groups": ["layer*"], "bn": "recompute", "batch_size": 32}
    cpu = interpscan.scan(model, a, b, data, device="cpu", strategy="sequential", **kw)
    gpu = interpscan.scan(model, a, b, data, device="cuda", strategy=strategy, **kw)
    assert gpu.manifest["device"].startswith("cuda")
    assert gpu.results["loss"].tolist() == pytest.approx(cpu.results["loss"].tolist(), rel=2e-3)  # TF32 on CUDA
