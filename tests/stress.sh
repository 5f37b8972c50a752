#!/usr/bin/env bash
# Run the test suite on a deliberately busy machine, to prove that every test waits on a condition:
#   - the CPU saturated: stress-ng (Debian) with 2 workers per core, or busy Python processes without it;
#   - the start-up of background helpers delayed from outside the product: tests/stress/sitecustomize.py
#     on PYTHONPATH (the warm sync server, Prefect servers/workers, `stageflow serve`, the tests' HTTP
#     servers) and tests/stress/shim.sh first on PATH as `node` and `sshd` (warm tsc workers, PM2, sshd).
# Usage: bash tests/stress.sh [--runs N] [pytest args...]     (or, from nothing: STAGEFLOW_CI_STRESS=N bash .ci/run)
#   STAGEFLOW_STRESS_DELAY=seconds (default 1.5), STAGEFLOW_STRESS_HOGS=N CPU hogs (default 2 x cores).
#   Exit code: the first failing run's.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=1
if [ "${1:-}" = "--runs" ]; then runs=$2; shift 2; fi
python=${PYTHON:-.venv/bin/python}
hogs=${STAGEFLOW_STRESS_HOGS:-$(( 2 * $(nproc) ))}
export STAGEFLOW_STRESS_DELAY=${STAGEFLOW_STRESS_DELAY:-1.5}

shim=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$shim"; }
trap cleanup EXIT INT TERM
ln -s "$PWD/tests/stress/shim.sh" "$shim/node"
ln -s "$PWD/tests/stress/shim.sh" "$shim/sshd"
export STAGEFLOW_STRESS_REAL_PATH="$PATH:/usr/sbin:/usr/local/sbin"

if command -v stress-ng >/dev/null; then
  stress-ng --cpu "$hogs" --timeout 0 --quiet & pids+=($!)
  hog_desc="stress-ng --cpu $hogs"
else
  for _ in $(seq "$hogs"); do "$python" -c "while True: pass" & pids+=($!); done
  hog_desc="$hogs busy Python processes"
fi

code=0
for i in $(seq "$runs"); do
  echo "== stress run $i/$runs: $hog_desc, helper start-up +${STAGEFLOW_STRESS_DELAY}s, load $(cut -d' ' -f1-3 /proc/loadavg)"
  start=$(date +%s)
  set +e
  PYTHONPATH="$PWD/tests/stress${PYTHONPATH:+:$PYTHONPATH}" PATH="$shim:$PATH" \
    "$python" -m pytest -p no:cacheprovider -rs "$@"
  rc=$?
  set -e
  echo "== stress run $i/$runs: exit $rc in $(( $(date +%s) - start ))s, load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$rc" != 0 ] && [ "$code" = 0 ]; then code=$rc; fi
done
exit "$code"
