"""A corpus named by version: ``dvc://<repo>?rev=<rev>#<path>`` (fetched by :mod:`longdoc.data.dvc_source`).

Only the syntax lives here, beside the params that carry it, so a malformed reference fails when the
params are read, before any compute, without importing the data layer.

Syntax (``remote`` is optional; ``rev`` and ``#path`` are not)::

    dvc://https://github.com/acme/longdoc.git?rev=v1.2#data/corpus.jsonl
    dvc://git@github.com:acme/longdoc.git?rev=3f2c1e0#data/corpus.jsonl
    dvc:///srv/git/longdoc?rev=main&remote=store#data/corpus.jsonl    (a path: three slashes)

- ``repo``: anything ``git clone`` (and DVC) accepts: a URL or a path to a git repository.
- ``rev``: a tag, branch or commit. Required: without it a local repository means its working tree,
  which is no version. Prefer a tag or a commit: a branch moves (the commit it resolved to is
  recorded either way, in the validate summary and on every model).
- ``remote``: a DVC remote of that repository; default: its default remote.
- ``path``: the file (or ``<label>/*.txt`` folder) relative to the repository root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs

from longdoc.errors import LongdocError
from longdoc.redaction import redact  # a token in a git URL is shown and recorded as https://***@host/...

SCHEME = "dvc://"
QUERY_KEYS = ("rev", "remote")


@dataclass(frozen=True)
class DvcReference:
    repo: str
    path: str
    rev: str
    remote: str | None = None

    def __str__(self) -> str:
        """The reference as written, its credentials (if any: userinfo, a token in the query) redacted."""
        query = "&".join(f"{key}={value}" for key in QUERY_KEYS if (value := getattr(self, key)))
        return redact(f"{SCHEME}{self.repo}{'?' + query if query else ''}#{self.path}")

    def pinned(self, commit: str) -> DvcReference:
        """The same reference at the commit ``rev`` resolved to: what a rerun must ask for."""
        return DvcReference(self.repo, self.path, commit, self.remote)


def is_reference(corpus: str | Path) -> bool:
    return isinstance(corpus, str) and corpus.startswith(SCHEME)


def parse_reference(text: str) -> DvcReference:
    """Split ``dvc://REPO[?rev=REV&remote=NAME]#PATH``; a malformed reference says what is wrong."""
    try:
        return _parse(text)
    except LongdocError as err:
        raise LongdocError(redact(str(err))) from None


def _parse(text: str) -> DvcReference:
    if not text.startswith(SCHEME):
        raise LongdocError(f"{text!r} is not a DVC reference: expected {SCHEME}<repo>?rev=<rev>#<path>")
    rest, sep, path = text[len(SCHEME):].rpartition("#")
    if not sep or not path.strip():
        raise LongdocError(f"DVC reference {text!r} names no file: end it with #<path in the repository>, "
                           "e.g. #data/corpus.jsonl")
    repo, query = rest, {}
    if "?" in rest:
        repo, _, raw_query = rest.rpartition("?")
        query = parse_qs(raw_query, keep_blank_values=True)
        unknown = sorted(set(query) - set(QUERY_KEYS))
        if unknown or any(len(v) != 1 or not v[0] for v in query.values()):
            raise LongdocError(f"DVC reference {text!r}: the query may set rev=<git rev> and remote=<DVC remote> "
                               f"once each, with a value (got {raw_query!r})")
    if not repo:
        raise LongdocError(f"DVC reference {text!r} names no repository: {SCHEME}<git url or path>?rev=...#...")
    if "rev" not in query:
        raise LongdocError(f"DVC reference {text!r} names no version: add ?rev=<tag, branch or commit> (without it "
                           "a local repository would mean its working tree, which is no version)")
    posix = PurePosixPath(path)
    if posix.is_absolute() or ".." in posix.parts:
        raise LongdocError(f"DVC reference {text!r}: the path must be relative to the repository root, "
                           f"without '..' (got {path!r})")
    return DvcReference(repo, str(posix), query["rev"][0], query.get("remote", [None])[0])
