"""Data that misbehaves while it is read (issue #23's data classes): a DataLoader worker forked during the CLI's
background imports, image folders whose links leave the tree or reach an image twice, a mapped file rewritten in
place, options that cannot apply, memory that cannot fit, and the user's own datasets and loaders failing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

Image = pytest.importorskip("PIL.Image")

# Two background imports, each 1.5 s long, and a process forked while each is under way. Through a plain daemon
# thread (what the CLI's warm-up was), the child inherits a module lock that no thread of it holds, and its own
# import of that module never returns (killed after 3 s). Through cli._in_background, the fork waits for the import:
# a DataLoader worker reads its batch.
FORK_PROBE = """
import importlib, os, signal, sys, threading, time
from torch.utils.data import DataLoader, Dataset
from interpscan import cli

class Imports(Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, i):
        return importlib.import_module("slow_joined").VALUE

def child_imports(name):
    pid = os.fork()
    if pid == 0:
        importlib.import_module(name)
        os._exit(0)
    for _ in range(30):
        if os.waitpid(pid, os.WNOHANG)[0]:
            return "imported"
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"

sys.path.insert(0, sys.argv[1])
threading.Thread(target=importlib.import_module, args=("slow_plain",), daemon=True).start()
time.sleep(0.3)  # the import holds slow_plain's module lock now
print("plain:", child_imports("slow_plain"))
cli._in_background(lambda: importlib.import_module("slow_joined") and None, "probe")
time.sleep(0.3)
loader = DataLoader(Imports(), batch_size=2, num_workers=1, multiprocessing_context="fork", timeout=20)
print("joined:", [b.tolist() for b in loader])
"""


def test_a_worker_forked_during_the_warm_up_imports_waits_for_them(tmp_path: Path) -> None:
    for name in ("slow_plain", "slow_joined"):
        (tmp_path / f"{name}.py").write_text("import time\ntime.sleep(1.5)\nVALUE = 7\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), str(tmp_path)])}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_PROBE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["plain: hung", "joined: [[7, 7]]"], done.stdout + done.stderr
