"""Labor economics of V2P: wages, the quality constraint, spread allocation and data prices.

Pure numpy, no torch and no Lightning; every formula follows the specification ECONOMICS.md,
cited by section in each docstring. Functions take python scalars or numpy arrays, broadcast them,
and return a float64 scalar for scalar inputs or an ndarray otherwise. Bad inputs raise a
``ValueError`` naming the argument (section 9.5).
"""

from v2p.economics.cashflow import annual_cash_flow, fleet_npv
from v2p.economics.constraint import DualAscent, PIDLagrangian, lagrangian_reward, sla_target
from v2p.economics.labor import error_rate, implied_wage, mpl, profit_rate
from v2p.economics.params import EconomicParams
from v2p.economics.spread import (
    SpreadAllocation,
    allocate_spread,
    consumer_surplus,
    contribution_shares,
    customer_cost,
    deflation_ratio,
)
from v2p.economics.value import OnlineDataValueEstimator, data_price
from v2p.economics.wages import (
    ConstantWage,
    CSVWage,
    DatedWageSource,
    LinearDriftWage,
    WageIndexer,
    WageSource,
)

__all__ = [
    "CSVWage",
    "ConstantWage",
    "DatedWageSource",
    "DualAscent",
    "EconomicParams",
    "LinearDriftWage",
    "OnlineDataValueEstimator",
    "PIDLagrangian",
    "SpreadAllocation",
    "WageIndexer",
    "WageSource",
    "allocate_spread",
    "annual_cash_flow",
    "consumer_surplus",
    "contribution_shares",
    "customer_cost",
    "data_price",
    "deflation_ratio",
    "error_rate",
    "fleet_npv",
    "implied_wage",
    "lagrangian_reward",
    "mpl",
    "profit_rate",
    "sla_target",
]
