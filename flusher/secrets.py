"""Masking of secrets in any text that leaves the process (messages, logs, states, events, artifacts, HTTP bodies).

Two layers, both applied by `mask`:

1. Known secrets: every secret value of every Settings this process loaded (or was told about with `remember`), in
   every form it can appear in: as is, percent-encoded (a URI's userinfo), libpq-quoted, SQL-quoted, repr- and
   JSON-escaped.
2. Parsing, for secrets nobody registered: connection strings in the text are parsed, not pattern-matched, so a
   libpq keyword value in quotes (`password='pa ss'`, escapes included), a URI's userinfo password
   (`postgresql://user:pw@host/db`, percent-encoded or not) and quoted `"password": "..."` fields are masked whole.

No Prefect import: the core uses it, and tasks/flows and the CLI route their output through it.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import psycopg.conninfo

MASK = "********"
MIN_LENGTH = 4  # a shorter secret is masked only where parsing finds it: replacing "ab" everywhere would garble text
SECRET_KEYS = frozenset(
    {
        "password",
        "sslpassword",
        "passwd",
        "catalog_path",
        "dsn",
        "aws_access_key_id",
        "aws_secret_access_key",
        "secret",
        "token",
        "webhook_url",
    }
)
# libpq keywords whose value is a secret (the keyword form of a connection string)
_CONNINFO_SECRET_WORDS = ("password", "sslpassword", "passwd")

_lock = threading.Lock()
_known: set[str] = set()
_variants: list[str] = []  # every form of every known secret, longest first


def _forms(secret: str) -> set[str]:
    """The ways `secret` can be spelled in a message: as is, URI-encoded, libpq/SQL quoted, repr/JSON escaped."""
    libpq = secret.replace("\\", "\\\\").replace("'", "\\'")
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        libpq,
        libpq.replace("'", "''"),  # a libpq string inside a SQL literal (DuckDB's ATTACH '...')
        secret.replace("'", "''"),
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
    }
    return {f for f in forms if len(f) >= MIN_LENGTH}


def remember(*secrets: str | None) -> None:
    """Mask these values (and their encoded forms) in everything `mask` sees from now on, in this process."""
    new = set()
    for secret in secrets:
        if isinstance(secret, str) and secret and secret not in _known:
            new.add(secret)
            new.update(_conninfo_passwords(secret))  # a DSN's password, decoded, is a secret of its own
    if not new:
        return
    with _lock:
        _known.update(new)
        forms = set(_variants)
        for secret in new:
            forms |= _forms(secret)
        _variants[:] = sorted(forms, key=len, reverse=True)


def remember_mapping(raw: Any) -> None:
    """Remember every string under a secret key (password, dsn, catalog_path, aws_*) in a raw config mapping.

    Called before validation, so that even a value validation refuses is masked in the error that names it.
    """
    remember(*_secret_values(raw))


def _secret_values(raw: Any) -> Iterator[str]:
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            if isinstance(key, str) and key.lower() in SECRET_KEYS and isinstance(value, str):
                yield value
            elif isinstance(key, str) and key.lower() in SECRET_KEYS and hasattr(value, "get_secret_value"):
                yield value.get_secret_value()  # a pydantic SecretStr (a block's field)
            else:
                yield from _secret_values(value)
    elif isinstance(raw, list):
        for item in raw:
            yield from _secret_values(item)


def secrets_of(settings: Any) -> list[str]:
    """Every secret value of a flusher Settings: passwords, the catalog DSN (and its password), S3 keys, downstream."""
    found: list[str] = [settings.postgres.password.get_secret_value()]
    lake = settings.ducklake
    for value in (lake.catalog_path, lake.aws_access_key_id, lake.aws_secret_access_key):
        if value is not None:
            found.append(value.get_secret_value())
    for consumer in settings.downstream:
        found.append(consumer.password.get_secret_value())
        if consumer.dsn is not None:
            found.append(consumer.dsn.get_secret_value())
    return [s for s in found if s]


def remember_settings(settings: Any) -> Any:
    """Remember every secret of `settings`; returns it (so a caller can wrap a load)."""
    remember(*secrets_of(settings))
    return settings


def _conninfo_passwords(text: str) -> list[str]:
    """The password(s) a connection string (keyword form or URI, percent-decoded) carries; [] if it is none."""
    raw = text.strip()
    for prefix in ("ducklake:", "postgres:"):
        raw = raw.removeprefix(prefix)
    if "=" not in raw and "://" not in raw:
        return []
    # Our reading of a URI's userinfo, and its pieces: libpq splits an unencoded '/' '?' '#' '@' in the password
    # into port, database or host, and error messages quote those.
    ours = [m.secret for m in _parsed_secrets(raw)]
    ours += [piece for secret in ours for piece in re.split(r"[/?#@:\s]+", secret) if len(piece) >= MIN_LENGTH]
    try:
        parts = psycopg.conninfo.conninfo_to_dict(raw)
    except Exception:  # noqa: BLE001 - not a connection string: our reading is all there is
        return ours
    return ours + [str(parts[k]) for k in _CONNINFO_SECRET_WORDS if parts.get(k)]


def uri_userinfo_problem(dsn: str) -> str | None:
    """Why a postgresql:// URI's password would not reach the server as written (libpq reads an unencoded '/', '?',
    '#' or '@' in it as the end of the userinfo, so the rest becomes host, port or database, and error messages
    quote those), or None. Configuration validation refuses such a URI instead of using a piece of the password."""
    raw = dsn.strip().removeprefix("ducklake:").removeprefix("postgres:")
    match = _SCHEME.match(raw)
    if not match or not match.group(0).lower().startswith("postgres"):
        return None
    written = _uri_password(raw, match)
    if written is None:
        return None
    try:
        read = psycopg.conninfo.conninfo_to_dict(raw).get("password")
    except Exception:  # noqa: BLE001 - unparsable: the caller's own check says so
        return None
    if read != written.secret:
        return (
            "the URI's password holds a character libpq reads as a delimiter; percent-encode it "
            "(@ %40, / %2F, ? %3F, # %23, : %3A, space %20)"
        )
    return None


class _Found:
    """A secret found by parsing: where it is in the text, and its (decoded) value."""

    def __init__(self, start: int, end: int, secret: str) -> None:
        self.start, self.end, self.secret = start, end, secret


_KEYWORD = re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(_CONNINFO_SECRET_WORDS) + r")\s*=\s*", re.IGNORECASE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_FIELD = re.compile(
    r"""(["'])(?:password|sslpassword|passwd|secret|token|dsn|catalog_path|aws_secret_access_key|aws_access_key_id)\1"""
    r"""\s*:\s*(["'])""",
    re.IGNORECASE,
)
_STOP = " \t\r\n\"'<>`"


def _keyword_value(text: str, start: int) -> tuple[int, str]:
    """libpq's reading of a keyword value starting at `start`: (end, value). Quoted values may hold spaces and
    backslash escapes; a value inside a SQL literal has its quotes doubled (''pa ss'')."""
    if text.startswith("''", start) and not text.startswith("'''", start):  # ''value'' inside a SQL literal
        end = text.find("''", start + 2)
        end = len(text) if end < 0 else end + 2
        return end, text[start + 2 : end - 2].replace("\\'", "'")
    if text.startswith("'", start):
        i, value = start + 1, []
        while i < len(text) and text[i] != "'":
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            value.append(text[i])
            i += 1
        return min(i + 1, len(text)), "".join(value)
    i, value = start, []
    while i < len(text) and not text[i].isspace():
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        value.append(text[i])
        i += 1
    # a message's own punctuation after an unquoted value ("...password=x', ..." or "(password=x)") is not the value
    while value and value[-1] in "'\",;)]}" and i > start:
        value.pop()
        i -= 1
    return i, "".join(value)


def _uri_password(text: str, match: re.Match[str]) -> _Found | None:
    """The userinfo password of the URI starting at `match`, if it has one."""
    start = match.end()
    end = start
    while end < len(text) and text[end] not in _STOP:
        end += 1
    token = text[start:end]
    authority = re.split(r"[/?#]", token, maxsplit=1)[0]
    at = authority.rfind("@")
    if at < 0 and match.group(0).lower().startswith("postgres") and "@" in token:
        at = token.rfind("@")  # an unencoded '/' or '?' in the password: userinfo runs to the last '@'
        authority = token
    if at < 0:
        return None
    userinfo = authority[:at]
    colon = userinfo.find(":")
    if colon < 0 or colon == len(userinfo) - 1:
        return None
    secret_start = start + colon + 1
    secret_end = start + at
    return _Found(secret_start, secret_end, urllib.parse.unquote(text[secret_start:secret_end]))


def _parsed_secrets(text: str) -> list[_Found]:
    """Secrets found by parsing connection strings and quoted password fields in `text`."""
    found: list[_Found] = []
    for match in _KEYWORD.finditer(text):
        end, value = _keyword_value(text, match.end())
        if end > match.end():
            found.append(_Found(match.end(), end, value))
    for match in _SCHEME.finditer(text):
        uri = _uri_password(text, match)
        if uri is not None:
            found.append(uri)
    for match in _FIELD.finditer(text):
        quote = match.group(2)
        i = match.end()
        while i < len(text) and text[i] != quote:
            i += 2 if text[i] == "\\" else 1
        if i > match.end():
            found.append(_Found(match.end(), min(i, len(text)), text[match.end() : i]))
    return found


def mask(text: str, *extra: str | None) -> str:
    """`text` with every known secret (and `extra`), and every password a connection string in it carries, masked."""
    if not isinstance(text, str) or not text:
        return text
    found = _parsed_secrets(text)
    # Mask what parsing found first (whole quoted values), right to left so positions hold; overlapping spans merge.
    spans = sorted((f.start, f.end) for f in found if f.end > f.start)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + MASK + text[end:]
    # Then every form of every known secret, and of those parsing found (they may appear again, unquoted).
    forms: set[str] = set()
    for secret in [*extra, *(f.secret for f in found)]:
        if isinstance(secret, str) and secret:
            forms |= _forms(secret)
            forms |= {form for p in _conninfo_passwords(secret) for form in _forms(p)}
    with _lock:
        variants = sorted(forms | set(_variants), key=len, reverse=True)
    for variant in variants:
        if variant in text:
            text = _replace_whole(text, variant)
    return text


def _replace_whole(text: str, variant: str) -> str:
    """Replace `variant` where it is not part of a longer name: a weak password such as "secret" must not turn
    "aws_secret_access_key" into "aws_********_access_key" (a real occurrence of a secret is delimited)."""
    before = r"(?<![A-Za-z0-9_])" if variant[0].isalnum() or variant[0] == "_" else ""
    after = r"(?![A-Za-z0-9_])" if variant[-1].isalnum() or variant[-1] == "_" else ""
    return re.sub(before + re.escape(variant) + after, MASK, text)


def contains_secret(text: str, *extra: str | None) -> bool:
    return mask(text, *extra) != text


def mask_any(value: Any) -> Any:
    """`value` with every string in it (dict values and keys, list items) masked; other values as they are."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {mask_any(k): mask_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_any(v) for v in value)
    return value


class MaskedMessage:
    """Mixin for an exception class: its message is masked when it is made, so no caller can forget to."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(mask(a) if isinstance(a, str) else a for a in args))


def masked_exception(exc: BaseException) -> BaseException:
    """`exc`, or, when its message holds a secret, a copy of the same type whose message is masked."""
    text = str(exc)
    masked = mask(text)
    if masked == text:
        return exc
    try:
        clone = copy.copy(exc)
        clone.args = (masked,)
        if str(clone) == masked:
            return clone
    except Exception:  # noqa: BLE001 - an exception type that cannot be copied: fall back to a plain one
        pass
    return RuntimeError(f"{type(exc).__name__}: {masked}")


# --- logging: every record of the process is masked when it is made (before any handler, Prefect's API one too) ---

_installed = False


def install_log_masking() -> None:
    """Mask every log record made in this process from now on (message, arguments, traceback); idempotent.

    A record factory rather than a handler filter: it also covers handlers added later (Prefect's API log handler,
    a worker's console) and records of every logger, whichever handler ends up writing them.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string: leave it to logging's own error report
        return
    masked = mask(message)
    if masked != message or record.args:
        record.msg, record.args = masked, ()
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        if mask(text) != text:
            record.exc_text = mask(text)
    if record.stack_info:
        record.stack_info = mask(record.stack_info)


class MaskingStream:
    """A text stream that masks what is written to it (the CLI's stdout and stderr)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class masked_errors:
    """Re-raise an exception whose message holds a secret as a masked copy (a flow run's state message is made from
    the exception that ends it, and goes to the API)."""

    def __enter__(self) -> masked_errors:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        replacement = masked_exception(exc)
        if replacement is exc:
            return False
        raise replacement from None


def mask_state(state: Any) -> Any:
    """A Prefect State (or anything with a `message`) with its message masked; returned for chaining."""
    message = getattr(state, "message", None)
    if isinstance(message, str):
        state.message = mask(message)
    return state
