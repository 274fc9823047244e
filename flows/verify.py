"""The bronze-verify flow: `verify` as a flow run, its result as a table artifact (per table) in the Prefect UI."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from flusher.blocks.settings import resolve_settings
from flusher.flows.run_context import started_from_deployment
from flusher.secrets import install_log_masking, mask, mask_any, mask_state, masked_errors
from flusher.verify import run_verify

install_log_masking()


@flow(
    name="bronze-verify",
    validate_parameters=True,
    persist_result=False,
    description="Check hot and lake per table and ledger range: counts, lake duplicates, rows in both, ledger gaps, "
    "completeness certificates. Read-only.",
)
def bronze_verify(
    config_path: str | None = None,
    ledger_from: int | None = None,
    ledger_to: int | None = None,
    tables: list[str] | None = None,
    postgres_block: str | None = None,
    ducklake_block: str | None = None,
) -> State:
    """Verify hot and lake; Failed (naming every discrepancy and its ledger range) when anything is off.

    Args:
        config_path: The YAML config file. Empty: the worker's $FLUSHER_CONFIG.
        ledger_from: The first ledger checked (empty: the lowest).
        ledger_to: The last ledger checked (empty: the highest).
        tables: Check only these known tables (empty: every configured table).
        postgres_block: A prefect-sqlalchemy SqlAlchemyConnector block holding the hot buffer's credentials.
        ducklake_block: A DuckLake Bronze block holding the catalog, data path and S3 keys.
    """
    with masked_errors():
        settings = resolve_settings(config_path, postgres_block, ducklake_block, restricted=started_from_deployment())
        report = run_verify(settings, ledger_from, ledger_to, tables)
        logger = get_run_logger()
        for line in report.render().splitlines():
            logger.info("%s", mask(line))
        headline = report.render().splitlines()[-1]
        create_table_artifact(table=mask_any(report.artifact_rows()), key="bronze-verify", description=mask(headline))
        if report.ok:
            return mask_state(Completed(message=headline))
        return mask_state(Failed(message="; ".join(f.describe() for f in report.findings)[:4000]))
