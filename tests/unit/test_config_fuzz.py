"""Property: any YAML document and any environment give Settings or a ConfigError naming a key, never another
exception, and never a secret's value in the message. No servers needed.

The normal suite runs a bounded number of examples; `make fuzz` runs many more (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flusher.config import (
    OTHER_ENV,
    ConfigError,
    DownstreamConsumer,
    Settings,
    parse_config_text,
    settings_env_names,
    settings_from_mapping,
)

# database=None: no .hypothesis folder in the repository (tests write only under temporary folders).
settings.register_profile(
    "fast",
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

SECRET = "Zq9xSECRETv7"  # distinctive: it must never appear in a message
SECRET_KEYS = {"password", "catalog_path", "aws_access_key_id", "aws_secret_access_key", "dsn"}
SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}
SECTIONS["downstream"] = DownstreamConsumer


def _keys(model: type[BaseModel]) -> list[str]:
    return sorted({name for key, f in model.model_fields.items() for name in (key, f.alias or key)})


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "null",
            "~",
            "5",
            "1e12",
            "yes",
            "ledgers_row_v2",
            "trades_row_v1",
            "host=db dbname=c",
            "s3://b/p",
            "-1",
            "0.0",
            "inf",
            "nan",
            "[a]",
            "disable",
            "snappy",
        ]
    ),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
secret_values = st.sampled_from(
    [
        SECRET,
        f"host=db dbname=c password={SECRET}",
        f"host=db dbname=c password='{SECRET} x'",
        f"postgresql://u:{SECRET}@db:5432/c",
        f"postgresql://u:{SECRET}@db",
        f"{SECRET} garbage =",
        f"host=db password={SECRET}",
        f"ducklake:postgres:dbname=c password={SECRET}",
    ]
)


@st.composite
def sections(draw: st.DrawFn, name: str) -> Any:
    """A section: usually a mapping of its known keys (secrets seeded) and some unknown ones; sometimes anything."""
    keys = _keys(SECTIONS[name])
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    chosen = draw(st.lists(st.sampled_from(keys), max_size=6, unique=True))
    mapping = {key: draw(secret_values if key in SECRET_KEYS else values) for key in chosen}
    if draw(st.booleans()):
        mapping.update(draw(st.dictionaries(st.text(max_size=10), values, max_size=2)))
    return mapping


@st.composite
def documents(draw: st.DrawFn) -> str:
    """YAML text: generated sections (downstream as one mapping or a list), or text with YAML's characters."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(alphabet=st.sampled_from(list("ab:-[]{}!&*#|>'\"\n %@`,?.0123456789\t\\")), max_size=80))
    doc: dict[Any, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=7, unique=True)):
        if name == "downstream" and draw(st.booleans()):
            doc[name] = draw(st.lists(sections("downstream"), max_size=3))
        else:
            doc[name] = draw(sections(name))
    if draw(st.integers(0, 4)) == 0:
        doc.update(draw(st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), values, max_size=2)))
    return yaml.safe_dump(doc, allow_unicode=True)


ENV_NAMES = sorted(settings_env_names())
SECRET_ENV = {name for name, (_, key) in settings_env_names().items() if key in SECRET_KEYS}
env_names = st.one_of(
    st.sampled_from(ENV_NAMES),
    st.sampled_from(sorted(OTHER_ENV)),
    st.builds(
        lambda i, k: f"FLUSHER_DOWNSTREAM_{i}_{k}",
        st.integers(0, 3),
        st.sampled_from(_keys(DownstreamConsumer)).map(str.upper),
    ),
    st.from_regex(r"\AFLUSHER_[A-Z0-9_]{1,20}\Z"),
    st.from_regex(r"\A[Ff]lusher_[a-z_]{1,12}\Z"),
    st.sampled_from(["FLUSHER_POSTGRES_PASWORD", "FLUSHER_DUCKLAKE_CATALOG_PAHT", "FLUSHER_DOWNSTREAM_0_PASWORD"]),
)
env_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20)


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(env_names, max_size=5, unique=True))
    # Secrets go to secret settings, and to unknown names (whose values are never shown; a misspelled
    # FLUSHER_POSTGRES_PASWORD holds a password).
    entry_secret = re.compile(r"^FLUSHER_DOWNSTREAM_\d+_(PASSWORD|DSN)$")
    secretish = {
        n
        for n in names
        if n in SECRET_ENV
        or entry_secret.match(n)
        or (n not in ENV_NAMES and n not in OTHER_ENV and not re.match(r"^FLUSHER_DOWNSTREAM_\d+_", n))
    }
    return {
        n: draw(
            secret_values
            if n in secretish
            else st.one_of(
                env_text, st.sampled_from(["null", "", "[ledgers_row_v2]", '["x"]', "5", "true", "[", "1e12"])
            )
        )
        for n in names
    }


def _names_a_key(message: str) -> bool:
    """A ConfigError names what is wrong: a key or variable per line, or the file as a whole."""
    whole_file = (
        "expected a mapping of sections",
        "is not valid YAML",
        "nested too deeply",
        "is not a flusher configuration",
    )
    if any(phrase in message for phrase in whole_file):
        return True
    if not message.startswith("invalid configuration in"):  # one line: "flush.tables: [...] not in the registry"
        return re.match(r"^[a-z_]+\.[a-z_]+: ", message) is not None
    lines = message.splitlines()[1:]
    return bool(lines) and all(re.match(r"^  [^\s:][^\n]*?: ", line) for line in lines)


def check(text: str, environ: dict[str, str]) -> None:
    from flusher.maintenance import Cutoffs
    from flusher.registry import selected_tables, unselected_tables

    try:
        loaded = settings_from_mapping(parse_config_text(text, "fuzz.yaml"), "fuzz.yaml", environ)
        # What every entry point does next must work too (or be a ConfigError).
        selected_tables(loaded.flush)
        unselected_tables(loaded.flush)
    except ConfigError as exc:
        message = str(exc)
        assert SECRET not in message, message
        assert _names_a_key(message), message
        return
    m = loaded.maintenance
    Cutoffs.from_settings(m.snapshot_retention_days, m.file_cleanup_age_hours, m.orphan_file_age_hours)
    loaded.postgres.conninfo()
    loaded.ducklake.catalog_conninfo()
    assert SECRET not in loaded.ducklake.describe_catalog() + repr(loaded) + loaded.postgres.describe()
    for consumer in loaded.downstream:
        if consumer.block is None:
            consumer.conninfo()
        assert SECRET not in consumer.describe()


@given(documents(), environments())
def test_any_document_and_environment_give_settings_or_a_config_error_naming_a_key(text, environ):
    check(text, environ)


@given(environments())
def test_any_environment_over_a_valid_file(environ):
    good = {
        "postgres": {"database": "d", "password": SECRET},
        "ducklake": {"catalog_path": f"host=db dbname=c password={SECRET}", "data_path": "/tmp/lake"},
    }
    check(yaml.safe_dump(good), environ)
