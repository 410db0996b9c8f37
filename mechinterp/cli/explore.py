"""`mechinterp explore`: open the Streamlit explorer (``streamlit run apps/explorer.py``) on a model and a
results directory.

Safe by default: the server listens on 127.0.0.1 only (``--address`` for another, with a warning: the explorer
has no login), Streamlit makes no network connection of its own (no usage statistics, no e-mail prompt, no
internal or external IP lookup), and the app reads only the results directory, the package's data and the
folders given with ``--allow-path`` (see :mod:`mechinterp.explore.paths`).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import shlex
import subprocess
import sys
from pathlib import Path

from mechinterp.cli import common
from mechinterp.datasets import naturalstories_dir
from mechinterp.errors import ConfigError
from mechinterp.explore.demo import build_demo
from mechinterp.models import DEFAULT_MODEL, load_model
from mechinterp.models.registry import get_spec

APP = Path(__file__).resolve().parents[2] / "apps" / "explorer.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="open the Streamlit explorer: one sentence through the whole pipeline")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model shown first: registry name or local HF directory (default {DEFAULT_MODEL})")
    common.add_placement(p)
    p.add_argument("--results", default="out", help="results directory the explorer reads (default out)")
    p.add_argument("--suite", default="npz", help="suite shown first (default npz)")
    p.add_argument("--port", type=common.positive_int, default=None, help="port to serve on (default: Streamlit's, 8501)")
    p.add_argument("--address", default=LOCAL,
                   help=f"address to listen on (default {LOCAL}: this machine only; 0.0.0.0 lets anyone who can "
                        "reach the machine use the explorer, which has no login)")
    p.add_argument("--allow-path", metavar="DIR", action="append", default=[],
                   help="a further folder the explorer may read files from (repeatable); it always may read the "
                        "results directory and the package's data")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.add_argument("--demo", metavar="DIR", default=None,
                   help="first write small demo results for --model into DIR (skipped if already there), then show them")
    p.add_argument("--naturalstories", metavar="DIR", default=NS_DEFAULT,
                   help="with --demo: Natural Stories directory, for a surprisal-to-ms link and the human comparison "
                        "(default: the copy shipped with the package; 'none' to skip)")
    p.add_argument("--dry-run", action="store_true", help="print the streamlit command instead of running it")
    p.set_defaults(func=run)


LOCAL = "127.0.0.1"
NS_DEFAULT = "shipped"


def is_local(address: str) -> bool:
    """Whether ``address`` is a loopback address (only this machine can connect)."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def streamlit_command(port: int | None = None, headless: bool = False, address: str = LOCAL) -> list[str]:
    """The ``streamlit run`` command line for the explorer.

    Args:
        port: Port to serve on (None: Streamlit's default).
        headless: Do not open a browser.
        address: Address to listen on.

    Returns:
        The command: Streamlit bound to ``address``, with the browser address set (so Streamlit does not look
        up this machine's internal or external IP), no usage statistics and no e-mail prompt.
    """
    wildcard = address.strip() in ("0.0.0.0", "::", "")
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.address", address,
           "--browser.serverAddress", "localhost" if wildcard else address,
           "--browser.gatherUsageStats", "false",
           "--server.showEmailPrompt", "false"]
    if port is not None:
        cmd += ["--server.port", str(port)]
    if headless:
        cmd += ["--server.headless", "true"]
    return cmd


def run(args: argparse.Namespace) -> int:
    if not args.dry_run and importlib.util.find_spec("streamlit") is None:
        raise ConfigError("streamlit is not installed (it is the optional `explorer` extra): "
                          "pip install -e '.[explorer]' (`make setup` installs it)")
    if not APP.exists():
        raise ConfigError(f"the explorer app {APP} is missing: it ships with the source checkout (pip install -e .)")
    get_spec(args.model)  # an unknown model is reported now, not in the browser
    if args.naturalstories != NS_DEFAULT and not args.demo:
        raise ConfigError(f"--naturalstories {args.naturalstories}: it is used only with --demo (to write the demo "
                          "results); give --demo DIR too, or leave it out")
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port number")
    allow = []
    for d in args.allow_path:
        if not Path(d).expanduser().is_dir():
            raise ConfigError(f"--allow-path {d}: not a directory")
        allow.append(str(Path(d).expanduser().resolve()))
    if not is_local(args.address):
        print(f"warning: serving on {args.address}: anyone who can reach this machine can use the explorer "
              "(it has no login), run models on it and read the results and allowed folders", file=sys.stderr)
    results = args.results
    if args.demo:
        if args.dry_run:
            print(f"would write demo results for {args.model} into {args.demo}")
        else:
            ns = args.naturalstories
            ns = None if ns.strip().lower() in ("", "none") else (naturalstories_dir() if ns == "shipped" else ns)
            print(f"writing demo results for {args.model} into {args.demo} ...")
            build_demo(load_model(args.model, device=args.device, dtype=args.dtype), args.demo, naturalstories=ns)
        results = args.demo
    elif not Path(results).is_dir():
        print(f"note: results directory {results} does not exist yet; the explorer will compute on demand only")
    env = dict(os.environ, MECHINTERP_EXPLORER_MODEL=args.model, MECHINTERP_EXPLORER_RESULTS=str(results),
               MECHINTERP_EXPLORER_SUITE=args.suite, MECHINTERP_EXPLORER_ALLOW=os.pathsep.join(allow),
               MECHINTERP_EXPLORER_DEVICE=args.device, MECHINTERP_EXPLORER_DTYPE=args.dtype)
    cmd = streamlit_command(args.port, args.headless, args.address)
    if args.dry_run:
        shown = " ".join(f"{k}={shlex.quote(env[k])}" for k in
                         ("MECHINTERP_EXPLORER_MODEL", "MECHINTERP_EXPLORER_RESULTS", "MECHINTERP_EXPLORER_SUITE",
                          "MECHINTERP_EXPLORER_ALLOW", "MECHINTERP_EXPLORER_DEVICE", "MECHINTERP_EXPLORER_DTYPE"))
        print(f"{shown} {shlex.join(cmd)}")
        return 0
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
