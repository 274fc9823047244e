"""Shared fixtures: a real PostgreSQL (pgserver, or $FLUSHER_TEST_PG_URI), a real Prefect API, a hot DB per test."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

# Before Prefect is imported anywhere: keep its home and database in a temporary folder, never in ~.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="flusher-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("FLUSHER_FAILPOINTS", None)
# If this process is killed before its teardown (e.g. the xdist main process of `make test`), a reaper stops every
# process it started (they all carry this PREFECT_HOME) and removes the folder.
from tests import reaper  # noqa: E402

reaper.start(_SESSION_TMP)

import psycopg  # noqa: E402
import pytest  # noqa: E402
from psycopg import sql  # noqa: E402

from flusher.embedded import create_database, create_hot_schema, server_params  # noqa: E402
from tests.helpers import HotEnv, S3Env, write_config  # noqa: E402

PG_URI_ENV = "FLUSHER_TEST_PG_URI"


# The three layers (README "Tests"), by folder. A unit or harness test may not use a server fixture.
LAYERS = ("unit", "harness", "server")
SERVER_FIXTURES = {"pg_admin_uri", "prefect_api", "s3", "hot", "ascii_hot"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        layer = next((part for part in item.path.parts[::-1] if part in LAYERS), "server")
        item.add_marker(getattr(pytest.mark, layer))
        if layer == "harness":  # one xdist worker runs them all (`make test` uses --dist loadgroup): one harness start
            item.add_marker(pytest.mark.xdist_group("harness"))
        used = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if layer != "server" and used:
            raise pytest.UsageError(
                f"{item.nodeid} is in tests/{layer} but uses {sorted(used)}: move it to tests/server"
            )
    if hasattr(config, "workerinput"):  # an xdist worker: the order in which it reports items is the queue's order
        known = config.cache.get(DURATIONS_KEY, {}) if config.cache else {}  # read once, not per item
        items.sort(key=lambda item: _expected_seconds(known, item), reverse=True)


# Slow first: xdist hands the tests out in collection order (after its groups, largest first: the harness), so the
# longest go out first and the two workers finish together, instead of one starting a 2-minute test while the other
# has run out of work. The expected time is the test's last measured time (pytest's cache, written by the run that
# measured it), else a guess from its marks. Only on xdist workers: a plain run keeps the file order (and tests/harness
# together, whose package fixture starts the harness once).
DURATIONS_KEY = "flusher/durations"
_MEASURED: dict[str, float] = {}


def _expected_seconds(known: dict[str, float], item) -> float:
    if item.get_closest_marker("harness"):
        return float("inf")  # one xdist group; keeps its items together, in file order
    if item.nodeid in known:
        return known[item.nodeid]
    return 60.0 if item.get_closest_marker("slow") else 10.0 if item.get_closest_marker("server") else 0.0


def pytest_runtest_logreport(report):
    _MEASURED[report.nodeid] = _MEASURED.get(report.nodeid, 0.0) + report.duration  # setup + call + teardown


def pytest_collection_finish(session):
    """Launch the session's Prefect server as soon as a test will need it: its ~10 s start-up overlaps PostgreSQL's
    and the first tests' set-up instead of following them. The prefect_api fixture waits for it."""
    is_xdist_controller = session.config.getoption("numprocesses", None) and not hasattr(session.config, "workerinput")
    if (
        not is_xdist_controller
        and not session.config.option.collectonly
        and any("prefect_api" in getattr(i, "fixturenames", ()) for i in session.items)
    ):
        _prefect_server().launch()


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if _MEASURED and config.cache and not hasattr(config, "workerinput"):  # the controller sees every worker's reports
        config.cache.set(DURATIONS_KEY, {**config.cache.get(DURATIONS_KEY, {}), **_MEASURED})
    if _PREFECT_SERVER:
        _PREFECT_SERVER[0].stop()
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


_PREFECT_SERVER: list = []  # the one PrefectServer of this process, once made


def _prefect_server():
    from tests.prefect_server import PrefectServer

    if not _PREFECT_SERVER:
        _PREFECT_SERVER.append(PrefectServer(_SESSION_TMP / "prefect"))
    return _PREFECT_SERVER[0]


@pytest.fixture(scope="session")
def pg_admin_uri() -> str:
    """A PostgreSQL superuser URI: $FLUSHER_TEST_PG_URI if set, else a throw-away pgserver stopped at the end."""
    uri = os.environ.get(PG_URI_ENV)
    if uri:
        yield uri
        return
    import pgserver

    server = pgserver.get_server(str(_SESSION_TMP / "pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """A real `prefect server start` (SQLite, loopback) for the session; subprocesses find it via the env."""
    server = _prefect_server()  # launched at the end of collection; this waits until it answers
    server.start()
    os.environ.update(server.env)
    _refresh_prefect_settings()
    try:
        yield server.url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        _refresh_prefect_settings()
        server.stop()


def _refresh_prefect_settings() -> None:
    """Make in-process Prefect read the environment again. Prefect reads its settings once, at import: if something
    imported it before the API URL was set (tests/harness on the same xdist worker), in-process flows would otherwise
    start a temporary server of their own instead of using the session's, which the CLI's child processes use."""
    if "prefect.context" in sys.modules:
        sys.modules["prefect.context"].refresh_global_settings_context()


def _hot_env(admin_uri: str, tmp_path: Path, encoding: str | None = None):
    """A fresh hot-buffer database with the 21 tables and audit triggers; the lake catalog lives in it too."""
    name = f"hot_{uuid.uuid4().hex[:12]}"
    create_database(admin_uri, name, encoding)
    # With SQL_ASCII, psycopg would hand back bytes; ask for text (PostgreSQL passes SQL_ASCII bytes as they are).
    uri = psycopg.conninfo.make_conninfo(admin_uri, dbname=name, **({"client_encoding": "UTF8"} if encoding else {}))
    with psycopg.connect(uri, autocommit=True) as conn:
        create_hot_schema(conn)
    env = HotEnv(uri=uri, database=name, params=server_params(admin_uri), tmp=tmp_path)
    env.config = write_config(env)
    env.install_audit()
    yield env
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def hot(pg_admin_uri: str, tmp_path: Path) -> HotEnv:
    yield from _hot_env(pg_admin_uri, tmp_path)


@pytest.fixture
def ascii_hot(pg_admin_uri: str, tmp_path: Path) -> HotEnv:
    """A hot buffer in a SQL_ASCII database, which (like some real ones) stores bytes that are not UTF-8."""
    yield from _hot_env(pg_admin_uri, tmp_path, encoding="SQL_ASCII")


@pytest.fixture(scope="session")
def s3() -> S3Env:
    """One moto S3 server on loopback for the session, with real key checking: a bucket and a key that may use it."""
    import json
    import logging
    import urllib.request

    import boto3
    from moto import settings as moto_settings
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    setup = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
    }
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="flusher")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="flusher", PolicyName="bronze", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="flusher")["AccessKey"]
    boto3.client("s3", **setup).create_bucket(Bucket="bronze")
    # From here on moto checks every request's signature against the IAM keys, as S3/B2/MinIO do.
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request).read()
    env = S3Env(endpoint=f"{host}:{port}", bucket="bronze", key_id=key["AccessKeyId"], secret=key["SecretAccessKey"])
    yield env
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    server.stop()
