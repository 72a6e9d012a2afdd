"""S3 requests per trial: a sweep written to moto's S3 server on loopback, every request counted.

The server is moto's own WSGI app behind a counting middleware; each request is sorted by what
it touched: the trial rows (`trials/`), Tune's experiment state (`tune/`), the lease and attempt
counters (`.lock`, `.attempts/`, `.staging/`), the rest (spec.yaml, listings of the sweep).
Run it on a checkout before and after a change to compare.

    python bench/bench_s3_requests.py                    # 8 trials, compacted at the end
    python bench/bench_s3_requests.py --trials 16
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
os.environ.update(CREDENTIALS)  # before Ray starts: its workers inherit them
BUCKET = "bench"
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
KINDS = ("trials", "tune", "lease+attempts", "other")


class Counting:
    """WSGI middleware: counts requests by kind, key prefix and method."""

    def __init__(self, app) -> None:
        self.app = app
        self.counts: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = unquote(urlparse(environ.get("PATH_INFO", "")).path)
        query = environ.get("QUERY_STRING", "")
        prefix = next((q.split("=", 1)[1] for q in query.split("&") if q.startswith("prefix=")), "")
        where = unquote(prefix) if prefix else path
        if "/tune" in where:
            kind = "tune"
        elif "/trials" in where:
            kind = "trials"
        elif any(part in where for part in (".lock", ".attempts", ".staging")):
            kind = "lease+attempts"
        else:
            kind = "other"
        with self.lock:
            self.counts[kind] += 1
        return self.app(environ, start_response)


def serve():
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = Counting(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()

    import boto3
    import ray

    from orchestrator.sweep import run_sweep
    from store.spec import parse_spec

    server, app = serve()
    endpoint = f"127.0.0.1:{server.server_port}"
    boto3.client("s3", endpoint_url=f"http://{endpoint}").create_bucket(Bucket=BUCKET)
    app.counts.clear()
    root = f"s3://{BUCKET}/results?endpoint_override={endpoint}&scheme=http&region=us-east-1"
    spec = parse_spec(
        {
            "name": "requests",
            "grid": {"seed": list(range(args.trials))},
            "fixed": {"dataset": "cifar10", "model": "mcmahan_cnn"},
            "attack": {"iterations": args.iterations, "curve_points": 2},
            "resources": {"cpu": 1, "gpu": 0},
        }
    )
    with tempfile.TemporaryDirectory() as home:
        os.environ["HOME"] = home  # Tune's local default (~/ray_results) in a throwaway folder
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="ERROR")
        try:
            outcome = run_sweep(spec, root, say=lambda line: None)
        finally:
            ray.shutdown()
        local = sum(1 for p in Path(home).rglob("*") if p.is_file())
    server.shutdown()
    assert outcome.counts == {"ok": args.trials}, outcome.counts
    total = sum(app.counts.values())
    print(f"{args.trials} trials on moto S3; Tune files kept locally: {local}")
    print(f"{'requests':<16}{'total':>8}{'per trial':>11}")
    for kind in (*KINDS, "all"):
        n = total if kind == "all" else app.counts[kind]
        print(f"{kind:<16}{n:>8}{n / args.trials:>11.1f}")


if __name__ == "__main__":
    main()
