"""Output folders that hold links or the user's files where interpscan's outputs go: interpscan creates only inside
the folder, never writes through a link there, and --force replaces only the files its ledger proves it wrote.
Every case keeps the file a link points to (outside the folder) and the folder as it was."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .case import Case, good_state, run_args

TITLE = "Output folders: links and the user's files"
NAMES = (
    "lock-links-outside",
    "lock-links-to-nothing",
    "lock-hard-link",
    "only-a-link-in-out",
    "partial-links-outside",
    "output-links-outside",
    "output-is-a-directory",
    "force-over-users-results",
    "force-over-users-run-json",
    "force-over-changed-output",
    "force-over-own-run",
    "out-links-to-nothing",
    "out-links-to-users-folder",
    "plot-force-over-users-page",
    "plot-out-is-a-link",
    "plot-plotlyjs-over-users-file",
    "compare-force-over-users-table",
    "compare-page-links-outside",
)


def build(root: Path) -> list[Case]:
    """Write the checkpoints, the runs, the output folders and the files outside them into ``root``."""
    import interpscan
    from interpscan.models import CNN

    init, final = root / "init.pt", root / "final.pt"
    torch.save(good_state(0), init)
    torch.save(good_state(1), final)
    secret = root / "outside" / "secret.txt"  # the user's file a link in an output folder points to
    secret.parent.mkdir()
    secret.write_text("the user's\n")
    log = root / "outside" / "empty.log"  # an empty file: an old lock would take it over and write JSON into it
    log.touch()
    cases: list[Case] = []

    def folder(name: str, link: str, target: Path) -> Path:
        """An output folder holding one link, ``link`` -> ``target``."""
        path = root / name
        path.mkdir()
        (path / link).symlink_to(target)
        return path

    def run(name: str, description: str, out: Path, error: str, *extra: str, **kw: Any) -> None:
        """`interpscan run` into ``out``; the file outside, and ``out``, stay as they were (``keep``: others)."""
        kw.setdefault("keep", (secret, out))
        cases.append(Case(name, description, run_args(init, final, *extra, out=str(out)), 2 if error else 0, error,
                          **kw))  # fmt: skip

    # -- the lock: opened through a link it would overwrite or create the file the link names
    lock_link = folder("lock-link", ".interpscan.lock", log)
    run("lock-links-outside", ".interpscan.lock is a link to an empty file outside --out", lock_link,
        ".interpscan.lock is a symbolic link", keep=(log, lock_link))  # fmt: skip
    nowhere = root / "outside" / "created-through-a-link.txt"
    run("lock-links-to-nothing", ".interpscan.lock is a link to a file that does not exist",
        folder("lock-nowhere", ".interpscan.lock", nowhere), ".interpscan.lock is a symbolic link",
        must_not_exist=(nowhere,))  # fmt: skip
    hard = root / "lock-hard"
    hard.mkdir()
    os.link(log, hard / ".interpscan.lock")
    run("lock-hard-link", ".interpscan.lock is a hard link to the user's empty file", hard,
        "is not a regular file with a single name", keep=(log, hard))  # fmt: skip
    run(
        "only-a-link-in-out",
        "--out holds only a link named like interpscan's working files (not empty)",
        folder("only-link", ".interpscan-staging-x", secret.parent),
        ".interpscan-staging-x is a symbolic link",
    )
    run(
        "partial-links-outside",
        "the partial scan's name is a link to a file outside, with --force",
        folder("partial-link", ".interpscan-partial.pt", secret),
        ".interpscan-partial.pt is a symbolic link",
        "--force",
    )
    run(
        "output-links-outside",
        "results.csv is a link to a file outside, with --force",
        folder("output-link", "results.csv", secret),
        "results.csv is a symbolic link",
        "--force",
    )
    with_dir = root / "output-dir"
    (with_dir / "results.html").mkdir(parents=True)
    (with_dir / "results.html" / "notes.md").write_text("# mine\n")
    run("output-is-a-directory", "results.html is the user's folder, with --force", with_dir,
        "results.html is a directory", "--force")  # fmt: skip

    # -- --force and the files interpscan did not write
    users = root / "users-results"
    users.mkdir()
    (users / "results.csv").write_text("my,own\n1,2\n")
    run("force-over-users-results", "--force where results.csv is the user's own file", users,
        "results.csv was not written by interpscan", "--force")  # fmt: skip
    users_json = root / "users-run-json"
    users_json.mkdir()
    (users_json / "run.json").write_text('{"mine": true}\n')
    run("force-over-users-run-json", "--force where run.json is the user's own file", users_json,
        "run.json was not written by interpscan", "--force")  # fmt: skip

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)

    def scanned(name: str) -> Path:
        path = root / name
        interpscan.scan(CNN(width=2), good_state(0), good_state(1), (x, y), alphas=3, bn="interpolate").save(path)
        return path

    changed = scanned("changed-run")
    with (changed / "summary.csv").open("a") as fh:
        fh.write("my note\n")
    run("force-over-changed-output", "--force where the user edited summary.csv after the run", changed,
        "summary.csv changed since interpscan wrote it", "--force")  # fmt: skip
    own = scanned("own-run")
    run("force-over-own-run", "--force over interpscan's own earlier run (replaced)", own, "", "--force",
        keep=(secret,))  # fmt: skip

    # -- --out itself a link: the user's path, followed once; never to create what it names
    to_nothing = root / "out-to-nothing"
    to_nothing.symlink_to(root / "outside" / "no-such-folder")
    run("out-links-to-nothing", "--out is a link to a folder that does not exist", to_nothing, "is a symbolic link to",
        keep=(secret,), must_not_exist=(root / "outside" / "no-such-folder",))  # fmt: skip
    to_users = root / "out-to-users"
    to_users.symlink_to(secret.parent)
    run("out-links-to-users-folder", "--out is a link to the user's folder (not empty)", to_users,
        "is not empty")  # fmt: skip

    # -- plot and compare: refused with --force, the folder written into kept as it was
    def refused(name: str, description: str, error: str, keep: Path, *args: str) -> None:
        cases.append(Case(name, description, (*args, "--force"), 2, error, keep=(secret, keep)))

    page_run = scanned("page-run")
    (page_run / "results.html").write_text("<p>my own page</p>\n")
    refused("plot-force-over-users-page", "`plot RUN --force` where RUN/results.html is the user's page",
            "results.html changed since interpscan wrote it", page_run, "plot", str(page_run))  # fmt: skip
    link_page = root / "pages" / "link-page.html"
    link_page.parent.mkdir()
    link_page.symlink_to(secret)
    refused("plot-out-is-a-link", "`plot --out PAGE --force` where PAGE is a link to a file outside",
            "link-page.html is a symbolic link", page_run, "plot", str(page_run), "--out", str(link_page))  # fmt: skip
    js = root / "js"
    js.mkdir()
    (js / "plotly.min.js").write_text("/* my own build */\n")
    refused("plot-plotlyjs-over-users-file", "`plot --plotlyjs directory --force` beside the user's own plotly.min.js",
            "plotly.min.js was not written by interpscan", js, "plot", str(page_run), "--out", str(js / "p.html"),
            "--plotlyjs", "directory")  # fmt: skip
    other = scanned("other-run")
    table = root / "users-compare"
    table.mkdir()
    (table / "compare.csv").write_text("my,table\n")
    refused("compare-force-over-users-table", "`compare --force` where compare.csv is the user's own file",
            "compare.csv was not written by interpscan", table, "compare", str(own), str(other), "--out",
            str(table))  # fmt: skip
    linked = folder("compare-link", "compare.html", secret)
    refused("compare-page-links-outside", "`compare --force` where compare.html is a link to a file outside",
            "compare.html is a symbolic link", linked, "compare", str(own), str(other), "--out",
            str(linked))  # fmt: skip
    return cases
