"""One rule for hiding credentials in URLs, wherever a URL may be shown, recorded or compiled in.

A URL carries a credential in two places, and both become ``***``:

- its userinfo, of any shape: ``user:password@``, a token alone (``https://TOKEN@github.com``),
  ``:password@``, ``TOKEN:x-oauth-basic@``. The whole userinfo goes: which part is the secret depends on
  the host. The one exception is a user name alone where the scheme logs in with a key (``ssh://git@``,
  and ``dvc://git@host:repo``, git's scp-like ssh syntax): it names an account, not a secret.
- its query, for a parameter whose name says secret: ``token``, ``access_token``, ``password``, ``sig``,
  ``X-Amz-Signature``, ``X-Amz-Credential``, ``api_key``, ``client_secret``...; other parameters stay.

Scheme, host, port and path stay readable, so a message still says which server or repository it is:
``dvc://https://***@git.example/acme/data.git?rev=v1#data/corpus.jsonl``. The rule works on any text (a
message, a JSON document, a log line), finds each URL in it, and is idempotent: redacted text is left as it is,
so :func:`has_credential` (the text changes when redacted) says whether a credential is left.
"""

from __future__ import annotations

import re

MASK = "***"
# A user name alone is not a secret for these: ssh (and git's scp-like form after dvc://) log in with a key.
_KEY_LOGIN_SCHEMES = {"ssh", "git+ssh", "ssh+git", "sftp", "dvc"}
# scheme://userinfo@ ; the userinfo runs to the last '@' before the host's end ('/', '?', '#', whitespace),
# never across a quote or a character a URL cannot hold (a JSON document's next value is not a userinfo).
_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/?#\s\"\\<>{}|^`]*)@")
# ?name=value or &name=value (and ;name=value); the value runs to the next parameter, fragment, quote or space.
_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[A-Za-z0-9_.\-\[\]]+)=(?P<value>[^&#?\s\"'\\<>]+)")
_SECRET_NAME = re.compile(r"token|secret|passw|pwd|signature|credential|key$|^sig$|^auth|^pass$", re.IGNORECASE)


def _userinfo(match: re.Match) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    if userinfo == MASK or (scheme.lower() in _KEY_LOGIN_SCHEMES and ":" not in userinfo):
        return match[0]
    return f"{scheme}://{MASK}@"


def _parameter(match: re.Match) -> str:
    if not _SECRET_NAME.search(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={MASK}"


def redact(text: str) -> str:
    """``text`` with every credential of every URL in it replaced by ``***``; the rest as it was."""
    return _PARAMETER.sub(_parameter, _USERINFO.sub(_userinfo, text))


def has_credential(text: str) -> bool:
    """Whether ``text`` holds a URL with a credential (in its userinfo or its query)."""
    return redact(text) != text
