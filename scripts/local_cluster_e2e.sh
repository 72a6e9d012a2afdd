#!/usr/bin/env bash
# End-to-end check of the cluster launcher path on one machine, for real:
#   an sshd on loopback (its own port, host key and client key, root login by that key only),
#   `ray up` of orchestrator/cluster/local.yaml (Ray's `local` provider) with the head on
#   127.0.0.3 and a worker on 127.0.0.2 that the head's autoscaler starts over SSH (not 127.0.0.1:
#   `ray start` turns a node IP of 127.0.0.1 into the host's LAN address, which the autoscaler
#   then cannot match to head_ip). Each "node" has a home of its own (sshd sets HOME by the
#   address it was reached at), so what the config ships and installs really travels:
#   - scripts/build_dist.sh builds ./dist (the wheel + constraints.txt) as a user would;
#   - the config's own file_mounts copy ./dist and the cluster's auth token (made here with
#     `ray get-auth-token --generate`) to the head, and the head copies them to the worker;
#   - the config's own setup commands install the wheel into ~/dlgsweep-venv on each node. That
#     venv is pre-seeded here, empty but seeing this venv's packages (a .pth line), so the
#     config's pip commands resolve against the installed Ray/torch instead of downloading 3 GB;
#   - the config's start commands start both nodes with RAY_AUTH_MODE=token.
#   Then: the job API refuses requests without the token; a Ray job imports the package on both
#   nodes from each node's venv; a small sweep is submitted with `ray job submit -- dlgsweep
#   run ...` (this shell sends the token) and its rows are checked with `dlgsweep status --json`;
#   then the worker node is lost twice, as a spot reclaim takes a node (every process of it
#   SIGKILLed by pid): once while the driver, placed on it, is mid-compaction (`dlgsweep resume`
#   finishes), once mid-trial with the driver on the head (Tune reruns the trial); each time
#   every trial ends with exactly one row, read by pyarrow, and what the loss cost is printed;
#   then everything it started is ended by pid (no `ray stop` / `ray down`: on a shared machine
#   those stop every Ray process of the user).
#
# Usage: scripts/local_cluster_e2e.sh            (as root: it runs sshd and may apt-get install)
# Env:   DLGSWEEP_VENV  venv holding dlgsweep + ray[default] (default: $VIRTUAL_ENV, else
#                       <repo>/.venv)
#        KEEP_E2E_DIR=1 keep the temp dir (logs, rendered config, results) after the run
# Exit:  0 when every step passed, non-zero otherwise; cleanup runs either way.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DLGSWEEP_VENV:-${VIRTUAL_ENV:-$REPO/.venv}}"
PY="$VENV/bin/python"
RAY="$VENV/bin/ray"
DLGSWEEP="$VENV/bin/dlgsweep"
HELPER=("$PY" "$REPO/scripts/local_cluster_helper.py")
T0=$(date +%s)

log() { printf '[e2e %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { log "FAIL: $*"; exit 1; }

for exe in "$PY" "$RAY" "$DLGSWEEP"; do
  [[ -x "$exe" ]] || die "$exe missing: set DLGSWEEP_VENV to a venv with dlgsweep installed"
done

# --- prerequisites: sshd, ssh, rsync (ray up syncs files), nc (waiting for sshd) ---
need=()
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v rsync >/dev/null || need+=(rsync)
command -v nc >/dev/null || need+=(netcat-openbsd)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  [[ $(id -u) == 0 ]] || die "need root to apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[[ $(id -u) == 0 ]] || die "run as root: the loopback sshd logs in as the invoking user by key"

# --- scratch space, tag, ports ---
E2E="$(mktemp -d /tmp/dlge2e.XXXXXX)"  # short: Ray's unix socket paths live under it
TAG="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
SSHD_PID=""
mkdir -p "$E2E"/{ssh,head-home,worker-home,client,logs,c,n}
chmod 700 "$E2E/ssh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "cleanup (exit status so far: $rc)"
  local pids=()
  [[ -n "$SSHD_PID" ]] && pids+=(--pid "$SSHD_PID")
  if ! "${HELPER[@]}" kill --tag "$TAG" --cluster-name "dlgsweep-e2e-$TAG" "${pids[@]}"; then
    log "cleanup: some tagged processes survived"
    ((rc == 0)) && rc=1
  fi
  if ((rc != 0)); then
    for f in "$E2E"/logs/*.log; do
      [[ -f "$f" ]] || continue
      echo "----- tail $f"
      tail -n 40 "$f"
    done
    for f in "$E2E"/h/session_latest/logs/monitor.{out,err,log}; do
      [[ -f "$f" ]] && { echo "----- tail $f"; tail -n 40 "$f"; }
    done
  fi
  if [[ "${KEEP_E2E_DIR:-0}" == 1 ]]; then
    log "kept $E2E"
  else
    rm -rf "$E2E"
  fi
  log "done: $([[ $rc == 0 ]] && echo PASSED || echo "FAILED ($rc)")"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORTS="$("${HELPER[@]}" ports)" || die "no free port slot"
eval "$PORTS"
log "tag $TAG, dir $E2E, port slot $SLOT (ssh $SSH_PORT, gcs $GCS_PORT, dashboard $DASHBOARD_PORT)"

# --- sshd on the two node addresses, this run's keys only ---
HEAD_IP=127.0.0.3
WORKER_IP=127.0.0.2
ssh-keygen -q -t ed25519 -N '' -C "dlgsweep-e2e-host" -f "$E2E/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -C "dlgsweep-e2e-$TAG" -f "$E2E/ssh/id"
printf 'from="127.0.0.0/8",no-agent-forwarding,no-X11-forwarding %s\n' \
  "$(cat "$E2E/ssh/id.pub")" >"$E2E/ssh/authorized_keys"
cat >"$E2E/ssh/sshd_config" <<EOF
ListenAddress $HEAD_IP:$SSH_PORT
ListenAddress $WORKER_IP:$SSH_PORT
HostKey $E2E/ssh/host_key
PidFile $E2E/ssh/sshd.pid
AuthorizedKeysFile $E2E/ssh/authorized_keys
AllowUsers $(id -un)
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowAgentForwarding no
MaxSessions 64
MaxStartups 64
# Every process started over these sessions (the Ray nodes) carries the tag, for cleanup by pid.
# HOME (one per node address) and RAY_TMPDIR keep ~/ray_bootstrap_*, ~/.bashrc, ~/.ray,
# ~/dlgsweep-* and /tmp/ray of the "nodes" inside this run's directory.
Match LocalAddress $HEAD_IP
  SetEnv DLGSWEEP_E2E_TAG=$TAG HOME=$E2E/head-home RAY_TMPDIR=$E2E/n
Match LocalAddress $WORKER_IP
  SetEnv DLGSWEEP_E2E_TAG=$TAG HOME=$E2E/worker-home RAY_TMPDIR=$E2E/n
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$E2E/ssh/sshd_config" >"$E2E/logs/sshd.log" 2>&1 &
SSHD_PID=$!
for _ in $(seq 50); do
  nc -z "$WORKER_IP" "$SSH_PORT" 2>/dev/null && break
  kill -0 "$SSHD_PID" 2>/dev/null || die "sshd exited: $(cat "$E2E/logs/sshd.log")"
  sleep 0.2
done
nc -z "$HEAD_IP" "$SSH_PORT" || die "sshd not listening on $HEAD_IP:$SSH_PORT"
# Ray's cluster launcher has no SSH port setting, and the head drops ssh_proxy_command when it
# starts workers, so every `ssh` of this run (ray up here, the head's autoscaler there) goes
# through a wrapper that reads this run's client config: port and key for the two loopback nodes.
mkdir -p "$E2E/bin"
cat >"$E2E/ssh/ssh_config" <<EOF
Host $HEAD_IP $WORKER_IP
  Port $SSH_PORT
  IdentityFile $E2E/ssh/id
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
printf '#!/bin/sh\nexec %s -F %s "$@"\n' "$(command -v ssh)" "$E2E/ssh/ssh_config" >"$E2E/bin/ssh"
chmod +x "$E2E/bin/ssh"
export PATH="$E2E/bin:$PATH"
for ip in "$HEAD_IP" "$WORKER_IP"; do
  ssh "$(id -un)@$ip" true || die "ssh to $ip:$SSH_PORT with the e2e key failed"
done
log "sshd $SSHD_PID listening on $HEAD_IP:$SSH_PORT and $WORKER_IP:$SSH_PORT"

# --- the "machines": what a node has before `ray up` (a login profile, python3) ---
# The ssh wrapper goes first on each node's PATH (the head's autoscaler ssh-es to the worker);
# ~/dlgsweep-venv is seeded as described at the top. The config's setup appends to ~/.bashrc.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for home in "$E2E/head-home" "$E2E/worker-home"; do
  # shellcheck disable=SC2016  # $PATH is for the node's shell to expand
  printf 'export PATH="%s/bin:$PATH"\n' "$E2E" >"$home/.bashrc"
  "$PY" -m venv --without-pip "$home/dlgsweep-venv"
  echo "$SITE" >"$("$home/dlgsweep-venv/bin/python" -c \
    'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_e2e_shared_packages.pth"
  # and those packages' console scripts (ray, ...), as a venv that installed them would have;
  # dlgsweep's own comes from the wheel the config installs
  for script in "$VENV"/bin/*; do
    name="$(basename "$script")"
    [[ -f "$script" && ! -L "$script" && "$name" != dlgsweep ]] || continue
    head -n 1 "$script" | grep -q "^#!$VENV/bin/python" || continue
    sed "1s|.*|#!$home/dlgsweep-venv/bin/python|" "$script" >"$home/dlgsweep-venv/bin/$name"
    chmod +x "$home/dlgsweep-venv/bin/$name"
  done
done

# --- this machine (the user's laptop): a token, the dist folder, the config ---
# client-side Ray state (cluster-<name>.state, the ray-config cache) goes under $E2E/c, the
# token under $E2E/client/.ray: this run's HOME, never the real one
export HOME="$E2E/client" RAY_TMPDIR="$E2E/c" RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0
export DLGSWEEP_E2E_TAG="$TAG"  # ray up's ssh control masters carry it too (cleanup by tag)
DASH="http://127.0.0.1:$DASHBOARD_PORT"
t=$(date +%s)
"$RAY" get-auth-token --generate >/dev/null 2>"$E2E/logs/token.log" \
  || die "ray get-auth-token failed: $(cat "$E2E/logs/token.log")"
[[ -s "$HOME/.ray/auth_token" ]] || die "no token at $HOME/.ray/auth_token"
PYTHON="$PY" bash "$REPO/scripts/build_dist.sh" "$E2E/dist" >"$E2E/logs/build_dist.log" 2>&1 \
  || die "build_dist.sh failed: $(cat "$E2E/logs/build_dist.log")"
T_DIST=$(($(date +%s) - t))
log "$(cat "$E2E/logs/build_dist.log")"

CFG="$E2E/cluster.yaml"
"${HELPER[@]}" render --template "$REPO/orchestrator/cluster/local.yaml" --out "$CFG" \
  --key "$E2E/ssh/id" --user "$(id -un)" --tmp "$E2E" --tag "$TAG" \
  --head-ip "$HEAD_IP" --worker-ip "$WORKER_IP"
cd "$E2E"  # the config's file_mounts ship ./dist, as from the repo root

t=$(date +%s)
log "ray up (head $HEAD_IP, worker $WORKER_IP via the head's autoscaler)"
timeout 300 "$RAY" up -y --no-config-cache "$CFG" >"$E2E/logs/ray_up.log" 2>&1 \
  || die "ray up failed (see ray_up.log below)"
T_UP=$(($(date +%s) - t))
log "ray up done in ${T_UP}s"

t=$(date +%s)
"${HELPER[@]}" wait --address "$DASH" --ips "$HEAD_IP,$WORKER_IP" --timeout 240 \
  || die "the worker never joined"
T_WORKER=$(($(date +%s) - t))
log "2 nodes alive ${T_WORKER}s after ray up returned"

# --- token auth is on: the job API turns away requests without the token ---
"${HELPER[@]}" authcheck --address "$DASH" --token-file "$HOME/.ray/auth_token" \
  || die "token auth check failed"

# --- a job that imports the package on each node ---
t=$(date +%s)
timeout 300 "$RAY" job submit --address "$DASH" --submission-id "e2e-probe-$TAG" -- \
  python "$REPO/scripts/local_cluster_helper.py" probe --ips "$HEAD_IP,$WORKER_IP" \
  >"$E2E/logs/job_probe.log" 2>&1 || die "probe job failed (see job_probe.log)"
grep '^probe' "$E2E/logs/job_probe.log"
T_PROBE=$(($(date +%s) - t))

# --- a small sweep through the docs' path (how-to/cluster.md): ray job submit -- dlgsweep run ---
SPEC="$E2E/spec.yaml"
cat >"$SPEC" <<'EOF'
name: e2e-cluster
grid:
  seed: [0, 1]
  activation: [relu, sigmoid]
fixed: {dataset: cifar10, model: mcmahan_cnn, batch_size: 1, init_method: xavier_normal}
attack: {optimizer: adam, lr: 0.1, loss: cosine, iterations: 5, label_strategy: idlg}
resources: {cpu: 1, gpu: 0}
EOF
RESULTS="$E2E/results"
t=$(date +%s)
log "ray job submit -- dlgsweep run (4 trials, 1 CPU each, 1 CPU per node)"
timeout 600 "$RAY" job submit --address "$DASH" --submission-id "e2e-sweep-$TAG" -- \
  dlgsweep run "$SPEC" --results "$RESULTS" --address auto \
  >"$E2E/logs/job_sweep.log" 2>&1 || die "sweep job failed (see job_sweep.log)"
T_SWEEP=$(($(date +%s) - t))
grep '^\[dlgsweep\]' "$E2E/logs/job_sweep.log" | tail -n 3
"$DLGSWEEP" status "$RESULTS/e2e-cluster" --json >"$E2E/status.json" \
  || die "dlgsweep status failed: $(cat "$E2E/status.json")"
"${HELPER[@]}" check --status-json "$E2E/status.json" --sweep-dir "$RESULTS/e2e-cluster" \
  --expect 4 --min-nodes 2 || die "sweep results check failed"


# --- lost nodes: the worker reclaimed, the way a spot reclaim takes a node ---
# Every process of the worker node (the tagged processes with the worker's HOME, and their
# descendants) is SIGKILLed at once, by pid. The head's autoscaler notices and starts the
# worker again (the local provider's worker_ips are fixed machines); the checks below do not
# depend on it except to have a worker for the next kill.

# 1. The node running the driver, killed mid-compaction. The driver compacts finished rows into
# part files; here it runs on the worker (the job's entrypoint asks for that node's `node:<ip>`
# resource, as a driver placed on a spot node would), and the test hook
# DLGSWEEP_TEST_HOLD_COMPACTION (store/sweep_store.py) holds its first compaction between
# writing the part and deleting the row files it merged: the worker is killed in that window.
# `dlgsweep resume` (a job on the head) then finishes the sweep: one row per trial, read by
# pyarrow as it lies in the folder (no dedupe).
# the node-loss sweeps: 4 trials of McMahan B=1, 1 CPU each, 2 retries; NAME, then ITERATIONS
loss_spec() {
  cat <<EOF
name: $1
grid:
  seed: [0, 1, 2, 3]
fixed: {dataset: cifar10, model: mcmahan_cnn, batch_size: 1, activation: relu,
        init_method: xavier_normal}
attack: {optimizer: adam, lr: 0.1, loss: cosine, iterations: $2, label_strategy: idlg}
resources: {cpu: 1, gpu: 0}
retries: 2
EOF
}
loss_spec e2e-lost-compacting 5 >"$E2E/spec-compact.yaml"
t=$(date +%s)
log "lost while compacting: the driver on the worker, its node killed mid-compaction"
"$RAY" job submit --address "$DASH" --submission-id "e2e-compact-$TAG" --no-wait \
  --entrypoint-resources "{\"node:$WORKER_IP\": 0.01}" -- \
  env DLGSWEEP_COMPACT_MIN_ROWS=2 DLGSWEEP_TEST_HOLD_COMPACTION="$E2E/compacting" \
  dlgsweep run "$E2E/spec-compact.yaml" --results "$RESULTS" --address auto \
  >"$E2E/logs/job_compact.log" 2>&1 || die "submitting the compaction sweep failed"
"${HELPER[@]}" nodekill --tag "$TAG" --home "$E2E/worker-home" --node-ip "$WORKER_IP" \
  --address "$DASH" --sweep-dir "$RESULTS/e2e-lost-compacting" \
  --when-file "$E2E/compacting" --timeout 240 \
  || die "could not kill the worker node mid-compaction"
T_KILLED=$(date +%s)
"${HELPER[@]}" midcompact --sweep-dir "$RESULTS/e2e-lost-compacting" \
  || die "the kill did not land mid-compaction"
timeout 600 "$RAY" job submit --address "$DASH" --submission-id "e2e-resume-$TAG" -- \
  dlgsweep resume "$RESULTS/e2e-lost-compacting" >"$E2E/logs/job_resume.log" 2>&1 \
  || die "resume after the lost node failed (see job_resume.log)"
T_COMPACT=$(($(date +%s) - t))
grep '^\[dlgsweep\]' "$E2E/logs/job_resume.log" | grep -v ' | ' | tail -n 3
"$DLGSWEEP" status "$RESULTS/e2e-lost-compacting" --json >"$E2E/status-compact.json" \
  || die "dlgsweep status failed: $(cat "$E2E/status-compact.json")"
"${HELPER[@]}" check --status-json "$E2E/status-compact.json" \
  --sweep-dir "$RESULTS/e2e-lost-compacting" --expect 4 \
  || die "lost-while-compacting results check failed"

# 2. A worker lost mid-trial, the driver on the head. Both nodes run one trial each; once both
# are in their attacks, the worker is killed. The driver goes on: Tune retries the lost trial
# (the spec's retries) on the node that is left, and every trial ends with one row. Its cost:
# the attempt that was lost, and the wait until Ray declares the node dead.
"${HELPER[@]}" wait --address "$DASH" --ips "$HEAD_IP,$WORKER_IP" --timeout 240 \
  --replaced "$WORKER_IP" || die "the autoscaler never brought the lost worker back"
T_BACK=$(($(date +%s) - T_KILLED))
log "the head's autoscaler had the lost worker back ${T_BACK}s after the kill"
loss_spec e2e-lost-node 150 >"$E2E/spec-lost.yaml"
t=$(date +%s)
log "lost node: 4 trials of 150 iterations; the worker is killed mid-trial"
timeout 600 "$RAY" job submit --address "$DASH" --submission-id "e2e-lost-$TAG" -- \
  dlgsweep run "$E2E/spec-lost.yaml" --results "$RESULTS" --address auto \
  >"$E2E/logs/job_lost.log" 2>&1 &
SUBMIT_PID=$!
"${HELPER[@]}" nodekill --tag "$TAG" --home "$E2E/worker-home" --node-ip "$WORKER_IP" \
  --address "$DASH" --sweep-dir "$RESULTS/e2e-lost-node" --record "$E2E/kill-lost.json" \
  --in-flight 2 || die "could not kill the worker node mid-trial"
T_KILL=$(($(date +%s) - t))
wait "$SUBMIT_PID" || die "the sweep did not survive the lost node (see job_lost.log)"
T_LOST=$(($(date +%s) - t))
grep '^\[dlgsweep\]' "$E2E/logs/job_lost.log" | grep -v ' | ' | tail -n 2
"$DLGSWEEP" status "$RESULTS/e2e-lost-node" --json >"$E2E/status-lost.json" \
  || die "dlgsweep status failed: $(cat "$E2E/status-lost.json")"
"${HELPER[@]}" check --status-json "$E2E/status-lost.json" \
  --sweep-dir "$RESULTS/e2e-lost-node" --expect 4 --kill-record "$E2E/kill-lost.json" \
  --min-rerun 1 || die "lost-node results check failed"
log "lost node: killed ${T_KILL}s after submit, sweep done ${T_LOST}s after submit"

log "timings: token + dist ${T_DIST}s, ray up ${T_UP}s, worker join ${T_WORKER}s, probe job ${T_PROBE}s, sweep job ${T_SWEEP}s, lost-while-compacting + resume ${T_COMPACT}s, worker back ${T_BACK}s, lost-node sweep ${T_LOST}s"
log "tearing down"
