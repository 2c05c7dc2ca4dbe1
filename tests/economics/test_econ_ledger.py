"""Section 10: the shift accountant's rows worked by hand, and the append-only ledger file."""

import csv
import io
import math
import subprocess
import sys

import pytest
import torch

from v2p.economics import ConstantWage, WageIndexer
from v2p.economics.ledger import (
    LEDGER_COLUMNS,
    LedgerRow,
    LedgerWriter,
    ShiftAccountant,
)
from v2p.economics.shift import ShiftCounts

SPEC_COLUMNS = """
    episode, global_step, source, hours, completed, attempts, errors, mp_r, err_rate, err_target,
    w_hat_r, w_h, wage_parity, prod_parity, profit, lambda, delta_mpl_total, delta_mpl_cust,
    novelty, s_cust, s_plat, spread, spread_value, rebate, captured, customer_cost,
    consumer_surplus, deflation_ratio, data_price
"""
NAN = float("nan")


def shift(completed: int, errors: int, hours: float = 1.0) -> ShiftCounts:
    return ShiftCounts(
        hours=hours,
        attempts=completed + errors,
        errors=errors,
        completed=completed,
        price_per_unit=0.30,
        damage_cost=1.00,
        energy_cost=0.10,
        human_mp=60.0,
        expected_profit=NAN,
        expected_attempts=NAN,
        expected_errors=NAN,
    )


def accountant(update_every: int = 100, market: float = 18.0, **kwargs: float) -> ShiftAccountant:
    indexer = WageIndexer(ConstantWage(market), w_h_init=18.0, update_every=update_every)
    return ShiftAccountant(indexer, **kwargs)


def account(acc: ShiftAccountant, counts: ShiftCounts, episode: int = 0) -> LedgerRow:
    return acc.account(
        counts,
        episode=episode,
        global_step=10 * episode,
        source="platform",
        err_target=0.1,
        lam=0.5,
    )


def read_rows(path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_columns_follow_the_spec_in_order():
    assert [c.strip() for c in SPEC_COLUMNS.split(",")] == list(LEDGER_COLUMNS)
    # The one field that cannot carry its column's name is the keyword "lambda".
    renamed = tuple("lambda" if f == "lam" else f for f in LedgerRow._fields)
    assert renamed == LEDGER_COLUMNS


def test_row_by_hand_with_a_spread():
    row = account(accountant(), shift(completed=95, errors=5))
    assert row.columns()["lambda"] == 0.5 and row.err_target == 0.1
    assert (row.episode, row.global_step, row.source) == (0, 0, "platform")
    assert (row.hours, row.completed, row.attempts, row.errors) == (1.0, 95, 100, 5)
    assert row.mp_r == 95.0  # 95 completed / 1 hr
    assert row.err_rate == pytest.approx(0.05)  # 5 / 100
    assert row.w_hat_r == pytest.approx(23.75)  # 0.30 * 95 - 1.00 * 0.05 * 95
    assert row.profit == pytest.approx(23.65)  # 23.75 - 0.10
    assert row.w_h == 18.0  # no indexer update within the first 100 shifts
    assert row.wage_parity == pytest.approx(23.75 / 18)  # 1.319 > 1.05: a spread exists
    assert row.prod_parity == pytest.approx(95 / 60)
    assert row.delta_mpl_total == 0.0  # first shift seeds the EMA
    # No customer data: s_cust = 0 / (0 + 1e-6) = 0, so the share is all the platform's.
    assert (row.s_cust, row.s_plat) == (0.0, 1.0)
    assert row.spread == pytest.approx(5.75)  # 23.75 - 18
    assert row.spread_value == pytest.approx(5.75)  # 5.75 $/hr * 1 hr
    # The default pass-through 0.5 of the platform's share reaches the customer.
    assert row.rebate == pytest.approx(2.875) and row.captured == pytest.approx(2.875)
    # Per ELH: bill 23.75 - 2.875 = 20.875; spend 20.875 + 1.00 * 0.05 * 95 = 25.625;
    # q = 95 / 60; cost = 25.625 / q = 16.184211 = 18 - 2.875 / q (the rebate per ELH).
    assert row.customer_cost == pytest.approx(25.625 * 60 / 95)
    assert row.consumer_surplus == pytest.approx(2.875 * 60 / 95)
    assert row.deflation_ratio == pytest.approx(25.625 * 60 / 95 / 18)
    assert row.delta_mpl_cust is None and row.novelty is None and row.data_price is None


def test_without_pass_through_a_robot_without_customer_data_costs_what_humans_do():
    row = account(accountant(pass_through=0.0), shift(completed=95, errors=5))
    assert row.rebate == 0.0 and row.captured == pytest.approx(5.75)
    # bill 23.75, spend 23.75 + 4.75 = 28.5 = 0.30 * 95; per ELH 28.5 * 60 / 95 = 18 = w_h.
    assert row.customer_cost == pytest.approx(18.0)
    assert row.consumer_surplus == pytest.approx(0.0, abs=1e-12)
    assert row.deflation_ratio == pytest.approx(1.0)


def test_row_by_hand_without_a_spread_and_with_a_base_fee():
    row = account(accountant(base_fee=2.0), shift(completed=30, errors=10))
    assert row.mp_r == 30.0 and row.err_rate == pytest.approx(0.25)  # 10 / 40
    assert row.w_hat_r == pytest.approx(1.5)  # (0.30 - 0.25) * 30
    assert row.profit == pytest.approx(1.4)
    assert row.wage_parity == pytest.approx(1.5 / 18)  # far below 1.05: no spread
    assert row.prod_parity == pytest.approx(0.5)
    no_spread = (row.s_cust, row.s_plat, row.spread, row.spread_value, row.rebate, row.captured)
    assert no_spread == (0.0,) * 6
    # bill 1.5 + 2.0 = 3.5; spend 3.5 + 1.00 * 0.25 * 30 = 11 per robot-hour, q = 0.5:
    # 22 $/ELH, capped at w_h = 18 (the platform absorbs the gap); surplus 0, rho 1.
    assert row.customer_cost == 18.0
    assert row.consumer_surplus == 0.0
    assert row.deflation_ratio == 1.0


def test_base_fee_and_floor_margin_raise_the_bill_below_the_cap():
    # The spread shift above: bill 20.875, damage 4.75, q = 95 / 60.
    fee = account(accountant(base_fee=0.5), shift(completed=95, errors=5))
    assert fee.customer_cost == pytest.approx((20.875 + 0.5 + 4.75) * 60 / 95)  # 16.5
    floor = account(accountant(floor_margin=22.0), shift(completed=95, errors=5))
    assert floor.customer_cost == pytest.approx((22.0 + 4.75) * 60 / 95)  # max(20.875, 22)
    assert floor.deflation_ratio == pytest.approx(26.75 * 60 / 95 / 18)


def test_a_shift_that_completed_nothing_has_empty_price_cells(tmp_path):
    row = account(accountant(), shift(completed=0, errors=4))
    assert row.mp_r == 0.0 and row.err_rate == 1.0
    assert (row.customer_cost, row.consumer_surplus, row.deflation_ratio) == (None,) * 3
    with LedgerWriter(tmp_path / "economics.csv") as writer:
        writer.append(row)
    header, cells = read_rows(tmp_path / "economics.csv")
    written = dict(zip(header, cells, strict=True))
    assert [written[c] for c in ("customer_cost", "consumer_surplus", "deflation_ratio")] == [
        "",
        "",
        "",
    ]


def test_delta_mpl_total_is_the_change_of_an_ema_over_three_shifts():
    acc = accountant(mpl_smoothing=0.25)
    rows = [account(acc, shift(c, 0), episode=i) for i, c in enumerate((60, 90, 30))]
    # EMA: 60; then 0.25 * 90 + 0.75 * 60 = 67.5; then 0.25 * 30 + 0.75 * 67.5 = 58.125.
    assert [r.delta_mpl_total for r in rows] == pytest.approx([0.0, 7.5, -9.375])
    assert acc.mpl_ema == {"platform": pytest.approx(58.125)}


def test_given_customer_contribution_splits_the_spread():
    acc = accountant(mpl_smoothing=0.5)
    acc.account(shift(60, 0), episode=0, global_step=0, source="c", err_target=0.1, lam=0.0)
    row = acc.account(
        shift(100, 0),
        episode=1,
        global_step=1,
        source="c",
        err_target=0.1,
        lam=0.0,
        delta_mpl_cust=10.0,
        novelty=-0.3,
        data_price=1.25,
    )
    # The site's EMA 60 -> 80, so delta_mpl_total = 20 and s_cust = 10 / (20 + 1e-6).
    s_cust = 10.0 / (20.0 + 1e-6)
    assert row.s_cust == pytest.approx(s_cust) and row.s_plat == pytest.approx(1 - s_cust)
    # w_r = 0.30 * 100 = 30, spread = 12, rebate = (s_cust + 0.5 * s_plat) * 12.
    assert row.rebate == pytest.approx((s_cust + 0.5 * (1 - s_cust)) * 12)
    assert row.captured == pytest.approx(0.5 * (1 - s_cust) * 12)
    assert row.rebate + row.captured == pytest.approx(row.spread_value)
    assert (row.delta_mpl_cust, row.novelty, row.data_price) == (10.0, -0.3, 1.25)


def test_row_shows_w_h_after_the_shifts_indexer_update():
    acc = accountant(update_every=2, market=20.0)
    first, second = account(acc, shift(95, 5)), account(acc, shift(95, 5), episode=1)
    assert first.w_h == 18.0
    # The second shift completes the period: 0.1 * 20 + 0.9 * 18 = 18.2, deflated by the
    # two hours since the first shift: 18.2 / 1.02 ** (2 / 2000).
    assert second.w_h == pytest.approx(18.2 / 1.02 ** (2 / 2000), rel=1e-15)
    assert second.spread == pytest.approx(23.75 - second.w_h)


def test_bad_input_raises_naming_it_and_changes_nothing():
    acc = accountant(update_every=1)
    before = acc.state_dict()
    with pytest.raises(ValueError, match="err_target"):
        acc.account(shift(95, 5), episode=0, global_step=0, source="p", err_target=1.5, lam=0.0)
    with pytest.raises(ValueError, match="delta_mpl_cust"):
        acc.account(
            shift(95, 5),
            episode=0,
            global_step=0,
            source="p",
            err_target=0.1,
            lam=0.0,
            delta_mpl_cust=-1.0,
        )
    with pytest.raises(ValueError, match="errors"):
        account(acc, shift(95, 5)._replace(attempts=3))
    assert acc.state_dict() == before
    with pytest.raises(ValueError, match="mpl_smoothing"):
        accountant(mpl_smoothing=0.0)


def test_state_dict_round_trip_continues_identically(tmp_path):
    counts = [shift(c, e) for c, e in ((95, 5), (80, 2), (110, 9), (70, 1), (99, 3), (60, 0))]
    reference = accountant(update_every=2, market=21.0, mpl_smoothing=0.3)
    expected = [account(reference, c, episode=i) for i, c in enumerate(counts)]

    first = accountant(update_every=2, market=21.0, mpl_smoothing=0.3)
    head = [account(first, c, episode=i) for i, c in enumerate(counts[:3])]
    torch.save(first.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    resumed = accountant(update_every=2, market=21.0, mpl_smoothing=0.3)
    resumed.load_state_dict(state)
    tail = [account(resumed, c, episode=i + 3) for i, c in enumerate(counts[3:])]
    assert head + tail == expected
    assert len({r.w_h for r in expected}) > 1 and any(r.delta_mpl_total for r in expected)


def test_ledger_module_imports_neither_torch_nor_lightning():
    code = (
        "import sys, v2p.economics.ledger; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_writer_header_once_then_appends_across_reopen(tmp_path):
    path = tmp_path / "deep" / "dir" / "economics.csv"
    acc = accountant()
    rows = [account(acc, shift(95, 5), episode=i) for i in range(3)]
    with LedgerWriter(path) as writer:
        assert writer.rows == 0
        writer.append(rows[0])
        writer.append(rows[1])
        assert writer.rows == 2
    with LedgerWriter(path) as writer:
        assert writer.rows == 2
        writer.append(rows[2])
    table = read_rows(path)
    assert table[0] == list(LEDGER_COLUMNS)
    assert [r[0] for r in table[1:]] == ["0", "1", "2"]
    assert sum(r == list(LEDGER_COLUMNS) for r in table) == 1


def test_writer_cells_ints_full_precision_floats_and_empty_optionals(tmp_path):
    acc = accountant(update_every=1, market=20.0)
    row = account(acc, shift(95, 5))
    with LedgerWriter(tmp_path / "l.csv") as writer:
        writer.append(row)
    cells = dict(zip(LEDGER_COLUMNS, read_rows(tmp_path / "l.csv")[1], strict=True))
    assert cells["episode"] == "0" and cells["completed"] == "95" and cells["attempts"] == "100"
    assert cells["delta_mpl_cust"] == cells["novelty"] == cells["data_price"] == ""
    assert cells["lambda"] == "0.5"
    # w_h = 18.2 / 1.02 has no short decimal form; it must read back as the same float.
    assert float(cells["w_h"]) == row.w_h and not math.isclose(row.w_h, round(row.w_h, 6))
    assert all(float(cells[c]) == v for c, v in row.columns().items() if isinstance(v, float))


def test_truncate_drops_later_rows_and_a_partial_last_line(tmp_path):
    path = tmp_path / "economics.csv"
    acc = accountant()
    with LedgerWriter(path) as writer:
        for i in range(4):
            writer.append(account(acc, shift(95, 5), episode=i))
    with open(path, "a") as handle:  # a row cut short by a killed process
        handle.write("4,40,platform,1.0,9")
    with LedgerWriter(path) as writer:
        assert writer.rows == 4  # the partial line is not a row, and is dropped on open
        writer.truncate(2)
        assert writer.rows == 2
        writer.append(account(acc, shift(95, 5), episode=2))
    assert [r[0] for r in read_rows(path)[1:]] == ["0", "1", "2"]
    assert open(path).read().endswith("\n")


def test_truncate_of_a_partial_last_line_without_reopen(tmp_path):
    path = tmp_path / "economics.csv"
    writer = LedgerWriter(path)
    writer.append(account(accountant(), shift(95, 5)))
    with open(path, "a") as handle:
        handle.write("1,10,plat")
    writer.truncate(1)
    writer.close()
    assert len(read_rows(path)) == 2 and open(path).read().endswith("\n")
    with LedgerWriter(path) as writer, pytest.raises(ValueError, match="n_rows"):
        writer.truncate(5)


def test_wrong_header_raises_naming_path_and_columns(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match=r"other\.csv") as info:
        LedgerWriter(path)
    assert "delta_mpl_total" in str(info.value)
    assert path.read_text() == "a,b,c\n1,2,3\n"


def test_empty_file_gets_the_header(tmp_path):
    path = tmp_path / "economics.csv"
    path.write_text("")
    LedgerWriter(path).close()
    assert next(csv.reader(io.StringIO(path.read_text()))) == list(LEDGER_COLUMNS)


def test_each_source_smooths_its_own_mpl():
    """Sites with different tasks work at different MP_r: one EMA per source, so a shift of
    one site does not move another's delta_mpl_total."""
    acc = ShiftAccountant(WageIndexer(ConstantWage(18.0), w_h_init=18.0), mpl_smoothing=0.5)
    kw = dict(global_step=0, err_target=0.1, lam=0.0)
    first_a = acc.account(shift(100, 0), episode=0, source="a", **kw)
    first_b = acc.account(shift(20, 0), episode=1, source="b", **kw)
    second_a = acc.account(shift(110, 0), episode=2, source="a", **kw)
    assert first_a.delta_mpl_total == 0.0 and first_b.delta_mpl_total == 0.0
    assert second_a.delta_mpl_total == pytest.approx(5.0)  # 0.5 * 110 + 0.5 * 100 - 100
    assert acc.mpl_ema == {"a": pytest.approx(105.0), "b": pytest.approx(20.0)}
    restored = ShiftAccountant(WageIndexer(ConstantWage(18.0), w_h_init=18.0))
    restored.load_state_dict({**acc.state_dict()})
    assert restored.mpl_ema == acc.mpl_ema
    restored.load_state_dict({"indexer": acc.state_dict()["indexer"], "mpl_ema": 50.0})
    assert restored.mpl_ema == {"platform": 50.0}  # a checkpoint from before per-source EMAs
