#!/bin/sh
# tests/stress.sh puts links to this script first on PATH as `node` and `sshd`: a long-lived helper
# (a warm tsc worker, the PM2 daemon, sshd) starts STAGEFLOW_STRESS_DELAY seconds late, then runs as itself.
name=$(basename "$0")
case "$name $*" in
  *STAGEFLOW_TSC*|*"node -e"*|*pm2*|*God*|*ProcessContainer*|sshd*) sleep "${STAGEFLOW_STRESS_DELAY:-1.5}" ;;
esac
IFS=:
for dir in $STAGEFLOW_STRESS_REAL_PATH; do
  if [ -x "$dir/$name" ]; then exec "$dir/$name" "$@"; fi
done
echo "stress shim: no real $name on PATH" >&2
exit 127
