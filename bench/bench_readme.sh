#!/usr/bin/env bash
# The README demo as a new user meets it: clone this repository's HEAD into a temporary folder, make a
# new virtualenv, run the README's first command exactly as written, and print how long it took until
# the first `curl` call that `serving.http.demo` prints got an answer (retried every 0.2 s).
#
#     bash bench/bench_readme.sh             # pip's cache as it is
#     PIP_NO_CACHE_DIR=1 bash bench/bench_readme.sh   # as on a new machine: every wheel downloaded
#
# Prints the load average before and after; stops the demo server and removes the folder when done. Needs git, curl and bc.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -- -"$pid" 2>/dev/null; rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone" && python -m venv "$work/venv" || exit 1
source "$work/venv/bin/activate"
cd "$work/clone" || exit 1
cmd=$(grep -m1 '^    pip install -e \. &&' README.md | sed 's/^    //')
echo "commit $(git rev-parse --short HEAD); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: $cmd"
log="$work/demo.log"
start=$(date +%s.%N)
setsid bash -c "$cmd" >"$log" 2>&1 &  # its own process group: the trap stops the server
pid=$!
while true; do
  call=$(grep -m1 '^curl -s -X POST' "$log" 2>/dev/null)
  if [ -n "$call" ]; then
    answer=$(eval "$call" 2>/dev/null)
    if [ -n "$answer" ]; then
      echo "first decision answered $(echo "$(date +%s.%N) - $start" | bc) s after the command started: ${answer:0:160}"
      break
    fi
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the command ended without answering; its last lines:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  sleep 0.2
done
grep -E '^\[ *[0-9.]+s .*(logging and registering|no data given)|^published ' "$log"
# The demo serves the shipped policy: it must be the candidate this run proposed.
python - <<'PY'
import mlflow, yaml
mlflow.set_tracking_uri("sqlite:///mlruns/mlflow.db")
client = mlflow.MlflowClient()
run = client.get_run(client.get_model_version_by_alias("buyer-trust-rating", "champion").run_id)
proposed = yaml.safe_load(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/policy/candidate_policy.yaml"))
shipped = yaml.safe_load(open("serving/policy.yaml"))
same = {k: v for k, v in proposed.items() if k != "version"} == {k: v for k, v in shipped.items() if k != "version"}
print(f"shipped serving/policy.yaml {'is' if same else 'is NOT'} the champion run's candidate ({proposed['version']})")
PY
echo "load average after $(cut -d' ' -f1-3 /proc/loadavg)"
