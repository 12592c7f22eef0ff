"""Runs that earlier versions of interpscan wrote, as they wrote them (README.md says how): what a run.json and
its tables looked like before the keys and columns added since, which every reader must still read."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from interpscan.manifest import Manifest

HERE = Path(__file__).resolve().parent
FIRST = HERE / "0f07404"  # the first version: no groups, weights, loss or warnings in run.json
GROUPS = HERE / "8a65aae"  # with layer groups (conv*, fc), weights, loss and warnings


def manifest(run: Path = FIRST, **changes: Any) -> Manifest:
    """The run's run.json as a Manifest, with ``changes`` to its top-level parts (dataclasses.replace)."""
    return replace(Manifest.from_json(json.loads((run / "run.json").read_text())), **changes)
