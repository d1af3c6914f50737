"""Credentials out of everything perftune records or prints: one function per shape of input.

Command lines end up in documents that people share (tuning.json, meta.json, fix.json, gate
baselines, HTML and Markdown reports) and on terminals that CI keeps logs of. `perftune tune
--storage postgresql://user:PASSWORD@host/db` is the common case; a script's own arguments can
carry a database URL or an API token just as well. Whatever the shape, the secret is replaced by
REDACTED and everything else stays as typed, so a recorded command still says what ran.

- `redact_url`: the password of a URL's user info and secret-looking query parameters.
- `redact_text`: every URL in free text (an exception message), `NAME_PASSWORD=…`-style
  assignments and `password=…` key/value pairs (libpq connection strings).
- `redact_argv`: an argument list; the value of `--storage` and of options named like a
  secret (`--password`, `--token`, `--api-key`, …) whole, every other argument as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"

# Parts of a name that say its value is a secret: PGPASSWORD, api_key, X-Auth-Token, ...
_SECRET_WORDS = r"(?:password|passwd|pass|secret|token|api[-_]?key|access[-_]?key|auth|credentials?)"
# A query parameter or key=value pair whose name is, or ends in, one of those words.
_KEY_VALUE = re.compile(
    rf"(?P<key>(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[-_])*{_SECRET_WORDS})(?P<sep>=)(?P<value>[^\s&;#'\"]+)",
    re.IGNORECASE,
)
# NAME=value where NAME is an environment variable holding a secret (PGPASSWORD, HF_TOKEN).
_ENV_ASSIGNMENT = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_])[A-Z][A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY))"
    r"(?P<sep>=)(?P<value>[^\s&;#'\"]+)"
)
# scheme://user:password@host — the password may hold anything but '@' and whitespace; the
# last '@' before the host ends it (an unescaped '@' in a password is common in the wild).
_URL_CREDENTIALS = re.compile(
    r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s/]*)(?P<at>@)(?=[^\s@/]*(?:[/?#\s]|$))"
)
# Options whose value (the next argument, or after '=') is a secret or a storage URL as a whole.
_SECRET_OPTION = re.compile(rf"^--?(?:[A-Za-z0-9]+[-_])*{_SECRET_WORDS}$", re.IGNORECASE)
_WHOLE_VALUE_OPTIONS = frozenset({"--storage"})


def redact_text(text: str) -> str:
    """`text` with URL passwords and secret key=value pairs replaced by REDACTED."""
    if not text:
        return text
    out = _URL_CREDENTIALS.sub(lambda m: f"{m['prefix']}{REDACTED}{m['at']}", text)
    for pattern in (_ENV_ASSIGNMENT, _KEY_VALUE):
        out = pattern.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", out)
    return out


def redact_url(url: str) -> str:
    """The URL without its password (user info or query parameter); the rest as given."""
    return redact_text(url)


def _secret_option(name: str) -> bool:
    return name in _WHOLE_VALUE_OPTIONS or bool(_SECRET_OPTION.match(name))


def redact_argv(argv: Iterable[str]) -> list[str]:
    """An argument list with every credential replaced; the list keeps its length."""
    out: list[str] = []
    hide_next = False
    for raw in argv:
        arg = str(raw)
        if hide_next:
            hide_next = False
            out.append(_hidden_value(out[-1], arg))
            continue
        name, eq, value = arg.partition("=")
        if arg.startswith("-") and _secret_option(name):
            if eq:
                out.append(f"{name}={_hidden_value(name, value)}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg))
    return out


def _hidden_value(option: str, value: str) -> str:
    """A secret option's value: a storage URL keeps its shape (scheme, host, database);
    anything else is hidden whole."""
    if option.partition("=")[0] in _WHOLE_VALUE_OPTIONS:
        return redact_url(value)
    return REDACTED


def redact_command(command: str) -> str:
    """A shell command line as one string (the shape `tune`'s "run it" line has)."""
    import shlex

    try:
        parts = shlex.split(command)
    except ValueError:
        return redact_text(command)
    redacted = redact_argv(parts)
    if redacted == parts:
        return command
    return redact_text(" ".join(shlex.quote(p) for p in redacted))
