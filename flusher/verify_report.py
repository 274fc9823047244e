"""What `verify` found, per table and ledger range, and how it is shown (text, JSON, the flow's table artifact).

Pure: no database. flusher/verify.py gathers the figures; the judging and naming of ranges is here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

# The kinds of discrepancy, in the order they are reported.
DUPLICATE = "lake duplicate"
IN_BOTH = "in hot and lake"
GAP = "ledger gap"
CERTIFICATE = "certificate"


@dataclass(frozen=True)
class Finding:
    """One discrepancy: which check, the ledgers it concerns (first, last), and what is wrong."""

    table: str
    kind: str
    first_ledger: int | None
    last_ledger: int | None
    detail: str

    def describe(self) -> str:
        return f"{self.table}: {self.kind} at {ledger_span(self.first_ledger, self.last_ledger)}: {self.detail}"


@dataclass
class TableCheck:
    """The figures of one table in the range. None: not checked (the reason is in `notes`)."""

    table: str
    hot_rows: int = 0
    lake_rows: int = 0
    lake_duplicates: int | None = None
    in_both: int | None = None
    batches_certified: int = 0  # batches whose certificate was recomputed (and matched or not)
    batches_uncertified: int = 0  # confirmed batches without a certificate (older, or certificates off)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    ledger_from: int | None
    ledger_to: int | None
    tables: list[TableCheck]
    gaps: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        return [f for t in self.tables for f in t.findings]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "ledger_from": self.ledger_from,
            "ledger_to": self.ledger_to,
            "seconds": round(self.seconds, 3),
            "gaps": [list(g) for g in self.gaps],
            "tables": [asdict(t) for t in self.tables],
        }

    def artifact_rows(self) -> list[dict]:
        """One row per table for the flow's table artifact."""
        return [
            {
                "table": t.table,
                "hot rows": t.hot_rows,
                "lake rows": t.lake_rows,
                "lake duplicates": "-" if t.lake_duplicates is None else t.lake_duplicates,
                "in both": "-" if t.in_both is None else t.in_both,
                "batches certified": t.batches_certified,
                "batches without certificate": t.batches_uncertified,
                "discrepancies": "; ".join(
                    f"{f.kind} at {ledger_span(f.first_ledger, f.last_ledger)}" for f in t.findings
                )
                or "none",
            }
            for t in self.tables
        ]

    def render(self) -> str:
        """The text `verify` prints: a line per table, then every discrepancy with its range, then the verdict."""
        lines = [f"verify {range_text(self.ledger_from, self.ledger_to)}"]
        for t in self.tables:
            dup = "-" if t.lake_duplicates is None else t.lake_duplicates
            both = "-" if t.in_both is None else t.in_both
            lines.append(
                f"  {t.table:32} hot {t.hot_rows:>10,}  lake {t.lake_rows:>12,}  duplicates {dup}  in both {both}  "
                f"batches certified {t.batches_certified} (without certificate {t.batches_uncertified})"
            )
            lines += [f"    note: {n}" for n in t.notes]
        findings = self.findings
        lines += [f"DISCREPANCY {f.describe()}" for f in findings]
        verdict = "OK: no discrepancy" if not findings else f"FAILED: {len(findings)} discrepancies"
        lines.append(f"{verdict} ({self.seconds:.1f}s)")
        return "\n".join(lines)


def ledger_span(first: int | None, last: int | None) -> str:
    if first is None:
        return "ledgers unknown" if last is None else f"ledgers <= {last}"
    return f"ledger {first}" if first == last or last is None else f"ledgers {first}..{last}"


def range_text(first: int | None, last: int | None) -> str:
    if first is None and last is None:
        return "all ledgers"
    return f"ledgers {'-inf' if first is None else first}..{'+inf' if last is None else last}"


def ranges(ledgers: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, contiguous (first, last) ranges: [1, 2, 3, 7, 9, 10] -> [(1, 3), (7, 7), (9, 10)]."""
    out: list[tuple[int, int]] = []
    for ledger in sorted(set(ledgers)):
        if out and ledger == out[-1][1] + 1:
            out[-1] = (out[-1][0], ledger)
        else:
            out.append((ledger, ledger))
    return out


def edge_gaps(present: tuple[int, int] | None, first: int | None, last: int | None) -> list[tuple[int, int]]:
    """Gaps at the edges of an explicit range: ledgers asked for below or above the ones present."""
    if first is None or last is None:
        return []
    if present is None:
        return [(first, last)]
    low, high = present
    return [g for g in ((first, low - 1), (high + 1, last)) if g[0] <= g[1]]


@dataclass(frozen=True)
class BatchFigures:
    """A batch's certificate, or what the lake holds now for that batch's snapshot."""

    rows: int
    digest: int


def judge_certificate(
    table: str,
    batch_id: int,
    snapshot_id: int,
    span: tuple[int | None, int | None],
    recorded: BatchFigures,
    found: BatchFigures | None,
) -> Finding | None:
    """Compare a batch's certificate with the lake's rows of its snapshot; None when they agree.

    `span`: the ledgers the batch covered (from the lake rows, else from the state's watermarks), to name the range.
    """
    found = found or BatchFigures(0, 0)
    where = f"batch {batch_id} (lake snapshot {snapshot_id})"
    if found.rows < recorded.rows:
        what = f"{recorded.rows - found.rows} of its {recorded.rows} rows lost (or rewritten by a later commit)"
    elif found.rows > recorded.rows:
        what = f"{found.rows - recorded.rows} rows more than the {recorded.rows} it committed (duplicated)"
    elif found.digest != recorded.digest:
        what = f"its {recorded.rows} rows are there but their digest differs (rows altered)"
    else:
        return None
    return Finding(table, CERTIFICATE, span[0], span[1], f"{where}: {what}")
