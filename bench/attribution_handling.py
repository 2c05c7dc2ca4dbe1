"""Why the attribution benchmark's ground truth is not graded: how each retrained policy
handles each dish kind, in the benchmark's design and in the opposite one.

    python bench/attribution_handling.py --design benchmark --seeds 0 1 2 --without customer_pots
    python bench/attribution_handling.py --design fragile --seeds 0 1 2 \
        --without customer_crystal customer_stemware

For each seed, the sources config trained with every source of the design and without each
customer named by ``--without`` (no attribution: the policy trains the same either way). For
each run, at each customer's site (16 deterministic shifts, ``bench/attribution.py``'s envs
and seed), the site's expected MPL and the mean care the policy applies to each kind of rack it
handles there. A customer's actual ΔMPL is the with-all MPL minus the without-k MPL at its
site, so these tables say which handling each retraining learnt, and for which kinds.

Designs (each customer's own kind at a graded share of its racks, the rest the platform's):

- ``benchmark``: ``bench/attribution.py``'s: the platform washes plates and glasses (care is
  right), the customers pot-like kinds (fast and careless is right).
- ``fragile``: the opposite: the platform washes pots; each graded customer brings a fragile
  kind of its own (``k_err`` x20, ``care_cost`` x0.3: 109 units/hr at care 1, 60 at care 0);
  the duplicate and the corrupted customer wash pots.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import attribution  # noqa: E402
from bench._common import progress  # noqa: E402
from v2p.envs import DISH_KINDS, DishKind  # noqa: E402

SHARES = (1.0, 0.5, 0.25, 0.125)
FRAGILE = ("crystal", "china", "porcelain", "stemware")


class Design(NamedTuple):
    catalogue: list[DishKind]
    sources: list[dict]

    @property
    def common_kwargs(self) -> dict:
        return {"dish_kinds": [kind._asdict() for kind in self.catalogue]}

    @property
    def customers(self) -> list[str]:
        return [s["name"] for s in self.sources if s["name"] != "platform"]


def fragile_design() -> Design:
    """The platform washes pots; each graded customer a fragile kind of its own at its share;
    the duplicate and the corrupted customer the platform's pots."""
    catalogue = [
        *DISH_KINDS,
        *(DishKind(name, base_rate=1.0, k_err=20.0, p_min=1.0, care_cost=0.3) for name in FRAGILE),
    ]
    platform = {"pot": 1.0}
    sources = [
        {"name": "platform", "num_envs": 2, "env_kwargs": {"dish_mix": platform}},
        *(
            {
                "name": f"customer_{kind}",
                "num_envs": 1,
                "env_kwargs": {"dish_mix": attribution.graded_mix(kind, share, platform)},
            }
            for kind, share in zip(FRAGILE, SHARES, strict=True)
        ),
        {"name": "customer_same", "num_envs": 1, "env_kwargs": {"dish_mix": platform}},
        {
            "name": "customer_corrupt",
            "num_envs": 1,
            "env_kwargs": {"dish_mix": platform},
            "env_id": attribution.CORRUPT_ID,
        },
    ]
    return Design(catalogue, sources)


DESIGNS = {
    "benchmark": Design(attribution.CATALOGUE, attribution.SOURCES),
    "fragile": fragile_design(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--design", choices=DESIGNS, default="benchmark")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--without", nargs="+", default=[], help="customers to leave out")
    args = parser.parse_args()
    design = DESIGNS[args.design]
    unknown = set(args.without) - set(design.customers)
    if unknown:
        parser.error(f"--without {sorted(unknown)}: design {args.design!r} has {design.customers}")
    attribution.register_corrupted_env()
    site = {s["name"]: s["env_kwargs"] for s in design.sources}
    lines = [
        f"Design {args.design!r}, {args.updates:,} updates per run. Each cell: the site's "
        "expected MPL, units/hr (the mean care per kind handled there).",
        "",
        "| seed | run | " + " | ".join(design.customers) + " |",
        "|---|---|" + "---|" * len(design.customers),
    ]
    with tempfile.TemporaryDirectory() as root:
        for seed in args.seeds:
            for left_out in (None, *args.without):
                sources = [s for s in design.sources if s["name"] != left_out]
                model, *_ = attribution.train(
                    sources, seed, args.updates, f"{root}/{left_out}", False, design.common_kwargs
                )
                cells = []
                for k in design.customers:
                    envs = attribution.site_envs(site[k], 16, design.common_kwargs)
                    mpl, care = attribution.site_outcome(model, envs, design.catalogue)
                    kinds = ", ".join(f"{name} {c:.2f}" for name, c in care.items())
                    cells.append(f"{mpl:.1f} ({kinds})")
                run = "every source" if left_out is None else f"without {left_out}"
                lines.append(f"| {seed} | {run} | " + " | ".join(cells) + " |")
                progress(lines[-1])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
