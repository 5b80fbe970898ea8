"""A corpus named by version: ``dvc://<repo>?rev=<rev>#<path>``, pulled from the repository's DVC remote.

A path names whatever bytes lie there today; a reference names the corpus a git revision of a DVC
repository tracks, which any machine that can reach the repository and its remote gets back
bit for bit: a Kubeflow pod, a colleague's laptop, ``dvc repro`` next year. The validate stage
materialises a reference into its own folder and validates the file as usual, recording the
reference with the resolved commit and DVC's md5 from that revision.

The reference's syntax is :mod:`longdoc.config.dvc_reference` (checked with the params, before any
compute). Only ``dvc`` is imported, and only when a reference is fetched: a plain path costs nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import yaml

from longdoc.config.dvc_reference import DvcReference, is_reference, parse_reference
from longdoc.data.versioning import UNTRACKED
from longdoc.errors import LongdocError
from longdoc.redaction import redact  # a token in a git URL is shown and recorded as https://***@host/...

FETCH_DIR = ".dvc-source"  # inside the validate stage's folder; removed once the corpus is validated


@dataclass(frozen=True)
class CorpusSource:
    """The file the stage reads, DVC's md5 for it and, for a reference, where it came from."""

    path: Path
    dvc_md5: str
    reference: dict | None = None  # repo, rev, remote, path, commit and the commit-pinned reference


def _why(err: BaseException) -> str:
    """The most specific message along the exception's causes (DVC wraps git's in 'SCM error')."""
    messages, link = [], err
    while link is not None:
        text = str(link).strip()
        if text and text not in messages:
            messages.append(text)
        link = link.__cause__ or link.__context__
    return redact("; ".join(messages) or type(err).__name__)


def _open(ref: DvcReference):
    """The repository at the revision, as DVC's file system (git-tracked and DVC-tracked files alike)."""
    from dvc.api import DVCFileSystem
    from dvc.scm import CloneError, RevError

    try:
        fs = DVCFileSystem(ref.repo, rev=ref.rev, remote=ref.remote)
        fs.repo  # noqa: B018  (opening is lazy: clone and resolve the revision now, to name what failed)
    except RevError as err:
        raise LongdocError(f"DVC reference {ref}: unknown git revision {ref.rev!r} ({_why(err)})") from None
    except CloneError as err:
        raise LongdocError(f"DVC reference {ref}: the repository {redact(ref.repo)!r} cannot be reached or is not "
                           f"a git repository ({_why(err)})") from None
    except Exception as err:  # noqa: BLE001  (dvc raises many types; the user needs the reference and why)
        raise LongdocError(f"DVC reference {ref}: cannot open the repository: {_why(err)}") from None
    return fs


def tracked_md5(fs, path: str) -> str:
    """DVC's md5 for ``path`` at this revision: from the nearest ``.dvc`` file whose output holds it
    (``data.dvc`` for ``data/corpus.jsonl``, as :func:`longdoc.data.versioning.tracked_dvc_version` does
    for a local corpus), else the md5 DVC records for the path itself (an output of a dvc.yaml stage),
    else ``untracked`` (a file committed to git itself, whose version is the commit)."""
    target = PurePosixPath(path)
    for candidate in [target, *target.parents]:
        if str(candidate) == ".":
            break
        dvc_file = f"{candidate}.dvc"
        if not fs.isfile(dvc_file):
            continue
        base = PurePosixPath(dvc_file).parent
        for out in (yaml.safe_load(fs.read_text(dvc_file)) or {}).get("outs") or []:
            tracked = base / str(out.get("path", ""))
            if (tracked == target or tracked in target.parents) and out.get("md5"):
                return str(out["md5"])
    return str(fs.info(path).get("md5") or UNTRACKED)


def _remote_hint(ref: DvcReference, commit: str) -> str:
    remote = f"remote {ref.remote!r}" if ref.remote else "the default remote"
    return f"is {remote} configured in the repository, and was `dvc push` run at commit {commit[:12]}?"


def fetch(ref: DvcReference, dest_dir: Path) -> CorpusSource:
    """Pull the referenced file (or folder) from the DVC remote into ``dest_dir``.

    Each failure names the reference and the step: the repository, the revision, the path at that
    revision, or the data in the remote (committed but never pushed is the usual one).
    """
    with _clones_removed():
        return _fetch(ref, dest_dir)


def _fetch(ref: DvcReference, dest_dir: Path) -> CorpusSource:
    fs = _open(ref)
    commit = fs.repo.get_rev()
    try:
        is_dir = fs.info(ref.path)["type"] == "directory"
    except FileNotFoundError:
        raise LongdocError(f"DVC reference {ref}: no {ref.path!r} in the repository at {ref.rev} "
                           f"(commit {commit[:12]})") from None
    except Exception as err:  # noqa: BLE001  (a tracked folder whose listing is not in the remote, a bad remote)
        raise LongdocError(f"DVC reference {ref}: cannot list {ref.path!r} ({_why(err)}); "
                           f"{_remote_hint(ref, commit)}") from None
    md5 = tracked_md5(fs, ref.path)
    shutil.rmtree(dest_dir, ignore_errors=True)
    dest_dir.mkdir(parents=True)
    local = dest_dir / PurePosixPath(ref.path).name
    try:
        if is_dir:
            fs.get(ref.path, str(local), recursive=True)
        else:
            fs.get_file(ref.path, str(local))
    except Exception as err:  # noqa: BLE001
        raise LongdocError(f"DVC reference {ref}: {ref.path!r} (DVC md5 {md5}) cannot be pulled ({_why(err)}); "
                           f"{_remote_hint(ref, commit)}") from None
    record = {**asdict(ref), "repo": redact(ref.repo), "commit": commit, "reference": str(ref.pinned(commit))}
    return CorpusSource(local, md5, record)


@contextmanager
def materialise(corpus: str | Path, work_dir: Path) -> Iterator[CorpusSource]:
    """The corpus as a local path: a plain path as it is, a DVC reference pulled into ``work_dir``
    (and removed afterwards: the validated corpus is what later stages read)."""
    if not is_reference(corpus):
        from longdoc.data.versioning import tracked_dvc_version

        yield CorpusSource(Path(corpus), tracked_dvc_version(corpus))
        return
    dest = work_dir / FETCH_DIR
    try:
        yield fetch(parse_reference(str(corpus)), dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


@contextmanager
def _clones_removed() -> Iterator[None]:
    """DVC's temporary clones of the repository go into a private folder, deleted afterwards, pull or no pull.

    Each clone keeps the URL it came from, token and all, in its .git/config; DVC's own CLI deletes them at
    exit, but for a library caller they stay in the temp folder, and a failed clone is not even recorded for
    DVC's clean-up (``clean_repos``): only a folder of their own catches them all.
    """
    import tempfile

    from dvc.repo.open_repo import clean_repos

    scratch = tempfile.mkdtemp(prefix="longdoc-dvc-")
    before, tempfile.tempdir = tempfile.tempdir, scratch  # where DVC's mkdtemp() calls put the clones
    try:
        yield
    finally:
        tempfile.tempdir = before
        clean_repos()  # forget them: a later reference in this process clones afresh
        shutil.rmtree(scratch, ignore_errors=True)
