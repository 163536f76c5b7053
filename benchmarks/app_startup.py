"""Time from ``python app.py`` to the first page served, and what the process had imported by then.

    python benchmarks/app_startup.py [--repeat 3] [--repo DIR]

Starts the app of ``--repo`` (default: this checkout) on a free port of 127.0.0.1, polls ``GET /`` until
it answers 200 and prints the seconds it took (median of ``--repeat`` cold starts). With two ``--repo``
values the two checkouts are started alternately and the ratio is printed pair by pair, so a noisy
machine affects both alike.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_page_seconds(repo: Path, timeout: float = 300.0) -> float:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_SSR_MODE": "False",
           "GRADIO_EXAMPLES_CACHE": tempfile.mkdtemp(prefix="examples-cache-")}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"the app in {repo} exited with status {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"no page after {timeout} s")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repo", action="append", type=Path, default=[],
                        help="checkout to start (repeat for a comparison; default: this one)")
    args = parser.parse_args()
    repos = [repo.resolve() for repo in args.repo] or [ROOT]
    times: dict[Path, list[float]] = {repo: [] for repo in repos}
    for _ in range(args.repeat):
        for repo in repos:
            times[repo].append(first_page_seconds(repo))
    for repo, values in times.items():
        print(f"{repo}: first page after {statistics.median(values):.1f} s (median of {len(values)}: "
              + ", ".join(f"{v:.1f}" for v in values) + ")")
    if len(repos) == 2:
        a, b = (times[r] for r in repos)
        ratios = [x / y for x, y in zip(a, b)]
        print(f"ratio {repos[0].name} / {repos[1].name}: median {statistics.median(ratios):.2f} "
              f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
