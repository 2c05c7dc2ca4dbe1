"""Section 4: market-wage sources and the wage indexer, two updates worked by hand each."""

import itertools
import pickle

import pytest

from v2p.economics import ConstantWage, CSVWage, LinearDriftWage, WageIndexer


def run_shifts(indexer: WageIndexer, n: int) -> list[float]:
    return [indexer.on_shift_end() for _ in range(n)]


def test_constant_source_with_inflation_two_updates():
    indexer = WageIndexer(ConstantWage(20.0), w_h_init=18.0, alpha=0.1, update_every=3)
    w = run_shifts(indexer, 6)
    # Shifts 1, 2: no update yet.
    assert w[:2] == [18.0, 18.0]
    # Shift 3, update 0: w_smooth = 0.1 * 20 + 0.9 * 18 = 18.2 (nominal), deflated by the
    # 3 hours since the first shift: 18.2 / 1.02 ** (3 / 2000) = 18.199459...
    assert w[2] == pytest.approx(18.2 / 1.02 ** (3 / 2000), rel=1e-15)
    assert w[2] == pytest.approx(18.199459, abs=1e-6)
    assert w[3:5] == [w[2], w[2]]
    # Shift 6, update 1: w_smooth = 2 + 0.9 * 18.2 = 18.38, never divided by inflation;
    # w_h = 18.38 / 1.02 ** (6 / 2000) = 18.378908...
    assert indexer.w_smooth == pytest.approx(18.38, rel=1e-15)
    assert w[5] == pytest.approx(18.38 / 1.02 ** (6 / 2000), rel=1e-15)
    assert w[5] == pytest.approx(18.378908, abs=1e-6)
    assert indexer.w_h == w[5]
    assert indexer.update_index == 2 and indexer.shift_count == 6
    assert indexer.elapsed_hours == 6.0


def test_linear_drift_source_without_inflation_two_updates():
    source = LinearDriftWage(start=18.0, drift_per_update=1.0)
    assert [source.wage(k) for k in range(3)] == [18.0, 19.0, 20.0]
    indexer = WageIndexer(source, w_h_init=18.0, alpha=0.1, inflation_adj=False, update_every=2)
    w = run_shifts(indexer, 4)
    # Update 0 reads 18: 0.1 * 18 + 0.9 * 18 = 18. Update 1 reads 19: 1.9 + 16.2 = 18.1.
    assert w == pytest.approx([18.0, 18.0, 18.0, 18.1])


def test_linear_drift_that_turns_the_wage_non_positive_raises():
    source = LinearDriftWage(start=1.0, drift_per_update=-0.5)
    assert source.wage(1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="must stay > 0"):
        source.wage(2)


def test_indexer_with_defaults_updates_every_100_shifts():
    indexer = WageIndexer(ConstantWage())
    w = run_shifts(indexer, 100)
    assert w[98] == 18.0
    # Defaults: w_smooth = 18; 100 one-hour shifts are 0.05 years: 18 / 1.02 ** 0.05 = 17.982186
    assert w[99] == pytest.approx(18.0 / 1.02**0.05, rel=1e-15)
    assert w[99] == pytest.approx(17.982186, abs=1e-6)


def test_a_constant_market_wage_is_deflated_only_by_the_elapsed_time():
    # Section 4 as amended: 1,000 one-hour shifts are half a year at 2,000 hr/yr, so w_h is
    # 18 / 1.02 ** 0.5 = 17.8227 (the old per-update rule settled at 15.00).
    indexer = WageIndexer(ConstantWage(18.0))
    w = run_shifts(indexer, 1000)
    assert indexer.w_smooth == pytest.approx(18.0, rel=1e-12)
    assert w[-1] == pytest.approx(18.0 / 1.02**0.5, rel=1e-12)
    assert w[-1] == pytest.approx(17.82, abs=0.005)
    # Never below the inflation of half a year, and monotone: inflation only accrues.
    assert min(w) >= 18.0 / 1.02**0.5 - 1e-12
    assert all(later <= earlier for earlier, later in itertools.pairwise(w))
    # Updating every shift changes nothing at the end: the state never compounds inflation.
    every_shift = WageIndexer(ConstantWage(18.0), update_every=1)
    assert run_shifts(every_shift, 1000)[-1] == pytest.approx(w[-1], rel=1e-12)


def test_elapsed_time_counts_the_shift_hours_and_hours_per_year():
    # 50 shifts of 2 hours at 1,000 hr/yr: 0.1 years; 18 / 1.02 ** 0.1.
    indexer = WageIndexer(ConstantWage(18.0), update_every=50, hours_per_year=1000.0)
    for _ in range(50):
        indexer.on_shift_end(hours=2.0)
    assert indexer.elapsed_hours == 100.0
    assert indexer.w_h == pytest.approx(18.0 / 1.02**0.1, rel=1e-15)
    # Without the inflation adjustment w_h is the nominal state.
    plain = WageIndexer(ConstantWage(20.0), inflation_adj=False, update_every=1)
    assert plain.on_shift_end(hours=500.0) == pytest.approx(18.2)


def test_a_dated_series_is_deflated_by_the_time_since_its_first_date(tmp_path):
    path = tmp_path / "wages.csv"
    path.write_text("date,wage\n2024-01-01,20.0\n2025-01-01,22.0\n")
    source = CSVWage(path)
    assert source.years_since_start(0) == 0.0
    assert source.years_since_start(1) == pytest.approx(366 / 365.25)  # 2024 is a leap year
    assert source.years_since_start(5) == source.years_since_start(1)  # the held row's date
    indexer = WageIndexer(source, w_h_init=18.0, update_every=1)
    # Update 0 reads the first row (0 years): 18.2. Update 1: 0.1 * 22 + 0.9 * 18.2 = 18.58,
    # over 1.02 ** (366 / 365.25), whatever the run's own hours were.
    assert indexer.on_shift_end(hours=7.0) == pytest.approx(18.2, rel=1e-15)
    assert indexer.on_shift_end(hours=7.0) == pytest.approx(18.58 / 1.02 ** (366 / 365.25))


def write_csv(path, text):
    path.write_text(text)
    return path


def test_csv_source_by_row_then_holds_the_last_row(tmp_path):
    path = write_csv(
        tmp_path / "wages.csv", "date,wage,note\n2024-01-01,20.0,a\n2024-02-01,22.0,b\n"
    )
    source = CSVWage(path)
    assert [source.wage(k) for k in range(4)] == [20.0, 22.0, 22.0, 22.0]
    assert [d.isoformat() for d in source.dates] == ["2024-01-01", "2024-02-01"]
    indexer = WageIndexer(source, w_h_init=18.0, alpha=0.1, inflation_adj=False, update_every=1)
    # 0.1*20 + 0.9*18 = 18.2; 0.1*22 + 0.9*18.2 = 18.58; 0.1*22 + 0.9*18.58 = 18.922 (held row)
    assert run_shifts(indexer, 3) == pytest.approx([18.2, 18.58, 18.922])


def test_csv_source_with_custom_columns(tmp_path):
    path = write_csv(tmp_path / "w.csv", "month,usd_per_hr\n2023-12-31,17.5\n")
    assert CSVWage(path, date_column="month", wage_column="usd_per_hr").wage(0) == 17.5


def test_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        CSVWage(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("day,wage\n2024-01-01,20\n", r"no column 'date'"),
        ("date,pay\n2024-01-01,20\n", r"no column 'wage'"),
        ("date,wage\n2024-01-01,20\n2024-13-01,21\n", r"row 2 \(line 3\): date '2024-13-01'"),
        ("date,wage\n2024-01-01,twenty\n", r"row 1 \(line 2\): wage 'twenty' is not a number"),
        ("date,wage\n2024-01-01,20\n2024-02-01,0\n", r"row 2 \(line 3\): wage must be .*> 0"),
        ("date,wage\n2024-01-01,-3\n", r"row 1 \(line 2\): wage must be .*got -3\.0"),
        ("date,wage\n2024-01-01,nan\n", r"row 1 \(line 2\): wage must be finite"),
        ("date,wage\n2024-01-01,\n", r"row 1 \(line 2\): wage '' is not a number"),
        ("date,wage\n2024-02-01,20\n2024-01-01,21\n", r"row 2 .*not after .*strictly increasing"),
        ("date,wage\n2024-02-01,20\n2024-02-01,21\n", r"row 2 .*strictly increasing"),
        ("date,wage\n", r"no data rows"),
        ("", r"no column 'date'"),
    ],
)
def test_bad_csv_raises_naming_file_row_and_value(tmp_path, text, pattern):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=pattern) as info:
        CSVWage(path)
    assert "bad.csv" in str(info.value)


def test_indexer_state_round_trip_resumes_exactly():
    source = LinearDriftWage(start=18.0, drift_per_update=0.5)
    original = WageIndexer(source, update_every=4)
    for k in range(10):
        original.on_shift_end(hours=0.5 + 0.25 * k)
    state = pickle.loads(pickle.dumps(original.state_dict()))
    assert state == {
        "shift_count": 10,
        "update_index": 2,
        "w_h": original.w_h,
        "w_smooth": original.w_smooth,
        "elapsed_hours": original.elapsed_hours,
    }
    assert state["elapsed_hours"] == sum(0.5 + 0.25 * k for k in range(10))
    resumed = WageIndexer(source, update_every=4)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == original.state_dict()
    assert [resumed.on_shift_end(hours=1.5) for _ in range(9)] == [
        original.on_shift_end(hours=1.5) for _ in range(9)
    ]


def test_a_state_saved_before_the_amendment_still_loads():
    # Saved before 2026-12-01: no w_smooth (w_h was the old, deflated state), no hours.
    indexer = WageIndexer(ConstantWage(18.0), update_every=100)
    indexer.load_state_dict({"shift_count": 200, "update_index": 2, "w_h": 17.3})
    assert indexer.w_h == 17.3 and indexer.w_smooth == 17.3
    assert indexer.elapsed_hours == 200.0  # one-hour shifts, the default task's length
    w = run_shifts(indexer, 100)
    # Next update: 0.1 * 18 + 0.9 * 17.3 = 17.37, over 1.02 ** (300 / 2000).
    assert w[-1] == pytest.approx(17.37 / 1.02**0.15, rel=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"w_h_init": -1.0}, "w_h_init"),
        ({"alpha": 1.5}, "alpha"),
        ({"inflation": -0.01}, "inflation"),
        ({"inflation": float("nan")}, "inflation"),
        ({"update_every": 0}, "update_every"),
        ({"update_every": 2.5}, "update_every"),
        ({"hours_per_year": 0.0}, "hours_per_year"),
        ({"hours_per_year": float("inf")}, "hours_per_year"),
    ],
)
def test_indexer_rejects_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        WageIndexer(ConstantWage(), **kwargs)


def test_sources_reject_bad_wages_and_indices():
    with pytest.raises(ValueError, match="wage"):
        ConstantWage(0.0)
    with pytest.raises(ValueError, match="start"):
        LinearDriftWage(start=float("inf"))
    with pytest.raises(ValueError, match="update_index"):
        ConstantWage().wage(-1)


def test_indexer_rejects_a_bad_value_from_a_user_source():
    class Broken:
        def wage(self, update_index: int) -> float:
            return float("nan")

    indexer = WageIndexer(Broken(), update_every=1)
    with pytest.raises(ValueError, match="market_wage"):
        indexer.on_shift_end()
    assert indexer.shift_count == 0 and indexer.w_h == 18.0 and indexer.elapsed_hours == 0.0
    with pytest.raises(ValueError, match=r"^hours must be"):
        WageIndexer(ConstantWage()).on_shift_end(hours=-1.0)


def test_market_history_lists_the_market_wage_each_update_read():
    indexer = WageIndexer(LinearDriftWage(18.0, 0.5), w_h_init=18.0, update_every=3)
    for _ in range(7):
        indexer.on_shift_end()
    # Updates at shifts 2 and 5 (0-based) read updates 0 and 1 of the drift.
    assert indexer.market_history() == [(2, 18.0), (5, 18.5)]
