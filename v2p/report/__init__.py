"""Reports on a run's economics ledger: figures, a one-page summary, guarantees and cash flows.

``v2p report LOG_DIR [LOG_DIR ...]`` (:mod:`v2p.report.cli`) or, at the end of ``fit``, the
callback ``v2p.report.callback.EconomicsReport``. Pure numpy and matplotlib except that
callback, which is not imported here so that the command line does not load Lightning.
"""

from v2p.report.cashflow import (
    CashFlowOptions,
    LinearTrend,
    NPVEstimate,
    bootstrap_captured_per_hour,
    captured_per_hour,
    deflation_trend,
    linear_trend,
    npv_estimate,
    t_quantile,
)
from v2p.report.guarantees import CheckResult, GuaranteeReport, check_guarantees
from v2p.report.ledger_io import Ledger, NoShiftsError, PartialRowWarning, read_ledger
from v2p.report.summary import (
    REPORT_FILE,
    ReportFiles,
    RunAnalysis,
    analyse,
    render_summary,
    write_report,
)

__all__ = [
    "REPORT_FILE",
    "CashFlowOptions",
    "CheckResult",
    "GuaranteeReport",
    "Ledger",
    "LinearTrend",
    "NPVEstimate",
    "NoShiftsError",
    "PartialRowWarning",
    "ReportFiles",
    "RunAnalysis",
    "analyse",
    "bootstrap_captured_per_hour",
    "captured_per_hour",
    "check_guarantees",
    "deflation_trend",
    "linear_trend",
    "npv_estimate",
    "read_ledger",
    "render_summary",
    "t_quantile",
    "write_report",
]
