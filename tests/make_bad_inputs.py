"""Write the corpus of bad inputs, or run it through the CLI and render docs/bad-inputs.md (see tests/bad_inputs/).

python tests/make_bad_inputs.py DIR                         # write the corpus into DIR
python tests/make_bad_inputs.py --table docs/bad-inputs.md  # run every case, write the table
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bad_inputs import build_corpus, render_table, run_case

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
            Path(args.table).write_text(render_table(rows, [corpus, Path(tmp) / "out"]))
            print(f"wrote {args.table}", file=sys.stderr)


if __name__ == "__main__":
    main()
