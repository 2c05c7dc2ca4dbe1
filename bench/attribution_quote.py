"""The ex-ante novelty quote on the attribution benchmark, from observation or transition novelty.

    python bench/attribution_quote.py --seeds 0 1 2 --updates 5000

``bench/attribution.py``'s sources and catalogue, with every source and the counterfactual
heads (``configs/dishwashing_sources.yaml``'s online novelty fitted on the platform's data),
once per novelty input: ``observation`` (the state's latent, as shipped) and ``transition``
(the latent, action, reward, error rate and next latent, ``SACModule(novelty_inputs=...)``).
Reported per seed: the Spearman correlation of the quote with the attributions it learnt from
(as in ``bench/attribution.py``), and each source's mean novelty over the last window before
the end beside its attributed contribution. The quote prices from the mean step score of a
source's transitions; the episode-level outcome test is not part of the quote.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import progress  # noqa: E402
from bench.attribution import (  # noqa: E402
    SOURCES,
    quote_correlation,
    register_corrupted_env,
    spearman,
    train,
)

INPUTS = ("observation", "transition")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=5000)
    args = parser.parse_args()
    register_corrupted_env()
    names = [s["name"] for s in SOURCES]
    rho: dict[str, list[float]] = {inputs: [] for inputs in INPUTS}
    novelty_rho: dict[str, list[float]] = {inputs: [] for inputs in INPUTS}
    with tempfile.TemporaryDirectory() as root:
        for inputs in INPUTS:
            for seed in args.seeds:
                _, economics, *_ = train(
                    SOURCES,
                    seed,
                    args.updates,
                    f"{root}/{inputs}",
                    True,
                    overrides=(f"--model.init_args.novelty_inputs={inputs}",),
                )
                rho[inputs].append(quote_correlation(economics) or float("nan"))
                # Each source's last sample: the last window it was scored in.
                last = list({q.source: q for q in economics.pricer.quotes}.values())
                novelty = [q.novelty for q in last]
                attributed = [q.attributed for q in last]
                novelty_rho[inputs].append(spearman(novelty, attributed))
                progress(
                    f"{inputs} seed {seed}: quote rho {rho[inputs][-1]:+.2f}; last window "
                    + ", ".join(
                        f"{names[q.source]} novelty {q.novelty:+.2f} attributed {q.attributed:+.2f}"
                        for q in last
                    )
                )
    print(f"{len(args.seeds)} seeds, {args.updates:,} updates each")
    print()
    print(
        "| novelty inputs | quote's Spearman with the attributions, per seed | mean | "
        "last window: novelty against attributed, per seed |"
    )
    print("|---|---|---:|---|")
    for inputs in INPUTS:
        per_seed = ", ".join(f"{r:+.2f}" for r in rho[inputs])
        last = ", ".join(f"{r:+.2f}" for r in novelty_rho[inputs])
        print(f"| {inputs} | {per_seed} | {statistics.mean(rho[inputs]):+.2f} | {last} |")


if __name__ == "__main__":
    main()
