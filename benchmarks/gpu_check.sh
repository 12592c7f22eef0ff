#!/usr/bin/env bash
# The GPU check, run by a session that has a lent GPU (the device tool's `run`):
#
#     bash benchmarks/gpu_check.sh                  # from the repository root; writes into ${OUT:-.}
#
# as the device call's command, e.g. run(command="PYTHONUNBUFFERED=1 bash benchmarks/gpu_check.sh",
# timeout_s=590): the steps' limits add up to 560 s; on an H200 (2026-11-30) steps 1-4 ran in 165 s
# (benchmarks/README.md has the numbers); step 5 has not run on a GPU yet (estimated at 2-3 minutes from the
# FLOPs; its limit is 200 s). It installs nothing: the device image's python3 has
# torch, numpy and pytest, and interpscan is imported from this checkout (PYTHONPATH). Steps, each under its own
# time limit, each run even when an earlier one failed:
#   1. torch sees a CUDA device (else stop: nothing else can be checked);
#   2. tests: the tests marked gpu (`pytest -m gpu`), in the test files that have such a marker
#      (tests/test_gpu.py); pytest's 'no tests collected' counts as a pass;
#   3. cuda: the benchmark at its CUDA sizes (resnet20 10240 and MLP 32768 examples, 11 α, batch 1024, best of
#      REPEAT) -> $OUT/results-cuda.csv;
#   4. 60k: resnet20, whole path, 60000 CIFAR-shaped examples × 51 α, the floor, the naive loop and the batched
#      strategy -> $OUT/results-cuda-60k.csv;
#   5. paper: the seed paper's figure at full size (bench.py --preset paper: ResNet-18, vary-all + 5 groups,
#      21 α, recompute), batched and prefix-batched against the floor and the naive loop
#      -> $OUT/results-cuda-paper.csv;
#   6. torchrun: `interpscan run` under `torchrun --standalone --nproc-per-node 1` on the GPU (the rank's device
#      from LOCAL_RANK) against the plain run, results.csv equal to 1e-6 -> $OUT/torchrun/. One GPU runs one
#      rank: NCCL's reductions need two GPUs (tests/test_distributed.py checks the reductions with gloo on CPU).
# Everything printed is also in $OUT/gpu_check.log. Exit status: 0 when every step passed, else 1.
# Environment: PYTHON (default python3), OUT (default .), BENCH_ARGS (extra options for every benchmark run),
# STEPS (default tests,cuda,60k,paper,torchrun: the steps to run), REPEAT (default 2: best of, in step 3).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-.}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
read -r -a extra <<<"${BENCH_ARGS:-}"
steps="${STEPS:-tests,cuda,60k,paper,torchrun}"
repeat="${REPEAT:-2}"
exec > >(tee "$out/gpu_check.log") 2>&1
tee_pid=$!
trap 'exec >&- 2>&-; wait "$tee_pid" 2>/dev/null || true' EXIT # let tee write the last lines

failed=()
wanted() { [[ ",$steps," == *",$1,"* ]]; }
# step NAME SECONDS COMMAND...: run under a time limit, record a failure, go on. An exit status equal to $ALLOW
# (when set) counts as a pass.
step() {
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS rc=0
    timeout "$limit" "$@" || rc=$?
    if [ -n "${ALLOW:-}" ] && [ "$rc" -eq "$ALLOW" ]; then
        echo "== $name: exit $rc counts as a pass"
        rc=0
    fi
    echo "== $name: exit $rc after $((SECONDS - t0))s"
    if [ "$rc" -ne 0 ]; then failed+=("$name (exit $rc)"); fi
    return 0
}

echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
cuda_probe='import sys, torch
ok = torch.cuda.is_available()
print("torch", torch.__version__, "cuda", ok, torch.cuda.get_device_name() if ok else "")
sys.exit(0 if ok else 1)'
if ! "$py" -c "$cuda_probe"; then
    echo "== torch sees no CUDA device: nothing to check"
    exit 1
fi

# Only the files that mention the marker: collecting the others would import what the image may lack (plotly).
mapfile -t gpu_files < <(grep -l 'mark\.gpu' tests/test_*.py || true)
if ! wanted tests; then
    echo "== tests marked gpu: skipped (STEPS=$steps)"
elif [ "${#gpu_files[@]}" -eq 0 ]; then
    echo "== tests marked gpu: no test file has a gpu marker yet"
else
    # exit 5 is pytest's 'no tests collected'
    ALLOW=5 step "tests marked gpu" 45 "$py" -m pytest -m gpu -q -p no:cacheprovider "${gpu_files[@]}"
fi

if wanted cuda; then
    step "benchmark, CUDA sizes" 120 \
        "$py" benchmarks/bench.py --device cuda --repeat "$repeat" --csv "$out/results-cuda.csv" "${extra[@]}"
fi

# batched alone: the strategy auto picks on CUDA (the others are in step 3); 5 × 3M images would not fit the limit
if wanted 60k; then
    step "benchmark, resnet20 60k x 51" 150 \
        "$py" benchmarks/bench.py --device cuda --models resnet20 --scans whole --samples 60000 --alphas 51 \
        --strategies batched --csv "$out/results-cuda-60k.csv" "${extra[@]}"
fi

# the seed paper's figure at full size: ResNet-18 (width 64), vary-all + 5 groups, 21 α, recompute from 2,048
# images, 10,000 test images; the two CUDA strategies against the floor and the naive loop
if wanted paper; then
    step "benchmark, the paper's figure" 200 \
        "$py" benchmarks/bench.py --device cuda --preset paper --strategies batched,prefix-batched \
        --csv "$out/results-cuda-paper.csv" "${extra[@]}"
fi

# the demo's checkpoints on the bundled data, groups and recompute: once plainly, once under torchrun
if wanted torchrun; then
    scan=(run tests/golden/init.pt tests/golden/final.pt --device cuda --bn recompute --groups @top --alphas 11 --no-html
        -q --force)
    compare='import sys, pandas as pd
a, b = (pd.read_csv(f"{sys.argv[1]}/{d}/results.csv") for d in ("one", "torchrun"))
worst = float(((a["loss"] - b["loss"]).abs() / a["loss"].abs()).max())
print(f"largest relative difference of a loss: {worst:.1e}")
sys.exit(0 if worst <= 1e-6 and len(a) == len(b) else 1)'
    step "torchrun, one GPU" 45 bash -c '"$1" -m interpscan "${@:4}" --out "$2/one" &&
        "$1" -m torch.distributed.run --standalone --nproc-per-node 1 -m interpscan "${@:4}" --out "$2/torchrun" &&
        "$1" -c "$3" "$2"' _ "$py" "$out/torchrun" "$compare" "${scan[@]}"
fi

if [ "${#failed[@]}" -gt 0 ]; then
    printf '== FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "== all steps passed"
