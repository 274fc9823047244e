"""No secret leaves the process (issue 14), the pure half: masking, the config loader's errors, the allowed
config paths and the webhook template. The end-to-end greps against the real Prefect API are in
tests/server/test_secrets.py.
"""

from __future__ import annotations

import pytest
import yaml

from flusher.config import ConfigError, load_settings, settings_from_mapping

BASE = {
    "postgres": {"host": "db", "database": "hot"},
    "ducklake": {"catalog_path": "host=db dbname=c", "data_path": "/l"},
}


# --- the masking itself --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, hidden",
    [
        ("ATTACH 'ducklake:postgres:host=h user=u password=''Pa ss'' dbname=c' failed", ["Pa ss", "ss''"]),
        ("host=h password='Quo\\'te d' dbname=c", ["Quo", "te d"]),
        ("IO Error: cannot connect to postgresql://u:UriPw9@127.0.0.1:1/c", ["UriPw9"]),
        ("to postgresql://u:Pct%40Pw%2F9@h/c and", ["Pct%40Pw%2F9", "Pct@Pw/9"]),
        ("postgresql://u:un/enc@oded@h/c", ["un/enc", "oded@h"]),
        ("(host=h password=plainPw9)", ["plainPw9"]),
        ('{"password": "js on9", "x": 1}', ["js on9"]),
        ("https://user:tok9@hooks.example.com/x", ["tok9"]),
    ],
)
def test_passwords_in_connection_strings_are_masked_by_parsing(text, hidden):
    from flusher import secrets

    masked = secrets.mask(text)
    assert all(h not in masked for h in hidden), masked
    assert secrets.MASK in masked


def test_a_known_secret_is_masked_in_every_form_but_not_inside_a_longer_name():
    from flusher import secrets

    secrets.remember("postgresql://u:Kn%2Fown%27Pw%209@h/c")  # the password is "Kn/own'Pw 9"
    forms = ["Kn/own'Pw 9", "Kn%2Fown%27Pw%209", "Kn/own\\'Pw 9", "Kn/own''Pw 9", '"Kn/own\'Pw 9"']
    for form in forms:
        assert "own" not in secrets.mask(f"x {form} y"), form
    # a weak password still leaves words that contain it alone (given as `extra`: remembering it would mask the word
    # "secret" in every later test of this process)
    assert secrets.mask("aws_secret_access_key was secret", "secret") == "aws_secret_access_key was ********"


def test_ordinary_messages_are_left_alone():
    from flusher import secrets

    text = "cannot connect to PostgreSQL u@h:5432/db: refused. Check postgres.host/port/user/password"
    assert secrets.mask(text) == text


def test_a_log_record_is_masked_message_arguments_and_traceback(caplog):
    import logging

    from flusher import secrets

    secrets.install_log_masking()
    logger = logging.getLogger("postgres_ducklake_flusher.test")
    try:
        raise RuntimeError("attach failed: postgresql://u:LogPw7x@h/c")
    except RuntimeError:
        logger.exception("could not attach %s", "host=h password='Log Arg7y'")
    text = caplog.text
    assert "LogPw7x" not in text and "Arg7y" not in text and "could not attach" in text


# --- config loading: no secret in an error, no content of a file that is not a config ---------------------------


@pytest.mark.parametrize("where", ["file", "env"])
def test_an_unparsable_catalog_dsn_is_not_echoed(tmp_path, where):
    bad = "host=db dbname=c password=BadA7f3q9 BadB8k2w1"
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    environ = {}
    if where == "file":
        raw["ducklake"]["catalog_path"] = bad
    else:
        environ["FLUSHER_DUCKLAKE_CATALOG_PATH"] = bad
    with pytest.raises(
        ConfigError, match=r"ducklake.catalog_path( \(from \w+\))?: not a PostgreSQL connection string"
    ) as caught:
        settings_from_mapping(raw, "config.yaml", environ)
    assert "BadA7f3q9" not in str(caught.value) and "BadB8k2w1" not in str(caught.value)


def test_a_file_that_is_not_a_config_is_not_echoed(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root: $6$ShadowHashA7f3q9:19000:0\ndaemon: '*:19000:0:99999:7:::'\n")
    with pytest.raises(ConfigError, match="not a flusher configuration") as caught:
        load_settings(shadow)
    assert "ShadowHash" not in str(caught.value) and "daemon" not in str(caught.value)

    broken = tmp_path / "broken.yaml"
    broken.write_text("postgres:\n  host: db\n  password: [UnclosedA7f3q9\n")
    with pytest.raises(ConfigError, match="not valid YAML at line") as caught:
        load_settings(broken)
    assert "UnclosedA7f3q9" not in str(caught.value)

    odd_keys = tmp_path / "odd.yaml"
    odd_keys.write_text(yaml.safe_dump({**BASE, "vacuum": {"key with KeyA7f3q9 in it": 1, "typo_key": 2}}))
    with pytest.raises(ConfigError) as caught:
        load_settings(odd_keys)
    assert "KeyA7f3q9" not in str(caught.value) and "vacuum.typo_key: unknown key" in str(caught.value)


def test_a_run_parameter_may_only_name_the_configured_file_or_a_file_in_the_config_dir(tmp_path):
    from flusher.blocks.settings import allowed_config_path

    allowed_dir = tmp_path / "configs"
    allowed_dir.mkdir()
    (allowed_dir / "a.yaml").write_text("x")
    (allowed_dir / "link.yaml").symlink_to("/etc/passwd")
    main = tmp_path / "main.yaml"
    environ = {"FLUSHER_CONFIG": str(main), "FLUSHER_CONFIG_DIR": str(allowed_dir)}
    assert allowed_config_path(str(main), environ) == main.resolve()
    assert allowed_config_path(str(allowed_dir / "a.yaml"), environ) == (allowed_dir / "a.yaml").resolve()
    for path in [
        "/etc/passwd",
        str(allowed_dir / ".." / "main2.yaml"),
        str(allowed_dir / "link.yaml"),
        str(allowed_dir),
        str(tmp_path / "configs-evil" / "a.yaml"),
    ]:
        with pytest.raises(ConfigError, match="refused, and not read"):
            allowed_config_path(path, environ)
    with pytest.raises(ConfigError, match="FLUSHER_CONFIG_DIR is not set"):
        allowed_config_path("/etc/passwd", {})


def test_the_webhook_url_becomes_a_template_and_secrets():
    from flusher.app.alerts import webhook_template

    template, values = webhook_template("https://u:p@hooks.example.com:8443/services/T0/B0/TokA7f3q9?key=KeyA7f3q9")
    assert template == "https://{{ webhook_userinfo }}@hooks.example.com:8443{{ webhook_path }}"
    assert values == {"webhook_userinfo": "u:p", "webhook_path": "/services/T0/B0/TokA7f3q9?key=KeyA7f3q9"}
    assert webhook_template("http://127.0.0.1:9/") == ("http://127.0.0.1:9/", {})
