"""postgres-ducklake-flusher: the command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from flusher.config import CONFIG_ENV, ConfigError, Settings
from flusher.registry import selected_tables
from flusher.secrets import MaskingStream, install_log_masking, mask

# Commands import the rest of what they use when they run (the function-local imports below): `--help`, a
# configuration error and `status` answer without loading Prefect (~2 s) or DuckDB and the flows (~3 s in all).

DESCRIPTION = """\
Move Stellar Hubble tables from a PostgreSQL hot buffer into a DuckLake Bronze layer, exactly once.

A flush marks MAX(sequence) of ledgers_row_v2, copies every row at or below it into DuckLake,
deletes those rows from PostgreSQL once the lake has committed them, and runs VACUUM ANALYZE
every Nth flush. Each flush is a Prefect flow run (flow "bronze-flush").

Start with:   postgres-ducklake-flusher demo            (no setup: an embedded PostgreSQL and lake)
Then:         cp config.yaml.example config.yaml; edit it
              postgres-ducklake-flusher init  --config config.yaml
              postgres-ducklake-flusher flush --config config.yaml
From the Go service: stop it, then
              postgres-ducklake-flusher takeover --config config.yaml --dry-run   (then without --dry-run)
"""


def _settings(args: argparse.Namespace) -> Settings:
    from flusher.blocks.settings import resolve_settings

    return resolve_settings(args.config)  # as the flow does: downstream consumers may name Prefect blocks


def cmd_flush(args: argparse.Namespace) -> int:
    """Run one flush now as a Prefect flow run."""
    settings = _settings(args)  # config errors are reported before Prefect starts
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    selected_tables(settings.flush, tables)  # a typo in --tables: exit 2 with the known names, and no flow run
    from flusher.flows.bronze_flush import bronze_flush

    state = bronze_flush(
        config_path=args.config,
        tables=tables,
        dry_run=args.dry_run,
        max_ledgers_per_run=args.max_ledgers,
        return_state=True,
    )
    return _report_state("flush", state)


def cmd_catchup(args: argparse.Namespace) -> int:
    """Catch up a backlog: capped flushes (each an ordinary bronze-flush run) one after the other, a pause between
    them, until at most one interval of ledgers is left; a progress line per chunk. A kill is safe: run it again."""
    _settings(args)
    from flusher.flows.catchup import bronze_catchup

    state = bronze_catchup(
        config_path=args.config,
        chunk_ledgers=args.chunk_ledgers,
        pause_seconds=args.pause_seconds,
        behind_ok_ledgers=args.behind_ok_ledgers,
        return_state=True,
    )
    return _report_state("catch-up", state)


def cmd_takeover(args: argparse.Namespace) -> int:
    """Take over from the Go postgres-ducklake-flusher (stop it first): one flush that copies only the rows the
    lake lacks (matched by natural key, or all columns) and deletes every row at or below the watermark."""
    settings = _settings(args)
    if args.dry_run:  # read-only, and no flow run: nothing is written anywhere
        from flusher.takeover import plan_takeover, render_plan

        print(render_plan(plan_takeover(settings, selected_tables(settings.flush))))
        return 0
    from flusher.flows.bronze_flush import bronze_flush

    state = bronze_flush(config_path=args.config, takeover=True, return_state=True)
    return _report_state("takeover", state)


def _report_state(what: str, state) -> int:
    """Print a flow run's outcome in one line; 0 when it completed (or skipped), 1 otherwise."""
    if state.is_completed():
        print(f"{state.name}: {state.message}")
        return 0
    print(f"{what} {state.name.lower()}: {state.message}", file=sys.stderr)
    return 1


def cmd_maintain(args: argparse.Namespace) -> int:
    """Compact the lake and expire snapshots past the retention, as a Prefect flow run (never during a flush)."""
    _settings(args)
    from flusher.flows.maintenance import bronze_maintenance

    state = bronze_maintenance(config_path=args.config, dry_run=args.dry_run, return_state=True)
    return _report_state("maintenance", state)


def cmd_verify(args: argparse.Namespace) -> int:
    """Check hot and lake per table and ledger range: rows in each, lake duplicates, rows in both, ledger gaps and
    each batch's completeness certificate. Exit 0: clean; 1: a discrepancy (each named with its ledger range)."""
    import json

    from flusher.verify import run_verify

    settings = _settings(args)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    selected_tables(settings.flush, tables)  # an unknown name: exit 2 with the known names
    report = run_verify(settings, args.ledger_from, args.ledger_to, tables)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


def cmd_init(args: argparse.Namespace) -> int:
    """Create the flusher's state tables and the lake schema and tables (never drops anything)."""
    from flusher import cold_checkpoint
    from flusher.hot import ledger_columns, make_pool
    from flusher.lake import LakeSession
    from flusher.registry import is_default_selection, skip_missing, unselected_tables
    from flusher.state import StateStore
    from flusher.stuck import find_stuck_rows

    settings = _settings(args)
    specs = selected_tables(settings.flush)
    unselected = unselected_tables(settings.flush)
    schema = settings.postgres.schema_name
    with make_pool(settings.postgres) as pool:
        state = StateStore(pool, settings.flush.state_schema)
        state.ensure()
        identity = state.identity()
        with pool.connection() as conn, conn.transaction():  # the query API's hot/cold split, as the Go service kept it
            cold_checkpoint.ensure(conn, settings.postgres.schema_name)
        with pool.connection() as conn:
            present = ledger_columns(conn, schema, {s.name: s.ledger_column for s in specs})
            stuck = find_stuck_rows(conn, schema, specs, unselected, state.last_watermark())
    specs, missing = skip_missing(specs, present, is_default_selection(settings.flush))
    if missing:  # flushed once they appear; no lake table needed before
        print(f"not in the hot buffer {schema}, so not flushed: {', '.join(missing)}")
    names = [t.name for t in specs]
    with LakeSession(settings, attach_hot=False) as lake:
        created = lake.ensure_tables(names)
    print(
        f"state schema {settings.flush.state_schema} ready; lake {settings.ducklake.catalog_name}."
        f"{settings.ducklake.schema_name}: {len(created)} tables created, {len(names) - len(created)} already there"
    )
    if unselected:
        print(f"flush.tables leaves out known tables: {', '.join(t.name for t in unselected)}")
    for reason in stuck.reasons():
        print(f"WARNING: {reason}")
    print(identity.describe())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print per table: rows in the hot buffer, rows flushed, last batch."""
    from flusher.status import render_status

    print(render_status(_settings(args)))
    return 0


def cmd_blocks(args: argparse.Namespace) -> int:
    """Create or update the Prefect blocks that hold the credentials from a config file."""
    from flusher.app.register_blocks import save_blocks

    for line in save_blocks(_settings(args), args.postgres_block, args.ducklake_block):
        print(line)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the bronze-flush schedule from prefect.yaml, with /health and /metrics; SIGTERM shuts down gracefully."""
    from flusher.app.deployment_spec import MAINTENANCE, load_deployment
    from flusher.app.service import FlusherService

    settings = _settings(args)
    spec = load_deployment(Path(args.prefect_yaml))
    extra = [] if args.no_maintenance else [load_deployment(Path(args.prefect_yaml), MAINTENANCE)]
    return FlusherService(settings, Path(args.config), spec, args.interval_seconds, extra).run()


def cmd_alerts(args: argparse.Namespace) -> int:
    """Create or update the failure automations (automations/*.yaml) and their notification block."""
    from flusher.app.alerts import ensure_webhook_block, install_alerts, webhook_url_from
    from flusher.app.deployment_spec import effective_interval, load_deployment

    settings = _settings(args)
    interval = args.interval_seconds or effective_interval(load_deployment(Path(args.prefect_yaml)), settings)
    block_id = ensure_webhook_block(args.notify_block, webhook_url_from(args.webhook_url, args.webhook_url_env))
    for line in install_alerts(Path(args.automations), block_id, interval):
        print(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Flush synthetic data from a throw-away PostgreSQL into a local DuckLake and show the result."""
    from flusher.app.demo import run_demo

    return run_demo(ledgers=args.ledgers, workdir=args.workdir)


class RunNameFormatter(logging.Formatter):
    """Log lines of a Prefect run say which run: `flush-trades_row_v1 | Finished in state Completed()`."""

    def format(self, record: logging.LogRecord) -> str:
        name = getattr(record, "task_run_name", None) or getattr(record, "flow_run_name", None)
        record.run = f"{name} | " if name else ""
        return super().format(record)


def version() -> str:
    try:
        return importlib.metadata.version("postgres-ducklake-flusher")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use 0 for no cap, or a number of ledgers")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not a chunk; give a number of ledgers >= 1")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is negative; give seconds >= 0")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="postgres-ducklake-flusher", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help_: str, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=func.__doc__)
        if config:
            p.add_argument(
                "--config",
                "-c",
                default=os.environ.get(CONFIG_ENV) or None,
                metavar="FILE",
                help=f"YAML config (see config.yaml.example); default: ${CONFIG_ENV}",
            )
        p.set_defaults(func=func)
        return p

    flush = command("flush", cmd_flush, "run one flush now (exit 0 on success)")
    flush.add_argument("--tables", metavar="T1,T2", help="flush only these (known) tables")
    flush.add_argument("--dry-run", action="store_true", help="count what would move; change nothing")
    flush.add_argument(
        "--max-ledgers",
        type=non_negative_int,
        metavar="N",
        help="flush at most N ledgers (catch-up in chunks); 0: no cap",
    )
    catchup = command("catchup", cmd_catchup, "catch up a backlog in capped flushes, with progress (exit 0: caught up)")
    catchup.add_argument(
        "--chunk-ledgers", type=positive_int, required=True, metavar="N", help="ledgers per flush (each a flow run)"
    )
    catchup.add_argument(
        "--pause-seconds",
        type=non_negative_float,
        default=2.0,
        metavar="S",
        help="pause between chunks so the ingester and PostgreSQL breathe (default 2)",
    )
    catchup.add_argument(
        "--behind-ok-ledgers",
        type=non_negative_int,
        metavar="L",
        help="stop once at most L ledgers are left (default: one flush interval, flush_interval_minutes / 5.5 s)",
    )
    takeover = command("takeover", cmd_takeover, "first flush after the Go flusher: copy only what the lake lacks")
    takeover.add_argument("--dry-run", action="store_true", help="report what it would copy and delete; change nothing")
    maintain = command("maintain", cmd_maintain, "merge small files, expire old snapshots, delete freed files")
    maintain.add_argument("--dry-run", action="store_true", help="report what would be done; change nothing")
    verify = command("verify", cmd_verify, "check hot and lake: counts, duplicates, gaps, certificates (exit 1: not)")
    verify.add_argument("--from", dest="ledger_from", type=non_negative_int, metavar="L", help="first ledger checked")
    verify.add_argument("--to", dest="ledger_to", type=non_negative_int, metavar="L", help="last ledger checked")
    verify.add_argument("--tables", metavar="T1,T2", help="check only these (known) tables")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    command("init", cmd_init, "create the state tables and the lake's Bronze tables")
    command("status", cmd_status, "show rows in the hot buffer, rows flushed and the last batch per table")
    blocks = command("blocks", cmd_blocks, "create/update the Prefect blocks from a config file")
    blocks.add_argument("--postgres-block", default="flusher-postgres", metavar="NAME")
    blocks.add_argument("--ducklake-block", default="flusher-ducklake", metavar="NAME")
    serve = command("serve", cmd_serve, "run the schedule, /health and /metrics in one process")
    serve.add_argument("--prefect-yaml", default="prefect.yaml", metavar="FILE", help="where the schedule lives")
    serve.add_argument("--no-maintenance", action="store_true", help="do not also serve bronze-maintenance (daily)")
    serve.add_argument("--interval-seconds", type=int, help=argparse.SUPPRESS)  # tests only: a short schedule
    alerts = command("alerts", cmd_alerts, "install the failure automations in Prefect")
    alerts.add_argument("--automations", default="automations", metavar="DIR")
    alerts.add_argument(
        "--notify-block", default="flusher-alerts", metavar="NAME", help="notification block to send to"
    )
    alerts.add_argument(
        "--webhook-url-env",
        metavar="NAME",
        help="create/update a webhook block of that name posting to the URL in this environment "
        "variable (default: $FLUSHER_ALERT_WEBHOOK_URL when set); its token is stored as a secret",
    )
    alerts.add_argument(
        "--webhook-url",
        metavar="URL",
        help="as --webhook-url-env, but the URL (and its token) shows in `ps` while this runs",
    )
    alerts.add_argument("--prefect-yaml", default="prefect.yaml", metavar="FILE")
    alerts.add_argument("--interval-seconds", type=int, help=argparse.SUPPRESS)  # tests only
    demo = command("demo", cmd_demo, "flush synthetic data from an embedded PostgreSQL into a local lake", config=False)
    demo.add_argument("--ledgers", type=int, default=3000, help="synthetic ledgers to load (default 3000)")
    demo.add_argument("--workdir", metavar="DIR", help="keep the lake and PostgreSQL here instead of a temp folder")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # never phone home from a data service
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # slow machines: no API URL set
    cli = parser()
    args = cli.parse_args(argv)
    if "config" in args and not args.config:  # argparse's own way out: usage, the message, exit 2
        cli.error(f"no configuration: pass --config FILE or set ${CONFIG_ENV}")
    # Whatever this process prints or logs (Prefect's console too) passes through the secret masking.
    install_log_masking()
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskingStream(sys.stdout), MaskingStream(sys.stderr)
    try:
        return _run(args)
    finally:
        sys.stdout, sys.stderr = streams


def _run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler()
    handler.setFormatter(RunNameFormatter("%(asctime)s %(levelname)s %(run)s%(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    for noisy in ("httpx", "httpcore", "pgserver", "docket"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # our errors carry their own context; no traceback for expected failures
        print(f"error: {mask(str(exc))}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - a bug: the traceback, but printed here, through the masking
        print(mask(traceback.format_exc()), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
