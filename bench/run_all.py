"""``python -m bench.run_all [--quick] [--only NAME ...]``: every benchmark in sequence (``make bench``), each in its
own process at the issue's full size (``--quick``: small sizes, minutes instead of hours), then
``var/bench/results.json`` with every figure. A benchmark that crashes is reported and the others still run."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench.common import BASE_DIR, PYTHON, VAR, machine

BENCHES = {  # name: (full size, quick size)
    "api_submission": (10_000, 1_000),
    "idempotency": (5_000, 500),
    "outbox_relay": (500_000, 20_000),
    "usio_sync": (200_000, 10_000),
    "check_ach": (1_000_000, 20_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run; figures not comparable)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=None)
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: gather the last var/bench/<name>.json of each into results.json")
    args = parser.parse_args()
    names = args.only or list(BENCHES)
    summary = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
               "quick": args.quick, "benches": {}}
    failures = 0
    for name in names:
        scale = BENCHES[name][1 if args.quick else 0]
        started = time.monotonic()
        if args.collect:
            code = 0
        else:
            print(f"== {name} (scale {scale:,})", flush=True)
            code = subprocess.run([PYTHON, "-m", f"bench.{name}", "--scale", str(scale)], cwd=BASE_DIR).returncode
        entry = {"exit_code": code, "wall_seconds": round(time.monotonic() - started, 1)}
        path = VAR / f"{name}.json"
        if code == 0 and path.exists():
            entry.update(json.loads(path.read_text()))
        else:
            failures += 1
        summary["benches"][name] = entry
    VAR.mkdir(parents=True, exist_ok=True)
    (VAR / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {VAR / 'results.json'}", flush=True)
    for name, entry in summary["benches"].items():
        for result in entry.get("results", []):
            verdict = {True: "PASS", False: "MISS", None: ""}[result.get("passed")]
            print(f"{name:16} {result['name']:36} {result['figure']:>12,.1f} {result['unit']:10} {verdict}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
