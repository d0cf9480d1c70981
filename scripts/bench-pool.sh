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
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-1000}
CONC=${2:-200}
cargo build --release --locked --bin pymap --bin imapsync-standin >&2
BIN=$PWD/target/release/pymap
STANDIN=$PWD/target/release/imapsync-standin
WORK=$(mktemp -d /tmp/pymap-bench.XXXXXX)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PYMAP_DATA_DIR=$WORK/data PYMAP_ADMIN_PASSWORD=bench-password-1 PYMAP_LOG_LEVEL=warn
export PYMAP_IMAPSYNC_PATH=$STANDIN PYMAP_WORKERS__CONCURRENCY=$CONC
export PYMAP_WORKERS__PER_SOURCE_HOST=$CONC PYMAP_WORKERS__PER_DESTINATION_HOST=$CONC
ulimit -n 65536 2>/dev/null || true
"$BIN" serve --listen "127.0.0.1:$PORT" 2>"$WORK/serve.log" &
PID=$!
until "$BIN" healthcheck >/dev/null 2>&1 --timeout-secs 1; do sleep 0.2; done 2>/dev/null || true
for _ in $(seq 100); do PYMAP_LISTEN=127.0.0.1:$PORT "$BIN" healthcheck 2>/dev/null && break; sleep 0.2; done
python3 - "$JOBS" >"$WORK/batch.txt" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"standin-a+speed0+startup0@m{i}.example.com pw-{i}")
PY
START=$(date +%s.%N)
TASK=$("$BIN" batch "$WORK/batch.txt" --source src.example.com --destination dst.example.com 2>/dev/null)
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
python3 - "$DB" "$TASK" "$START" "$END" "$HWM" "$UT" "$ST" "$TCK" "$JOBS" "$CONC" "$WORK/data/logs" <<'PY'
import sqlite3, sys, datetime, glob, statistics
db, task, start, end, hwm, ut, st, tck, jobs, conc, logs = sys.argv[1:]
c = sqlite3.connect(db)
def ts(s):
    s = s.replace(" +00:00", "+00:00").replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(s)
rows = c.execute("select created_at, started_at, status from jobs where task_id=?", (task,)).fetchall()
lat = sorted((ts(b) - ts(a)).total_seconds() * 1000 for a, b, _ in rows)
def pct(p): return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
statuses = {}
for *_, s in rows: statuses[s] = statuses.get(s, 0) + 1
# Every replayed stdout line (862 per run) plus pymap's own "attempt" header must be in the logs.
lines = sum(sum(1 for _ in open(f, errors="replace")) for f in glob.glob(f"{logs}/jobs/task-{task}/*.log"))
expected = int(jobs) * (862 + 1)
wall = float(end) - float(start)
print(f"jobs={jobs} concurrency={conc} statuses={statuses}")
print(f"wall_s={wall:.1f} peak_rss_mb={int(hwm)/1024:.1f} cpu_s={(int(ut)+int(st))/int(tck):.1f}")
print(f"submit_to_spawn_ms p50={pct(50):.0f} p99={pct(99):.0f} (includes queueing behind the concurrency limit)")
print(f"log_lines={lines} expected={expected} lost={expected-lines} ingest_lines_per_s={lines/wall:.0f}")
PY
