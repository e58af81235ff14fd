"""Command line: ``python -m composable_ebm demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m composable_ebm`` and the ``composable-ebm`` script."""
    parser = argparse.ArgumentParser(
        prog="composable-ebm",
        description="Composable energy-based models sampled with NumPyro.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="learn an energy, compose it with a constraint, sample with NUTS, plot"
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="fewer draws, for a fast check")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--steps", type=int, default=None, help="training steps (default 2000)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run

        run(args.out, quick=args.quick, seed=args.seed, steps=args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
