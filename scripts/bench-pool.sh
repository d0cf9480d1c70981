#!/usr/bin/env bash
# Worker-pool benchmark (issue "migration core"): 1,000 jobs in one task, concurrency 200,
# the imapsync stand-in replaying the 300-message success fixture at full speed.
#
# It measures process handling, not migration: the stand-in moves no mail.
# Reports: wall time, peak RSS and CPU seconds of the pymap process, p50/p99 submit→spawn
# latency (job created → claimed and spawned), log lines ingested per second, and whether
# every line replayed reached the job logs (line counts compared).
#
# Usage: scripts/bench-pool.sh [JOBS] [CONCURRENCY]
# BENCH_BIN=PATH runs another pymap build (e.g. an earlier commit's) with this tree's stand-in,
# so two builds can be compared side by side: alternate the runs, same machine, same minute.
# SUBMIT=api (default) submits through the REST API, as the UI and scripts do (the server
# wakes its pool at once); SUBMIT=cli uses `pymap batch`, a separate process, whose task
# the server notices by polling (within 25 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-1000}
# Stand-in replay speed: 0 = as fast as possible (CPU-bound: 200 processes printing flat out
# on 2 cores), 1 = the captured run's own pace (the processes mostly wait, as imapsync does
# on a network), which isolates pymap's own dispatch latency.
SPEED=${SPEED:-0}
CONC=${2:-200}
cargo build --release --locked --bin pymap --bin imapsync-standin >&2
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${BENCH_BIN:-$TARGET/release/pymap}
echo "pymap binary: $BIN" >&2
STANDIN=$TARGET/release/imapsync-standin
WORK=$(mktemp -d /tmp/pymap-bench.XXXXXX)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PYMAP_DATA_DIR=$WORK/data PYMAP_ADMIN_PASSWORD=bench-password-1 PYMAP_LOG_LEVEL=warn
export PYMAP_IMAPSYNC_PATH=$STANDIN PYMAP_WORKERS__CONCURRENCY=$CONC
export PYMAP_WORKERS__PER_SOURCE_HOST=$CONC PYMAP_WORKERS__PER_DESTINATION_HOST=$CONC
ulimit -n 65536 2>/dev/null || true
# This machine's own floor for a wave: a minimal process that only spawns CONC short-lived
# children (posix_spawn of /bin/sleep, no pymap involved) and reaps them. No dispatcher can
# start a first wave faster than this.
FLOOR=$(python3 - "$CONC" <<'PY'
import os, sys, time
n = int(sys.argv[1])
t0 = time.monotonic()
pids = [os.posix_spawn("/bin/sleep", ["sleep", "0.5"], os.environ) for _ in range(n)]
t1 = time.monotonic()
for p in pids:
    os.waitpid(p, 0)
print(f"{(t1 - t0) * 1000:.0f}")
PY
)
"$BIN" serve --listen "127.0.0.1:$PORT" 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 100); do PYMAP_LISTEN=127.0.0.1:$PORT "$BIN" healthcheck 2>/dev/null && break; sleep 0.2; done
python3 - "$JOBS" "$SPEED" >"$WORK/batch.txt" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"standin-a+speed{sys.argv[2]}+startup0@m{i}.example.com pw-{i}")
PY
# What one run prints when pymap drives it (same argv shape, --nolog): the line-count reference.
( cd "$WORK" && printf 'pw\n' >p1 && cp p1 p2 && chmod 600 p1 p2 &&
  "$STANDIN" --host1 a --user1 "standin-a+speed$SPEED+startup0@x" --passfile1 p1 --host2 b --user2 u \
    --passfile2 p2 --nodockercontext --nolog --pidfile ./pid --tmpdir . | wc -l >"$WORK/per_run" )
SUBMIT=${SUBMIT:-api}
START=$(date +%s.%N)
if [ "$SUBMIT" = cli ]; then
  TASK=$("$BIN" batch "$WORK/batch.txt" --source src.example.com --destination dst.example.com 2>/dev/null)
  echo "$START" >"$WORK/request_start"
else
  # A token for admin (no seeded tasks), then one POST with the whole batch.
  "$BIN" dev seed --tasks 0 --users 1 --token-for admin 2>/dev/null | tail -n 1 >"$WORK/token"
  START=$(date +%s.%N)
  TASK=$(python3 - "$PORT" "$WORK/token" "$WORK/batch.txt" "$WORK/request_start" <<'PY'
import json, sys, time, urllib.request
port, token_file, batch_file, start_file = sys.argv[1:]
body = json.dumps({"source": "src.example.com", "destination": "dst.example.com",
                   "batch": open(batch_file).read()}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/tasks", data=body, method="POST",
    headers={"Authorization": "Bearer " + open(token_file).read().strip(),
             "Content-Type": "application/json"})
t0 = time.time()
with urllib.request.urlopen(req) as resp:
    task = json.load(resp)["id"]
open(start_file, "w").write(f"{t0}\n")
print(task)
PY
)
fi
DB=$WORK/data/pymap.db
while :; do
  LEFT=$(sqlite3 "$DB" "select count(*) from jobs where task_id=$TASK and status in ('queued','running')")
  [ "$LEFT" = 0 ] && break
  sleep 0.2
done
END=$(date +%s.%N)
read -r HWM < <(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
read -r UT ST < <(awk '{print $14, $15}' "/proc/$PID/stat")
TCK=$(getconf CLK_TCK)
python3 - "$DB" "$TASK" "$START" "$END" "$HWM" "$UT" "$ST" "$TCK" "$JOBS" "$CONC" "$WORK/data/logs" "$(cat "$WORK/per_run")" "$(cat "$WORK/request_start")" "$SUBMIT" "$FLOOR" <<'PY'
import sqlite3, sys, datetime, glob, statistics, subprocess
db, task, start, end, hwm, ut, st, tck, jobs, conc, logs, per_run, req_start, submit, floor = sys.argv[1:]
c = sqlite3.connect(db)
def ts(s):
    s = s.replace(" +00:00", "+00:00").replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(s)
rows = c.execute("select created_at, started_at, status, id from jobs where task_id=? order by position", (task,)).fetchall()
finished = sorted(ts(f).timestamp() for (f,) in c.execute("select finished_at from jobs where task_id=?", (task,)))
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]
lat_all = [(ts(b) - ts(a)).total_seconds() * 1000 for a, b, *_ in rows]
# The first wave never waits for a free slot: its latency is pure submit→claim→spawn.
lat_first = lat_all[: int(conc)]
# From the moment the client sent the request (API) or started `pymap batch` (CLI).
lat_req = [(ts(b).timestamp() - float(req_start)) * 1000 for _, b, *_ in rows[: int(conc)]]
# The runner creates the job's log file immediately before it spawns imapsync: the file's
# birth time (statx) is the spawn moment, independent of the database's timestamps.
def born(path):
    out = subprocess.run(["stat", "-c", "%w", path], capture_output=True, text=True).stdout.strip()
    day, clock, _ = out.split(" ")
    return datetime.datetime.fromisoformat(f"{day}T{clock[:15]}+00:00").timestamp()
spawned = sorted(born(f"{logs}/jobs/task-{task}/job-{i}.log") for *_, i in rows)
lat_spawn = [(t - float(req_start)) * 1000 for t in spawned[: int(conc)]]
# Dispatch latency after the first wave: the k-th spawn beyond the first wave takes the slot
# the k-th finished job freed, so spawn - that finish is how long a free slot stayed idle.
lat_dispatch = [(s - f) * 1000 for s, f in zip(spawned[int(conc):], finished)]
statuses = {}
for _, _, s, _ in rows: statuses[s] = statuses.get(s, 0) + 1
# Every line a run prints, plus pymap's two own lines (attempt header, exit line), must be logged.
lines = sum(sum(1 for _ in open(f, errors="replace")) for f in glob.glob(f"{logs}/jobs/task-{task}/*.log"))
expected = int(jobs) * (int(per_run) + 2)
wall = float(end) - float(start)
print(f"jobs={jobs} concurrency={conc} statuses={statuses}")
print(f"os_floor_ms={floor} (spawning {conc} processes, nothing else)")
print(f"wall_s={wall:.1f} peak_rss_mb={int(hwm)/1024:.1f} cpu_s={(int(ut)+int(st))/int(tck):.1f}")
print(f"submit={submit}")
print(f"submit_to_spawn_ms first_wave({conc}) from the start of the submit transaction p50={pct(lat_first, 50):.0f} p99={pct(lat_first, 99):.0f}")
print(f"submit_to_claim_ms first_wave({conc}) from the client's request p50={pct(lat_req, 50):.0f} p99={pct(lat_req, 99):.0f}")
print(f"submit_to_spawn_ms first_wave({conc}) from the client's request to the log file's birth p50={pct(lat_spawn, 50):.0f} p99={pct(lat_spawn, 99):.0f}")
print(f"slot_free_to_spawn_ms after the first wave p50={pct(lat_dispatch, 50):.0f} p99={pct(lat_dispatch, 99):.0f}")
print(f"submit_to_spawn_ms all_jobs p50={pct(lat_all, 50):.0f} p99={pct(lat_all, 99):.0f} (includes waiting for a free slot)")
print(f"log_lines={lines} expected={expected} lost={expected-lines} ingest_lines_per_s={lines/wall:.0f}")
PY
