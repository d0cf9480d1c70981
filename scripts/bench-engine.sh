#!/usr/bin/env bash
# Native engine benchmark (issue 6): fills a private Dovecot with the deterministic corpus
# (2,000 messages ≈ 270 MB, then 5,000), copies it to a second private Dovecot with the
# native engine at 0 ms and 20 ms added round-trip time (a delaying TCP proxy in front of
# both servers), verifies every run, and prints msgs/s, MB/s, peak RSS and CPU seconds of
# the engine process. imapsync is measured too, with pymap's imapsync runner, when it is on
# PATH (it is not packaged in Debian; without it the row says so), and the ratio of messages
# per second is printed for each delay.
#
# Needs root (Dovecot switches to the mail uid), dovecot-imapd and openssl.
#
# Usage: scripts/bench-engine.sh [MESSAGES] [RTT_MS]      e.g. scripts/bench-engine.sh 2000,5000 0,20
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PYMAP_BENCH_MESSAGES=${1:-2000,5000}
export PYMAP_BENCH_RTT_MS=${2:-0,20}
export PYMAP_TEST_DOVECOT=${PYMAP_TEST_DOVECOT:-$(command -v dovecot || true)}
if [ -z "$PYMAP_TEST_DOVECOT" ]; then
    echo "bench-engine.sh: dovecot not found (Debian package: dovecot-imapd)" >&2
    exit 1
fi
# The bench is an ignored test of the integration binary: it reuses the Dovecot harness and
# runs the engine in a child process of that binary to measure it alone.
exec cargo test --release --locked --test it native::bench::bench_engine -- --ignored --exact --nocapture --test-threads=1
