"""``python -m lrt``: the ledger of claims, the book's figures, long runs and benchmarks.

Bad input prints one line naming the argument and the allowed values, and exits with code 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

from lrt.core.errors import LrtError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lrt", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    led = sub.add_parser("ledger", help="recompute and list every claim the book checks")
    led.add_argument("ids", nargs="*", metavar="ID", help="claim ids or prefixes (P1., P2.*); default: all")
    led.add_argument("--json", action="store_true", help="print JSON instead of a table")
    led.add_argument("--list", action="store_true", help="list the claims without measuring them")

    fig = sub.add_parser("figure", help="regenerate a figure of the book")
    fig.add_argument("name", nargs="?", metavar="NAME", help="figure name (see --list)")
    fig.add_argument("--out", type=Path, help="output file (.png, .svg or .pdf); default figures/NAME.png")
    fig.add_argument("--list", action="store_true", help="list the figures with their chapters")
    fig.add_argument("--all", action="store_true", help="render every figure into --out-dir")
    fig.add_argument("--out-dir", type=Path, default=Path("figures"), help="folder for --all")

    run = sub.add_parser("run", help="run a long experiment and write its results file")
    run.add_argument("name", nargs="?", metavar="NAME")
    run.add_argument("--steps", type=int, help="training steps (default: the book's)")
    run.add_argument("--out", type=Path, help="results file (default: the one the book loads, for a run with the book's settings; ./NAME.pt otherwise)")
    run.add_argument("--list", action="store_true")
    where = run.add_argument_group("device, processes and data (chapter 6's runs; under torchrun each process joins the run)")
    where.add_argument("--device", help="cpu (the default: deterministic) or cuda (one GPU per process)")
    where.add_argument("--precision", help="float64 (the default, the book's), float32, or bf16 (float32 weights, bfloat16 "
                                           "autocast; the spectra are computed in float64 in every case)")
    where.add_argument("--text", type=Path, metavar="FILE", help="gpt-rank: train on this UTF-8 text file (e.g. Wikitext-103 raw)")
    where.add_argument("--images", type=Path, metavar="DIR", help="vit-rank, init-scale-sweep: a CIFAR-10 directory in the binary "
                                                                  "format (data_batch_*.bin, test_batch.bin)")
    where.add_argument("--batch", type=int, help="global mini-batch, split evenly between the processes (default: the book's)")
    where.add_argument("--d-model", type=int, help="model width (default: the book's 64)")
    where.add_argument("--n-layers", type=int, help="number of layers (default: the book's 2)")
    where.add_argument("--n-heads", type=int, help="heads per layer (default: the book's 4)")
    where.add_argument("--context", type=int, help="gpt-rank: characters of context (default: the book's 32)")
    where.add_argument("--resume", action="store_true", help="continue from the checkpoint OUT.ckpt if there is one")
    where.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="checkpoint interval, a multiple of the tracking "
                                                                            "interval (default: 10 records)")

    bench = sub.add_parser("bench", help="time implementations side by side and print the ratios")
    bench.add_argument("name", nargs="?", metavar="NAME")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--quick", action="store_true", help="a smaller, faster version (for tests)")
    bench.add_argument("--list", action="store_true")
    bench.add_argument("--device", help="cpu (default) or cuda, for the benchmarks that take it")
    return p


def _ledger(args) -> int:
    from lrt.book.ledger import claims, run_ledger

    if args.list:
        for c in claims():
            print(f"{c.id:28s} {c.chapter:24s} {c.statement}")
        return 0
    results = run_ledger(args.ids or None, progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps({"claims": [r.as_dict() for r in results], "all_passed": all(r.passed for r in results)}, indent=2))
    else:
        for r in results:
            print(r)
        moved = sum(r.passed and r.tolerance_set != "fixed before" for r in results)
        print(f"{sum(r.passed for r in results)} passed ({moved} with a tolerance moved after measurement), {sum(not r.passed for r in results)} failed")
    return 0 if all(r.passed for r in results) else 1


def _figure(args) -> int:
    from lrt.book.figures import figure_specs, save_figure

    if args.list:
        for s in figure_specs():
            print(f"{s.name:32s} {s.chapter:24s} {s.caption}")
        return 0
    if args.all:
        for s in figure_specs():
            print(save_figure(s.name, args.out_dir / f"{s.name}.png"))
        return 0
    if not args.name:
        raise LrtError("figure: NAME is required (or --list / --all)")
    print(save_figure(args.name, args.out))
    return 0


def _pick(args, registry):
    """Handle ``--list`` (print the entries, return None) or return the entry named by ``args.name``."""
    if args.list:
        for name, item in registry.items():
            print(f"{name:24s} {item.chapter:24s} {item.description}")
        return None
    if not args.name:
        raise LrtError(f"{args.command}: NAME is required; expected one of: {', '.join(registry.names()) or '(none)'}")
    return registry.get(args.name)


def _run(args) -> int:
    from lrt.book.tasks import runs

    task = _pick(args, runs())
    if task is None:
        return 0
    if args.steps is not None and args.steps < 1:
        raise LrtError(f"--steps: expected a positive int, got {args.steps}")
    options = _options(args, RUN_OPTIONS, task)
    out = args.out
    if out is None and (args.steps is not None or set(options) - {"device"}):
        # the committed results file (which the book loads) is rewritten only by a run with the book's settings
        out = Path(f"{args.name}.pt")
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
            print(f"{args.name}: settings differ from the book's; writing {out} (pass --out to choose)", file=sys.stderr)
    path = task.fn(steps=args.steps, out=out, progress=True, **options)
    if path is not None:  # under torchrun only rank 0 writes the results file
        print(path)
    return 0


#: Options of ``run`` passed to the runs that take them (as keyword arguments of the same name).
RUN_OPTIONS = ("device", "precision", "text", "images", "batch", "d_model", "n_layers", "n_heads", "context", "resume", "checkpoint_every")


def _options(args, names, entry) -> dict:
    """The options given on the command line, checked against the keyword arguments ``entry.fn`` takes."""
    given = {name: getattr(args, name) for name in names if getattr(args, name) not in (None, False)}
    takes = inspect.signature(entry.fn).parameters
    for name in given:
        if name not in takes:
            kind = "run" if args.command == "run" else "benchmark"
            raise LrtError(f"--{name.replace('_', '-')}: the {kind} {args.name!r} does not take this option")
    return given


def _bench(args) -> int:
    from lrt.book.tasks import benchmarks

    bench = _pick(args, benchmarks())
    if bench is None:
        return 0
    result = bench.fn(quick=args.quick, **_options(args, ("device",), bench))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for k, v in value.items():
                    print(f"  {k:28s} {v:.4g}" if isinstance(v, float) else f"  {k:28s} {v}")
            else:
                print(f"{key}: {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"ledger": _ledger, "figure": _figure, "run": _run, "bench": _bench}[args.command]
    try:
        return handler(args)
    except LrtError as err:
        print(f"python -m lrt {args.command}: error: {err}", file=sys.stderr)
        return 2
