"""The archive and SQL benchmark (run by deploy/bench-archive, which builds Tally and
installs DuckDB first).

    bench_archive.py TALLY_BINARY [--events N] [--runs N]

1. Starts a private redis-server and Tally (release build) with the archive in a temporary
   folder, creates a project and declares its collection's fields through Rakam's API.
2. Writes N events (default 10,000,000, 20 to a request entry, over 30 days and 100,000
   users) straight into the project's raw stream, as the collector writes them, with
   redis-cli --pipe.
3. Starts Tally with its aggregator (the rollups' stream consumer and the archiver) and
   times it until the stream is archived: events per second, and Parquet bytes per event.
   Then waits for the rollups to catch up too, so the queries run on an idle machine.
4. Runs four queries through Tally's /query/execute and in DuckDB over the same files,
   each warmed once and then timed --runs times (median): a count, a group-by on a
   property, a distinct count of _user, a time bucketing. Prints the ratios.
"""

import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import duckdb

args = sys.argv[1:]
if not args:
    sys.exit(__doc__)
TALLY = args[0]


def opt(name, default):
    if name in args:
        return int(args[args.index(name) + 1])
    return default


EVENTS = opt("--events", 10_000_000)
RUNS = opt("--runs", 5)
PER_ENTRY = 20
USERS = 100_000
DAYS = 30
PLANS = ["free", "basic", "pro", "team", "enterprise"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("%s did not start" % what)


def http(port, path, body, headers=None):
    req = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (port, path),
        data=json.dumps(body).encode(),
        headers=dict({"Content-Type": "application/json"}, **(headers or {})),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def redis_cli(port, *cmd):
    return subprocess.run(
        ["redis-cli", "-p", str(port)] + list(cmd), capture_output=True, text=True, check=True
    ).stdout.strip()


work = tempfile.mkdtemp(prefix="tally-bench-archive.")
procs = []


def start_tally(redis_port, aggregator):
    port = free_port()
    env = dict(
        os.environ,
        REDIS_URL="redis://127.0.0.1:%d" % redis_port,
        TALLY_BIND="127.0.0.1:%d" % port,
        TALLY_ADMIN_KEY="bench",
        TALLY_ARCHIVE_URL=os.path.join(work, "archive"),
        TALLY_AGGREGATOR="1" if aggregator else "0",
        TALLY_SQL_TIMEOUT_MS="600000",
        TALLY_SQL_MEMORY_MB="4096",
        RUST_LOG="warn",
    )
    p = subprocess.Popen([TALLY], env=env, stdout=subprocess.DEVNULL)
    procs.append(p)
    wait_port(port, "tally")
    return p, port


try:
    redis_port = free_port()
    procs.append(
        subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
             "--dir", work],
            stdout=subprocess.DEVNULL,
        )
    )
    wait_port(redis_port, "redis-server")
    tally, port = start_tally(redis_port, aggregator=False)
    keys = http(port, "/project/create", {"name": "bench", "lock_key": "bench", "timezone": "UTC"})
    project, read, master = keys["project"], keys["read_key"], keys["master_key"]
    http(
        port,
        "/project/schema/add",
        {"collection": "purchase", "fields": [
            {"name": "plan", "type": "STRING"}, {"name": "amount", "type": "LONG"}]},
        {"master_key": master},
    )
    tally.terminate()
    tally.wait()

    # The stream, as the collector writes it: one entry a request, its events in `ev`.
    print("writing %d events into the stream ..." % EVENTS, flush=True)
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    span = DAYS * 86_400_000
    stream = "{%s}:stream" % project

    def resp(*parts):
        out = ["*%d\r\n" % len(parts)]
        for p in parts:
            b = p.encode()
            out.append("$%d\r\n" % len(b))
            out.append(p)
            out.append("\r\n")
        return "".join(out)

    started = time.time()
    pipe = subprocess.Popen(["redis-cli", "-p", str(redis_port), "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for i in range(EVENTS // PER_ENTRY):
        base = now_ms - rng.randrange(span)
        evs = [
            {"k": "purchase", "c": 1, "s": float(rng.randrange(1, 100)),
             "g": {"plan": rng.choice(PLANS), "amount": rng.randrange(1, 1000)},
             "ts": base + j * 1000}
            for j in range(PER_ENTRY)
        ]
        pipe.stdin.write(resp(
            "XADD", stream, "*", "t", "r", "d", "u%d" % rng.randrange(USERS),
            "rt", str(now_ms), "ts", str(base), "ev", json.dumps(evs, separators=(",", ":"))))
    pipe.stdin.close()
    pipe.wait()
    print("  written in %.1f s" % (time.time() - started), flush=True)
    last = redis_cli(redis_port, "XREVRANGE", stream, "+", "-", "COUNT", "1").split("\n")[0]

    # Archive it.
    started = time.time()
    tally, port = start_tally(redis_port, aggregator=True)
    state = "{%s}:arc" % project
    while redis_cli(redis_port, "HGET", state, "done") != last:
        time.sleep(0.2)
    took = time.time() - started
    files = []
    for root, _, names in os.walk(os.path.join(work, "archive")):
        files += [os.path.join(root, n) for n in names if n.endswith(".parquet")]
    size = sum(os.path.getsize(f) for f in files)
    print("archived %d events in %.1f s: %.0f events/s, %.1f bytes/event, %d files"
          % (EVENTS, took, EVENTS / took, size / EVENTS, len(files)), flush=True)

    # The aggregator's stream consumer rolls the same entries up on the same two cores:
    # let it finish, so the queries below are timed on an idle machine, as DuckDB's are.
    started = time.time()
    while True:
        lines = redis_cli(redis_port, "XINFO", "GROUPS", stream).split("\n")
        info = dict(zip(lines[0::2], lines[1::2]))
        if info.get("pending") == "0" and info.get("lag") == "0":
            break
        time.sleep(0.5)
    print("  (the rollups caught up %.1f s later)" % (time.time() - started), flush=True)

    # The same questions, of the same files, in Tally and in DuckDB.
    glob = os.path.join(work, "archive", "app=%s" % project, "collection=purchase", "*", "*.parquet")
    con = duckdb.connect()
    con.execute("CREATE VIEW purchase AS SELECT * FROM read_parquet('%s', union_by_name = true)" % glob)
    queries = [
        ("count", "SELECT count(*) FROM purchase"),
        ("group by a property", "SELECT plan, count(*), sum(amount) FROM purchase GROUP BY plan ORDER BY plan"),
        ("distinct _user", "SELECT count(DISTINCT _user) FROM purchase"),
        ("time buckets (hour)", "SELECT date_trunc('hour', _time) AS h, count(*) FROM purchase GROUP BY 1 ORDER BY 1"),
    ]

    def timed(fn):
        fn()
        times = []
        for _ in range(RUNS):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times), out

    print()
    print("| query | Tally (ms) | DuckDB (ms) | Tally / DuckDB | rows agree |")
    print("|---|---|---|---|---|")
    for name, q in queries:
        t_tally, a = timed(lambda: http(port, "/query/execute", {"query": q}, {"read_key": read}))
        t_duck, b = timed(lambda: con.execute(q).fetchall())
        agree = len(a["result"]) == len(b) and (
            [str(c) for c in a["result"][0][-1:]] == [str(c) for c in b[0][-1:]]
        )
        print("| %s | %.0f | %.0f | %.2fx | %s |"
              % (name, t_tally * 1000, t_duck * 1000, t_tally / t_duck, "yes" if agree else "NO"))
finally:
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(work, ignore_errors=True)
