"""End-to-end benchmark: lowserver's web.Server against aiohttp's, interleaved, on loopback.

    .venv/bin/python benchmarks/server.py                          # all of it, ~8 min
    .venv/bin/python benchmarks/server.py --servers aiohttp-pure,lowserver --scenarios hello,pipeline
    .venv/bin/python benchmarks/server.py --rounds 1 --duration 2   # a quick look, ~2 min
    .venv/bin/python benchmarks/server.py --markdown /tmp/bench/run.md --json /tmp/bench/run.json

Servers, each running the same handler (benchmarks/apps/web_app.py) pinned to --server-cpu:
  aiohttp-pure  aiohttp's web.Server with AIOHTTP_NO_EXTENSIONS=1 (pure-Python parser and
                WebSocket reader): the baseline, the same class of server as lowserver
  aiohttp-c     aiohttp's web.Server with its C extensions (llhttp, C WebSocket reader)
  lowserver     this checkout's lowserver (`from lowserver import web`)
  uvicorn-httptools  uvicorn with httptools' C parser, a raw ASGI app serving the same
                endpoints (apps/uvicorn_app.py): a peer of another kind
--loop uvloop runs every one of them on uvloop (apps/bench_loop.py), asyncio's loop otherwise.
A server whose import fails, or lacks a name a scenario needs, is reported as skipped (for
those scenarios) and the others still run.

Scenarios (load generator pinned to --client-cpu; all traffic to 127.0.0.1):
  hello     wrk -t1 -c50, GET / -> 'Hello, World!', keep-alive           req/s
  pipeline  the same, 16 requests pipelined per write (wrk Lua script)  req/s
  post1k    POST /echo with a 1 KiB body, read whole, length answered   req/s
  stream1m  GET /stream?n=64: 64 chunks of 16 KiB, chunked encoding      MiB/s
  ws32      benchmarks/ws_echo.py: 8 connections x 16 in flight, 32 B   msg/s
  ws64k     benchmarks/ws_echo.py: 4 connections x 4 in flight, 64 KiB  msg/s
  idle_mem  benchmarks/idle_memory.py: 1,000 keep-alive connections, one GET / each, held
            idle; (VmRSS held - VmRSS before) / connections               KiB/conn

Every round starts every server fresh, measures idle memory (first --mem-rounds rounds), then
runs each scenario against each server in a rotated order (round 1: A B C, round 2: B C A...),
each run preceded by a --warmup; the servers are then stopped by their own PIDs (also on error
or Ctrl-C). The report gives per server and scenario the median over rounds, min, max, the
ratio of medians to --baseline, the server's and the load generator's CPU share (from
/proc/PID/stat and getrusage), and the issue's targets as met or not. A cell marked † had a
median server CPU share below 0.85: the load generator or the machine set the pace.

Adapted from the pre-project harness /work/shared/bench/run.py (same method and scenarios);
this copy is self-contained in the repository and imports nothing from outside it.
"""
import argparse
import datetime
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)               # the checkout: lowserver/ lives here
APP = os.path.join(HERE, "apps", "web_app.py")
HOST = "127.0.0.1"                         # never anything else

# --- servers ----------------------------------------------------------------------------------
# impl: the argument of web_app.py; env: extra environment; pure: whether aiohttp must run
# its pure-Python parser (checked before the run, so a silent fallback cannot skew a ratio).
SERVERS = {
    "aiohttp-pure": dict(impl="aiohttp", env={"AIOHTTP_NO_EXTENSIONS": "1"}, pure=True),
    "aiohttp-c": dict(impl="aiohttp", env={}, pure=False),
    "lowserver": dict(impl="lowserver", env={}, pure=None),
    # a peer of another kind: uvicorn with its C parser (httptools), a raw ASGI app serving
    # the same endpoints (apps/uvicorn_app.py, also icount.py's); started on a free port
    "uvicorn-httptools": dict(impl="uvicorn", env={}, pure=None,
                              cmd=[os.path.join(HERE, "apps", "uvicorn_app.py"), "{port}",
                                   "httptools"]),
}

# --- scenarios --------------------------------------------------------------------------------
LUA_REPORT = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_p50_us":%d,"lat_p99_us":%d}\n', summary.requests, summary.duration,
    summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
'''
LUA_PIPELINE = r'''
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
'''
LUA_POST = r'''
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
'''
HTTP_NAMES = ("Server", "Response")
WS_NAMES = HTTP_NAMES + ("WebSocketResponse", "WSMsgType")
SCENARIOS = {
    # name: (kind, path or message size, Lua body or client options, unit, names `web` needs)
    "hello": ("wrk", "/", "", "req/s", HTTP_NAMES),
    "pipeline": ("wrk", "/", LUA_PIPELINE, "req/s", HTTP_NAMES),
    "post1k": ("wrk", "/echo", LUA_POST, "req/s", HTTP_NAMES),
    "stream1m": ("wrk", "/stream?n=64", "", "MiB/s", HTTP_NAMES + ("StreamResponse",)),
    "ws32": ("ws", 32, dict(conns=8, window=16), "msg/s", WS_NAMES),
    "ws64k": ("ws", 65536, dict(conns=4, window=4), "msg/s", WS_NAMES),
}
MEMORY = "idle_mem"
UNITS = {**{s: v[3] for s, v in SCENARIOS.items()}, MEMORY: "KiB/conn"}
# The issues' targets: (scenario, reference server, bound, what it means)
TARGETS = [
    ("hello", "aiohttp-pure", 1.5, "hello keep-alive ≥ 1.5× aiohttp pure-Python"),
    ("hello", "aiohttp-c", 0.8, "hello keep-alive ≥ 0.8× aiohttp with C"),
    ("pipeline", "aiohttp-pure", 2.0, "16-deep pipelining ≥ 2× aiohttp pure-Python"),
    (MEMORY, "aiohttp-pure", 1.0, "memory per idle keep-alive connection ≤ aiohttp pure-Python's"),
    (MEMORY, "aiohttp-c", 1.0, "memory per idle keep-alive connection ≤ aiohttp with C's"),
    ("ws32", "aiohttp-pure", 1.5, "WebSocket echo 32 B ≥ 1.5× aiohttp pure-Python msg/s"),
    ("ws64k", "aiohttp-pure", 1.2, "WebSocket echo 64 KiB ≥ 1.2× aiohttp pure-Python msg/s"),
]
SUBJECT = "lowserver"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- /proc readings ---------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a live process, from /proc/PID/stat (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return None


def rss_kib(pid):
    """VmRSS of a live process, from /proc/PID/status, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_busy():
    """Per-CPU busy and steal seconds from /proc/stat: {cpu: (busy, steal)}.
    busy = user+nice+system+irq+softirq, the ticks a task's utime+stime are made of."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:9]]
                out[int(line[3:line.index(" ")])] = ((v[0] + v[1] + v[2] + v[5] + v[6]) / tck,
                                                     v[7] / tck)
    return out


def wait_for_quiet(args, limit):
    """Wait (at most `limit` s) until no core is busier than --quiet-load: other programs on
    this small machine would otherwise land in the figures. Returns the last load seen."""
    t_end = time.monotonic() + limit
    while True:
        a = cpu_busy()
        time.sleep(0.3)
        b = cpu_busy()
        load = max(b[c][0] - a[c][0] for c in b) / 0.3
        if load < args.quiet_load or time.monotonic() >= t_end:
            return load
        time.sleep(1)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def parse_bench_json(text):
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            try:
                return json.loads(line[len("BENCH_JSON "):])
            except ValueError:
                return None
    return None


# --- a server under test ------------------------------------------------------------------------

class Server:
    def __init__(self, name, args, workdir):
        self.name, self.spec, self.args = name, SERVERS[name], args
        self.logpath = os.path.join(workdir, f"{name}.log")
        self.proc = None
        self.port = None

    def env(self):
        env = dict(os.environ)
        env.pop("AIOHTTP_NO_EXTENSIONS", None)
        env.update(self.spec["env"])
        env["BENCH_LOOP"] = self.args.loop
        # this checkout first: the lowserver under test is the one in the working tree
        env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["PYTHONHASHSEED"] = "0"
        return env

    def start(self):
        self.port = None
        argv = ["taskset", "-c", str(self.args.server_cpu), self.args.python, APP,
                self.spec["impl"], "0"]
        if "cmd" in self.spec:   # a server that cannot report its port: give it a free one
            with socket.socket() as probe_socket:
                probe_socket.bind((HOST, 0))
                self.port = probe_socket.getsockname()[1]
            argv = argv[:4] + [a.format(port=self.port) for a in self.spec["cmd"]]
        with open(self.logpath, "a") as logf:
            logf.write(f"--- {datetime.datetime.now().isoformat(timespec='seconds')} start\n")
            logf.flush()
            offset = logf.tell()
            # taskset execs the interpreter, so proc.pid is the server's own PID
            self.proc = subprocess.Popen(argv, cwd=HERE, env=self.env(), stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): "
                                   f"{self.log_text(offset).strip()[-300:]}")
            if self.port is None:
                m = re.search(r"^LISTENING (\d+)$", self.log_text(offset)[:4096], re.M)
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and self.get_ok():
                for _ in range(10):  # a few requests, so lazy paths are warm
                    self.get_ok()
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer GET / with 200 'Hello, World!' "
                           f"within 20 s; see {self.logpath}")

    def log_text(self, offset):
        """What this start of the server has written to its log so far."""
        try:
            with open(self.logpath, "rb") as f:
                f.seek(offset)
                return f.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            return ""

    def get_ok(self):
        """One GET / on a fresh connection: True on a 200 whose body is 'Hello, World!'."""
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        return False
                    data += chunk
                head, body = data.split(b"\r\n\r\n", 1)
                length = -1
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                return head.startswith(b"HTTP/1.1 200 ") and body == b"Hello, World!"
        except (OSError, ValueError):
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM to the server's own PID, then SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


PROBE = r'''
import json, sys
impl, names = sys.argv[1], sys.argv[2].split(",")
if impl == "uvicorn":   # not a `web`: it serves every endpoint of the bench (uvicorn_app.py)
    import httptools, uvicorn
    print(json.dumps({"version": f"uvicorn {uvicorn.__version__} httptools "
                      f"{httptools.__version__}", "missing": []}))
    sys.exit(0)
if impl == "aiohttp":
    from aiohttp import web, http_parser
    import aiohttp
    info = {"version": aiohttp.__version__,
            "c_parser": http_parser.HttpRequestParser is not http_parser.HttpRequestParserPy}
else:
    from lowserver import web
    import lowserver
    info = {"version": getattr(lowserver, "__version__", "?"), "file": lowserver.__file__}
info["missing"] = [n for n in names if not hasattr(web, n)]
print(json.dumps(info))
'''


def probe(name, args):
    """Import the server's `web` as the server process will; return (info, reason to skip)."""
    spec = SERVERS[name]
    names = sorted({n for s in SCENARIOS.values() for n in s[4]})
    srv = Server(name, args, tempfile.gettempdir())
    try:
        r = subprocess.run([args.python, "-c", PROBE, spec["impl"], ",".join(names)],
                           env=srv.env(), cwd=HERE, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None, "import timed out"
    if r.returncode:
        lines = r.stderr.strip().splitlines()
        return None, f"`from {spec['impl']} import web` fails: {lines[-1] if lines else r.returncode}"
    info = json.loads(r.stdout.strip().splitlines()[-1])
    if spec["pure"] is True and info.get("c_parser"):
        return info, "AIOHTTP_NO_EXTENSIONS=1 did not select the pure-Python parser"
    if spec["pure"] is False and not info.get("c_parser"):
        return info, "aiohttp's C extensions are not available (it would run pure Python)"
    if set(HTTP_NAMES) & set(info["missing"]):
        return info, f"web lacks {', '.join(info['missing'])}"
    return info, None


def serves(info, scen):
    return not (set(SCENARIOS[scen][4]) & set(info.get("missing", ())))


# --- load generators ----------------------------------------------------------------------------

def run_bounded(argv, timeout):
    """Run a load generator; kill it by its PID if it overruns or if we are interrupted."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True, cwd=HERE)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        out += "\n(timed out)"
    except BaseException:
        p.kill()
        p.wait()
        raise
    return out


def wrk_once(srv, scen, seconds, workdir, args):
    _, path, lua, _, _ = SCENARIOS[scen]
    script = os.path.join(workdir, f"{scen}.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(lua + LUA_REPORT)
    argv = ["taskset", "-c", str(args.client_cpu), "wrk", "-t1", f"-c{args.connections}",
            f"-d{seconds}s", "--timeout", "5s", "-s", script, f"http://{HOST}:{srv.port}{path}"]
    return run_bounded(argv, seconds + 20)


def ws_once(srv, scen, seconds, args):
    _, size, opts, _, _ = SCENARIOS[scen]
    argv = ["taskset", "-c", str(args.client_cpu), args.python, os.path.join(HERE, "ws_echo.py"),
            "--port", str(srv.port), "--size", str(size), "--conns", str(opts["conns"]),
            "--window", str(opts["window"]), "--warmup", str(args.warmup),
            "--duration", str(seconds), "--client", args.ws_client]
    return run_bounded(argv, args.warmup + seconds + 25)


def measure_once(srv, scen, args, workdir):
    """One warm-up and one measured run; the result with CPU shares of server and client."""
    kind, _, _, unit, _ = SCENARIOS[scen]
    if kind == "wrk" and args.warmup:
        wrk_once(srv, scen, args.warmup, workdir, args)
    c0, s0, b0, t0 = children_cpu(), cpu_seconds(srv.proc.pid), cpu_busy(), time.monotonic()
    if kind == "wrk":
        out = wrk_once(srv, scen, args.duration, workdir, args)
    else:  # the WebSocket client warms up inside its own run (its CPU share includes it)
        out = ws_once(srv, scen, args.duration, args)
    wall = time.monotonic() - t0
    s1, b1, c1 = cpu_seconds(srv.proc.pid), cpu_busy(), children_cpu()
    srv_cpu = (s1 - s0) if s1 is not None and s0 is not None else 0.0
    cli_cpu = c1 - c0
    sc, cc = args.server_cpu, args.client_cpu
    # CPU time on either core that neither the server nor the load generator used
    foreign = (max(0.0, (b1[sc][0] - b0[sc][0]) - srv_cpu)
               + max(0.0, (b1[cc][0] - b0[cc][0]) - cli_cpu))
    steal = (b1[sc][1] - b0[sc][1]) + (b1[cc][1] - b0[cc][1])
    res = {"server_cpu": round(srv_cpu / wall, 3), "client_cpu": round(cli_cpu / wall, 3),
           "foreign": round(foreign / wall, 3), "steal": round(steal / wall, 3)}
    data = parse_bench_json(out)
    if data is None or "error" in data:
        res["error"] = (data or {}).get("error") or out.strip()[-300:] or "no output"
    elif kind == "wrk":
        secs = data["duration_us"] / 1e6
        errs = sum(v for k, v in data.items() if k.startswith("err_"))
        res.update(value=(data["bytes"] / secs / 2**20 if unit == "MiB/s" else data["requests"] / secs),
                   errors=errs, requests=data["requests"],
                   p50_ms=data["lat_p50_us"] / 1000, p99_ms=data["lat_p99_us"] / 1000)
        if data["requests"] == 0:
            res["error"] = f"no response completed: {data}"
        elif errs > 0.01 * data["requests"]:
            res["error"] = f"{errs} wrk errors: {data}"
    else:
        res.update(value=data["msgs_per_s"], errors=data["errors"], mib_per_s=data["mib_per_s"])
        if data["errors"]:
            res["error"] = f"{data['errors']} bad echoes"
        elif not data["msgs"]:
            res["error"] = "no echo received"
    if "value" in res and res["server_cpu"]:
        # work per server CPU-second: moved much less by other programs' load
        res["per_cpu_s"] = res["value"] / res["server_cpu"]
    if not srv.alive():
        res["error"] = f"server died; see {srv.logpath}"
    return res


class Clock:
    """The time budget: waits for quiet and retries are allowed only while the runs still to
    do, at their undisturbed cost, fit before --budget-min."""

    def __init__(self, args, runs_total, fixed_s):
        self.start = time.monotonic()
        self.end = self.start + args.budget_min * 60 - fixed_s  # server starts, memory tests
        self.per_run = args.duration + args.warmup + 0.8
        self.left = runs_total

    def may_wait(self, extra):
        return time.monotonic() + extra + self.left * self.per_run < self.end


def measure(srv, scen, args, workdir, clock):
    """measure_once, repeated (a bounded number of times) while other load disturbed it."""
    tries, t0 = [], time.monotonic()
    for attempt in range(1 + args.retries):
        wait = args.quiet_wait if clock.may_wait(args.quiet_wait) else 0
        load = wait_for_quiet(args, wait)
        r = measure_once(srv, scen, args, workdir)
        r["idle_load_before"] = round(load, 2)
        tries.append(r)
        if "error" in r or (r["foreign"] <= args.max_foreign and r["steal"] <= args.max_foreign):
            break
        if attempt == args.retries or not clock.may_wait(clock.per_run):
            break
        log(f"    disturbed (foreign {r['foreign']}, steal {r['steal']}); again")
    clock.left -= 1
    best = min(tries, key=lambda r: ("error" in r, r["foreign"] + r["steal"]))
    best["tries"] = len(tries)
    best["spent_s"] = round(time.monotonic() - t0, 1)  # waits and retries included
    best["disturbed"] = best["foreign"] > args.max_foreign or best["steal"] > args.max_foreign
    return best


def measure_memory(srv, args):
    """VmRSS of the server holding --idle-conns idle keep-alive connections, per connection."""
    before = rss_kib(srv.proc.pid)
    argv = ["taskset", "-c", str(args.client_cpu), args.python, os.path.join(HERE, "idle_memory.py"),
            "--port", str(srv.port), "--conns", str(args.idle_conns), "--max-hold", "30"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, cwd=HERE)
    held_rss, held = None, 0
    try:
        deadline = time.monotonic() + 60  # readline could block past it only if the client
        line = ""                         # hangs, and the client bounds itself (60 s + 30 s)
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line or line.startswith("HOLDING"):
                break
        if line.startswith("HOLDING"):
            held = int(line.split()[1])
            time.sleep(0.5)  # let the server settle (timers, buffers)
            held_rss = rss_kib(srv.proc.pid)
        p.stdin.write("done\n")
        p.stdin.flush()
        out = p.communicate(timeout=40)[0]
    except (subprocess.TimeoutExpired, BrokenPipeError):
        p.kill()
        out = p.communicate()[0]
    except BaseException:
        p.kill()
        p.wait()
        raise
    data = parse_bench_json(out) or {}
    if not held_rss or not held or before is None:
        return {"error": f"memory test failed: {data or out.strip()[-300:]}"}
    res = {"rss_base_kib": before, "rss_held_kib": held_rss, "held": held,
           "still_open": data.get("still_open"), "failed": data.get("failed"),
           "value": (held_rss - before) / held}
    if data.get("still_open") is not None and data["still_open"] < held:
        res["error"] = f"the server closed {held - data['still_open']} idle connections early"
    time.sleep(0.5)  # the server closes its sockets
    return res


# --- the report ---------------------------------------------------------------------------------

def summarise(results, names, scens, baseline):
    """results[server][scenario] = per-round dicts -> {(server, scenario): summary row}."""
    table = {}
    for name in names:
        for scen in scens:
            runs = [r for r in results.get(name, {}).get(scen, []) if "value" in r and "error" not in r]
            if not runs:
                continue
            vals = [r["value"] for r in runs]
            med = statistics.median(vals)
            row = dict(median=med, min=min(vals), max=max(vals), n=len(vals),
                       spread=(max(vals) - min(vals)) / med if med else 0.0,
                       disturbed=sum(1 for r in runs if r.get("disturbed")))
            if scen != MEMORY:
                row["server_cpu"] = statistics.median(r["server_cpu"] for r in runs)
                row["client_cpu"] = statistics.median(r["client_cpu"] for r in runs)
                eff = [r["per_cpu_s"] for r in runs if r.get("per_cpu_s")]
                row["per_cpu_s"] = statistics.median(eff) if eff else None
            table[(name, scen)] = row
    for (name, scen), row in table.items():
        base = table.get((baseline, scen))
        row["ratio"] = row["median"] / base["median"] if base and base["median"] else None
        if row.get("per_cpu_s") and base and base.get("per_cpu_s"):
            row["cpu_ratio"] = row["per_cpu_s"] / base["per_cpu_s"]
    return table


def fmt(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"


def bound_by_client(row):
    return row.get("server_cpu") is not None and row["server_cpu"] < 0.85


def markdown(table, names, scens, baseline, skipped, failed):
    def matrix(title, cols, key, ratio_key, mark):
        out = [f"### {title}", "",
               "| server | " + " | ".join(f"{c} ({UNITS[c]})" for c in cols) + " |",
               "|---|" + "---:|" * len(cols)]
        for name in names:
            cells = []
            for c in cols:
                row = table.get((name, c))
                v = row.get(key) if row else None
                if v is None:
                    cells.append(skipped.get((name, c), "failed" if (name, c) in failed else "—"))
                    continue
                r = row.get(ratio_key)
                flag = ("†" if mark and bound_by_client(row) else "") + \
                       ("‡" if mark and row.get("disturbed") else "")
                cells.append(fmt(v) + flag + (f" ×{r:.2f}" if r is not None else ""))
            label = f"**{name}**" if name == baseline else name
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        return out

    out = matrix(f"Medians over rounds (× = ratio of medians to {baseline})",
                 scens, "median", "ratio", True)
    out += ["", "† median server CPU share below 0.85 of its core: the load generator or the "
            "machine set the pace, so the figure is a lower bound for that server. "
            "‡ at least one round stayed disturbed by other programs (more than --max-foreign "
            "of a core) after its retries.", ""]
    perf_cols = [s for s in scens if s != MEMORY]
    if perf_cols:
        out += matrix(f"Per server CPU-second (median of value ÷ server CPU share; × = ratio to "
                      f"{baseline}); steadier when other programs share the machine",
                      perf_cols, "per_cpu_s", "cpu_ratio", False)
        out += [""]
    out += targets(table, scens)
    out += ["", "### Every cell: spread over rounds and CPU shares", "",
            "| server | scenario | median | min | max | spread | n | disturbed | server CPU | client CPU |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in scens:
        for name in names:
            row = table.get((name, c))
            if row:
                cpu = (f"{row['server_cpu']:.2f} | {row['client_cpu']:.2f}" if "server_cpu" in row
                       else "— | —")
                out.append(f"| {name} | {c} | {fmt(row['median'])} | {fmt(row['min'])} | "
                           f"{fmt(row['max'])} | {row['spread']*100:.1f}% | {row['n']} | "
                           f"{row['disturbed']} | {cpu} |")
    return "\n".join(out)


def targets(table, scens):
    rows = []
    for scen, ref, bound, text in TARGETS:
        if scen not in scens:
            continue
        mine, theirs = table.get((SUBJECT, scen)), table.get((ref, scen))
        if not mine or not theirs or not theirs["median"]:
            rows.append(f"| {text} | — | not measured |")
            continue
        ratio = mine["median"] / theirs["median"]
        if scen == MEMORY:  # less is better: lowserver's KiB/conn over the reference's
            met = ratio <= bound
            shown = f"{fmt(mine['median'])} vs {fmt(theirs['median'])} KiB/conn (×{ratio:.2f})"
        else:
            met = ratio >= bound
            shown = f"×{ratio:.2f}" + (" †" if bound_by_client(mine) or bound_by_client(theirs) else "")
        rows.append(f"| {text} | {shown} | {'met' if met else 'NOT met'} |")
    if not rows:
        return []
    return ["### The issues' targets (ratios of medians, lowserver to the reference)", "",
            "| target | measured | |", "|---|---|---|"] + rows


def environment(args, infos):
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                  cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    wrk = cmd(["wrk", "-v"]).splitlines()
    return {"python": cmd([args.python, "-c", "import sys; print(sys.version.split()[0])"]),
            "wrk": wrk[0].split(" [")[0] if wrk else "?",
            "commit": cmd(["git", "rev-parse", "--short", "HEAD"]),
            "dirty": bool(cmd(["git", "status", "--porcelain", "--untracked-files=no"])),
            "cpus": os.cpu_count(), "servers": infos}


# --- main ---------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(SERVERS), help="comma list; default: all")
    p.add_argument("--scenarios", default=",".join(list(SCENARIOS) + [MEMORY]),
                   help="comma list; default: all (idle_mem is the memory test)")
    p.add_argument("--baseline", default="aiohttp-pure", help="ratios are to this server")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=3, help="measured seconds per run (whole seconds: wrk)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each run")
    p.add_argument("--connections", type=int, default=50, help="wrk -c (with -t1)")
    p.add_argument("--ws-client", choices=("raw", "aiohttp"), default="raw",
                   help="WebSocket load client (see ws_echo.py); default raw")
    p.add_argument("--idle-conns", type=int, default=1000, help="connections held for idle_mem")
    p.add_argument("--mem-rounds", type=int, default=1,
                   help="rounds that measure idle memory (it repeats within ~1%%; default 1)")
    p.add_argument("--server-cpu", type=int, default=1)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--python", default=sys.executable, help="interpreter for servers and clients")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop every server runs on (apps/bench_loop.py)")
    p.add_argument("--retries", type=int, default=2,
                   help="re-runs of a measurement disturbed by other programs (default 2)")
    p.add_argument("--max-foreign", type=float, default=0.10,
                   help="share of a core used by other programs (or stolen) that marks a run disturbed")
    p.add_argument("--quiet-load", type=float, default=0.15,
                   help="before each run, wait until no core is busier than this")
    p.add_argument("--quiet-wait", type=float, default=8, help="longest wait for quiet before a run, s")
    p.add_argument("--budget-min", type=float, default=9.5,
                   help="waits and retries only while the rest still fits in this many minutes")
    p.add_argument("--json", help="write the raw per-round results and the summary here")
    p.add_argument("--markdown", help="write the summary tables here")
    p.add_argument("--workdir", help="server logs and wrk Lua scripts (default: a new temp dir)")
    args = p.parse_args()
    # Ctrl-C, or SIGTERM to this PID, unwinds through the `finally` that stops the servers
    # (also when started in the background, where SIGINT would be ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    names = [n for n in args.servers.split(",") if n]
    scens = [s for s in args.scenarios.split(",") if s]
    for n in names:
        if n not in SERVERS:
            sys.exit(f"unknown server {n}; known: {', '.join(SERVERS)}")
    for s in scens:
        if s not in SCENARIOS and s != MEMORY:
            sys.exit(f"unknown scenario {s}; known: {', '.join(list(SCENARIOS) + [MEMORY])}")
    if args.baseline not in SERVERS:
        sys.exit(f"unknown baseline {args.baseline}")
    for tool in ("wrk", "taskset"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            sys.exit(f"{tool} not found (wrk: apt-get install -y wrk; taskset: util-linux)")
    workdir = args.workdir or tempfile.mkdtemp(prefix="lowserver-bench-")
    os.makedirs(workdir, exist_ok=True)
    try:
        os.sched_setaffinity(0, {args.client_cpu})  # keep the driver off the server's core
    except OSError:
        pass

    infos, skipped = {}, {}
    for name in list(names):
        info, reason = probe(name, args)
        if reason:
            log(f"[skip] {name}: {reason}")
            names.remove(name)
            infos[name] = {"skipped": reason}
            continue
        infos[name] = info
        for s in scens:
            if s != MEMORY and not serves(info, s):
                skipped[(name, s)] = "skipped"
                log(f"[skip] {name} {s}: web lacks {', '.join(set(SCENARIOS[s][4]) & set(info['missing']))}")
    wanted = {n: [s for s in scens if s != MEMORY and (n, s) not in skipped] for n in names}
    runs_total = args.rounds * sum(len(v) for v in wanted.values())
    mem_rounds = min(args.rounds, args.mem_rounds) if MEMORY in scens else 0
    fixed_s = args.rounds * len(names) * 1.5 + mem_rounds * len(names) * 4
    est = runs_total * (args.duration + args.warmup + 0.8) + fixed_s
    log(f"servers: {names}\nscenarios: {scens}\nworkdir: {workdir}\n"
        f"estimated wall time: {est/60:.1f} min undisturbed (at most ~{args.budget_min} min with "
        f"waits and retries)")

    results = {n: {} for n in names}
    clock = Clock(args, runs_total, fixed_s)
    for rnd in range(args.rounds):
        k = rnd % len(names) if names else 0
        order = names[k:] + names[:k]
        servers = {}
        try:
            for name in order:
                srv = Server(name, args, workdir)
                try:
                    srv.start()
                    servers[name] = srv
                except RuntimeError as e:
                    log(f"[round {rnd+1}] {e}")
                    results[name].setdefault("_errors", []).append(str(e))
            if rnd < mem_rounds:
                for name in order:
                    if name in servers:
                        m = measure_memory(servers[name], args)
                        results[name].setdefault(MEMORY, []).append(m)
                        log(f"[round {rnd+1}] {name:13s} {MEMORY:9s}"
                            + (f"{m['value']:>10.1f} KiB/conn (base {m['rss_base_kib']} KiB, "
                               f"{m['held']} held)" if "value" in m else "")
                            + (f"  ERROR {m['error']}" if "error" in m else ""))
            for scen in scens:
                if scen == MEMORY:
                    continue
                for name in order:
                    srv = servers.get(name)
                    if scen not in wanted.get(name, ()):
                        continue
                    if srv is None or not srv.alive():
                        log(f"[round {rnd+1}] {name} is not running; skipping {scen}")
                        clock.left -= 1
                        continue
                    r = measure(srv, scen, args, workdir, clock)
                    results[name].setdefault(scen, []).append(r)
                    log(f"[round {rnd+1}] {name:13s} {scen:9s}"
                        + (f"{r['value']:>10,.1f} {UNITS[scen]}" if "value" in r else "")
                        + f"  cpu server {r['server_cpu']:.2f} client {r['client_cpu']:.2f}"
                        + f" foreign {r['foreign']:.2f} steal {r['steal']:.2f}"
                        + (" DISTURBED" if r.get("disturbed") else "")
                        + (f"  ERROR {r['error']}" if "error" in r else ""))
        finally:
            for srv in servers.values():
                srv.stop()
    elapsed = time.monotonic() - clock.start
    table = summarise(results, names, scens, args.baseline)
    shown = [n for n in SERVERS if n in args.servers.split(",")]  # skipped ones too, as rows
    for n in shown:
        if n not in names:
            for s in scens:
                skipped[(n, s)] = "skipped"
    # cells with no valid result although measured, or whose server did not start
    failed = {(n, s) for n in names for s in scens
              if results[n].get("_errors") or any("error" in r for r in results[n].get(s, ()))}
    md = markdown(table, shown, scens, args.baseline, skipped, failed)
    errors = [f"- {n} {s}: {r['error']}" for n in names for s in scens
              for r in results[n].get(s, ()) if "error" in r]
    errors += [f"- {n}: {e}" for n in names for e in results[n].get("_errors", ())]
    if errors:
        md += "\n\n### Errors\n\n" + "\n".join(errors)
    env = environment(args, infos)
    cmd = " ".join([os.path.relpath(args.python, ROOT) if args.python.startswith(ROOT) else "python",
                    "benchmarks/server.py"] + sys.argv[1:])
    header = (f"Run {datetime.datetime.now().isoformat(timespec='seconds')}, {elapsed:.0f} s, "
              f"commit {env['commit']}{' (dirty tree)' if env['dirty'] else ''}, "
              f"Python {env['python']}, {env['wrk']}, event loop {args.loop}; rounds={args.rounds} "
              f"duration={args.duration}s warmup={args.warmup}s, wrk -t1 -c{args.connections}, "
              f"ws client {args.ws_client}, idle_mem {args.idle_conns} connections; "
              f"server on CPU {args.server_cpu}, load generator on CPU {args.client_cpu}")
    skipped_servers = [f"{n}: {infos[n]['skipped']}" for n in shown if "skipped" in infos.get(n, {})]
    if skipped_servers:
        header += "\n\nSkipped: " + "; ".join(skipped_servers)
    print(header + "\n\n" + md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"Command: `{cmd}`\n\n{header}\n\n{md}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": cmd, "header": header, "environment": env, "args": vars(args),
                       "results": results,
                       "summary": {f"{n}|{s}": v for (n, s), v in table.items()}}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the servers were stopped on the way out
        log("interrupted; every server and load generator started was stopped")
        sys.exit(130)
