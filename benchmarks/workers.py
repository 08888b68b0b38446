"""Pre-fork workers under load: hello with `--workers 2` against one worker (issue #13, point 4).

    .venv/bin/python benchmarks/workers.py                     # 3 rounds x 2 configs x 5 s, ~45 s
    .venv/bin/python benchmarks/workers.py --rounds 1 --duration 3 --workers 1,2,4

Each config starts `python -m lowserver workers:handler --port 0 --workers N` afresh (this
file is also the application: `handler` answers 'Hello, World!', text/plain, keep-alive),
reads the port it prints, warms up, then loads it with `wrk -t1 -c50` for --duration seconds
on 127.0.0.1. Nothing is pinned: the servers and wrk share the machine's cores, as they
would in production on a small box. Configs run interleaved (1 2 1 2 ...), and the report
gives per config the median over rounds of

- req/s (wrk's Requests/sec; socket errors and non-2xx answers are reported, never hidden),
- the servers' CPU share: CPU-seconds of the parent and all its workers (from /proc/PID/stat)
  over wall seconds, so 1.0 is one core busy and 2.0 both,
- wrk's CPU share (getrusage of the waited-for child), and what other programs took
  meanwhile (the machine's busy time from /proc/stat, less both): on a shared machine,
  req/s only means something when that is near 0,
- req per server CPU-second (the work one core's worth of server time does);

and, when some runs were disturbed, the same over the undisturbed runs only (other programs
below 0.1 of a core).

With --workers 1 the parent serves itself (no fork); with N > 1 it only supervises, and its
CPU is counted too (it sleeps in select()). Needs wrk (Debian's `apt-get install wrk`).
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"   # loopback only
TICKS = os.sysconf("SC_CLK_TCK")
HELLO = "Hello, World!"


async def handler(request):   # the application: `python -m lowserver workers:handler`
    from lowserver import web
    return web.Response(text=HELLO)


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS   # utime, stime


def family(pid: int) -> list[int]:
    """The parent and its children (the workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [pid, *map(int, children.read().split())]
    except FileNotFoundError:
        return [pid]


class Server:
    def __init__(self, workers: int) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, ROOT])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lowserver", "workers:handler", "--host", HOST, "--port", "0",
             "--workers", str(workers)], cwd=HERE, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            self.stop()
            raise RuntimeError(f"the server printed {line!r}")
        self.url = f"http://{HOST}:{found.group(1)}/"
        deadline = time.monotonic() + 10
        while len(family(self.proc.pid)) < workers + (workers > 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pids = family(self.proc.pid)

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> None:
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def wrk(url: str, seconds: float, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rate.group(1)) if rate else 0.0,
            "errors": (errors.group(1) if errors else "") + (f" non-2xx {non2xx.group(1)}"
                                                            if non2xx else "")}


def machine_busy() -> float:
    """CPU-seconds all cores spent busy so far (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(workers: int, args: argparse.Namespace) -> dict:
    server = Server(workers)
    try:
        wrk(server.url, args.warmup, args.connections)
        s0, c0, m0, t0 = server.cpu(), children_cpu(), machine_busy(), time.monotonic()
        result = wrk(server.url, args.duration, args.connections)
        s1, c1, m1, t1 = server.cpu(), children_cpu(), machine_busy(), time.monotonic()
    finally:
        server.stop()
    wall = t1 - t0
    result.update(server_cpu=(s1 - s0) / wall, client_cpu=(c1 - c0) / wall)
    # what other programs took meanwhile: the machine's busy time less the server's and wrk's
    result["others_cpu"] = max(0.0, (m1 - m0) / wall - result["server_cpu"] - result["client_cpu"])
    result["per_cpu_s"] = result["rps"] / result["server_cpu"] if result["server_cpu"] else 0.0
    return result


QUIET = 0.1  # other programs' CPU share below which a run counts as undisturbed


def table(runs: dict[int, list[dict]], configs: list[int]) -> None:
    print("| workers | runs | req/s | min–max | servers' CPU share | wrk's CPU share | "
          "other programs' | req per server CPU-s |")
    print("|---|---|---|---|---|---|---|---|")
    base = statistics.median(r["rps"] for r in runs[configs[0]])
    for n in configs:
        rps = [r["rps"] for r in runs[n]]
        median = statistics.median(rps)
        print(f"| {n} | {len(rps)} | {median:,.0f} ({median / base:.2f}x) | {min(rps):,.0f}–"
              f"{max(rps):,.0f} | {statistics.median(r['server_cpu'] for r in runs[n]):.2f} | "
              f"{statistics.median(r['client_cpu'] for r in runs[n]):.2f} | "
              f"{statistics.median(r['others_cpu'] for r in runs[n]):.2f} | "
              f"{statistics.median(r['per_cpu_s'] for r in runs[n]):,.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="configs to compare (default 1,2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install -y wrk", file=sys.stderr)
        return 2
    configs = [int(n) for n in args.workers.split(",")]
    runs: dict[int, list[dict]] = {n: [] for n in configs}
    for round_ in range(args.rounds):
        order = configs[round_ % len(configs):] + configs[:round_ % len(configs)]
        for n in order:
            result = measure(n, args)
            runs[n].append(result)
            print(f"round {round_ + 1} workers={n}: {result['rps']:,.0f} req/s, server CPU "
                  f"{result['server_cpu']:.2f}, wrk CPU {result['client_cpu']:.2f}, other "
                  f"programs {result['others_cpu']:.2f}"
                  f"{' errors: ' + result['errors'] if result['errors'] else ''}", flush=True)
    print(f"\nhello, wrk -t1 -c{args.connections}, {args.duration:g} s x {args.rounds} rounds, "
          f"{os.cpu_count()} cores shared, medians:")
    table(runs, configs)
    quiet = {n: [r for r in runs[n] if r["others_cpu"] < QUIET] for n in configs}
    if all(quiet.values()) and any(len(quiet[n]) < len(runs[n]) for n in configs):
        print(f"\nonly the runs during which other programs took < {QUIET} of a core:")
        table(quiet, configs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
