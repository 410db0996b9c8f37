"""`mechinterp probe`: reading probes for one model and suite, and the generated training sentences.

* ``mechinterp probe train --model M --suite S --layers "every 2" --out-dir DIR``: train and evaluate probes for
  every construction of the suite; writes the tables, probe artifacts and figures into DIR (the layout of one
  sweep job plus the summaries).
* ``mechinterp probe sentences --construction NP/Z --out FILE.csv [--suite S]``: the unambiguous training
  sentences the generator writes (with ``used`` = shares no content word with the suite), and the
  shallow-rule diagnostics printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from mechinterp.cli import common
from mechinterp.errors import ConfigError
from mechinterp.probes.confounds import cue_report
from mechinterp.probes.lexical import suite_content_words
from mechinterp.probes.templates import generate
from mechinterp.probes.train import ProbeSettings
from mechinterp.sweeps.execute import execute_job
from mechinterp.sweeps.jobs import JobSpec
from mechinterp.sweeps.runner import collect
from mechinterp.sweeps.store import ResultsStore
from mechinterp.tables import read_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="reading probes (train on generated sentences, read out on a suite)")
    ps = p.add_subparsers(dest="probe_command", metavar="SUBCOMMAND")

    t = ps.add_parser("train", help="train and evaluate reading probes for one model and suite")
    common.add_model(t)
    common.add_suite(t)
    common.add_seed(t)
    common.add_out_dir(t, help_="output directory (a results store: tables, probe artifacts, figures)")
    t.add_argument("--layers", default="*", help="layer list: '*', N, N-M or 'every K' joined by '+', "
                                                 "e.g. 0-3+8 (default *: every layer)")
    t.add_argument("--components", default="resid_post", help="comma-separated components (default resid_post)")
    t.add_argument("--C", type=common.positive_float, default=0.1, help="inverse L2 strength (default 0.1)")
    t.add_argument("--n-per-class", type=common.positive_int, default=150, help="training sentences per reading (default 150)")
    t.add_argument("--folds", type=common.positive_int, default=5)
    t.add_argument("--which", choices=["last", "mean"], default="last", help="token(s) of the target word")
    t.add_argument("--no-control", action="store_true", help="skip the control task")
    t.add_argument("--no-transfer", action="store_true", help="skip transfer to the other constructions")
    t.add_argument("--random-directions", type=common.nonnegative_int, default=10)
    t.add_argument("--batch-size", type=common.positive_int, default=32)
    t.set_defaults(func=run_train)

    s = ps.add_parser("sentences", help="write the generated training sentences of a construction")
    s.add_argument("--construction", required=True, help="NP/Z, NP/S, MV/RR or LEX")
    s.add_argument("--n-per-class", type=common.positive_int, default=150)
    common.add_seed(s)
    s.add_argument("--suite", default=None, help="mark sentences sharing content words with this suite as unused")
    common.add_out(s)
    s.set_defaults(func=run_sentences)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_train(args: argparse.Namespace) -> int:
    try:
        settings = ProbeSettings(C=args.C, n_per_class=args.n_per_class, folds=args.folds, which=args.which,
                                 control=not args.no_control, transfer=not args.no_transfer,
                                 random_directions=args.random_directions)
        spec = JobSpec(model=args.model, suite=args.suite, seed=args.seed, layers=args.layers,
                       components=[c.strip() for c in args.components.split(",")], probe=settings,
                       backend=args.backend, batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(f"bad option {'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})") from None
    common.seed_everything(args.seed)
    st = ResultsStore(Path(args.out_dir))
    st.prepare()
    res = execute_job(spec, show_progress=True)
    st.commit(res, command="mechinterp probe train")
    tables, figs = collect(st, [res.job_id])
    print(f"wrote {len(res.artifacts)} probes and tables {', '.join(sorted(tables))} to {st.root}")
    best = st.root / "best_sites.parquet"
    if best.exists():
        df = read_table(best)
        cols = [c for c in ("model", "construction", "layer", "accuracy", "selectivity", "verdict") if c in df]
        print(df[cols].to_string(index=False))
    return 0


def run_sentences(args: argparse.Namespace) -> int:
    out = common.out_path(args)
    ts = generate(args.construction, args.n_per_class, args.seed)
    df = ts.frame()
    suites = []
    if args.suite:
        suite = common.get_suite(args.suite)
        suites = [suite]
        kept = ts.without_words(suite_content_words(suite), min_per_class=1)
        used = {s.text for s in kept.sentences}
        df["used"] = df.text.isin(used)
    print(cue_report(ts).to_string(index=False))
    common.write(df, out, common.provenance("probe sentences", args, None, suites))
    return 0
