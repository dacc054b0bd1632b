#!/bin/bash
# test_slurm.sh - the Slurm recipe on a real, single-node Slurm: starts
# munged, slurmctld and slurmd (Debian's munge and slurm-wlm) with a generated
# slurm.conf on free unprivileged ports, every state, log, pid and socket file
# in a temporary folder; submits tools/slurm/submit.sh's array of 4 shard
# builds and the merge that depends on it; waits for them; checks that the
# merged index equals a single-machine build of the same collection (records,
# embeddings, query answers); re-runs one shard task alone (it embeds
# nothing) and merges again (nothing new). Stops every daemon it started, by
# pid. Skips (77) only where it cannot run: not root, or the packages absent
# (tools/install-deps.sh installs them).
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "skipped: slurmd and munged run as root here (SlurmUser=root); not root"; exit 77; }
for t in munged mungekey slurmctld slurmd sbatch scontrol sinfo; do
    command -v $t > /dev/null || { echo "skipped: no $t (packages munge, slurm-wlm: tools/install-deps.sh)"; exit 77; }
done
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/slurm.XXXXXX" 2>/dev/null || mktemp -d)
chmod 755 "$T" # munged wants its socket's folders searchable by all
pids=()
stop_daemons() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for _ in $(seq 50); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    pids=()
}
trap 'stop_daemons; rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*"; for f in "$T"/log/*; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
cd "$T"
mkdir -p munge-key state spool log shards
chmod 700 munge-key

# ---- munge: a key of our own, its socket in our folder -------------------------------------------
mungekey --create --keyfile="$T/munge-key/munge.key" || die "mungekey"
munged -F -f --key-file="$T/munge-key/munge.key" --socket="$T/munge.socket" \
    --pid-file="$T/munged.pid" --seed-file="$T/munged.seed" --log-file="$T/log/munged.log" \
    > log/munged.out 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S munge.socket ] && break; sleep 0.1; done
[ -S munge.socket ] || die "munged did not start"

# ---- slurm.conf: this node as it is (slurmd -C), free ports ---------------------------------------
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("", 0))
print(*[x.getsockname()[1] for x in s])')
node=$(slurmd -C | head -n 1) # NodeName=HOST CPUs=.. Boards=.. ... RealMemory=..
host=${node#NodeName=}
host=${host%% *}
cat > slurm.conf <<EOF
ClusterName=siamidxtest
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge.socket
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
$node State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$T/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" > log/slurmctld.out 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" > log/slurmd.out 2>&1 &
pids+=($!)
for _ in $(seq 150); do
    sinfo -h -o %T 2>/dev/null | grep -qx idle && break
    sleep 0.2
done
sinfo -h -o %T 2>/dev/null | grep -qx idle || die "the node did not come up: $(sinfo 2>&1)"
echo "slurm up: node $host, ports $ctld_port/$slurmd_port"

# ---- the collection, and the single-machine build to compare with ------------------------------------
python3 "$SRC/tools/make_test_bmps.py" col 4 10
"$BIN" build col -i full.idx -m "$MODEL" --threads 1 --quiet > out 2>&1 || die "single build: $(cat out)"

# Waits for a job (all its array tasks) to leave the queue; prints its final states.
wait_job() { # JOBID SECONDS
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
        [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && break
        sleep 0.5
    done
    scontrol -o show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | sort | uniq -c | tr '\n' ' '
}
submit() { # ARGS...: prints "SHARDS MERGE"
    "$SRC/tools/slurm/submit.sh" -n 4 -d "$T/shards" -o "$T/merged.idx" -m "$MODEL" -c 1 \
        --bin "$BIN" --logs "$T/log" "$@" col > submitted || die "submit.sh: $(cat submitted)"
    cat submitted >&2
    sed -n 's/^shards \([0-9]*\) .* merge \([0-9]*\) .*/\1 \2/p' submitted
}

read -r shards merge < <(submit)
[ -n "${merge:-}" ] || die "submit.sh printed no job ids"
s1=$(wait_job "$shards" 60)
s2=$(wait_job "$merge" 30)
echo "array: $s1; merge: $s2"
[ "$(echo $s1)" = "4 COMPLETED" ] || fail "array tasks: $s1"
[ "$(echo $s2)" = "1 COMPLETED" ] || die "merge job: $s2"
for i in 0 1 2 3; do
    grep -q "siamidx shard $i/4 on $host" log/siamidx-shard-${shards}_$i.out || fail "task $i log"
    [ "$("$BIN" info -i shards/shard-$i.idx | awk '/^shard/ {print $2}')" = "$i/4" ] || fail "shard $i is not shard $i/4"
done
grep -q "^ok" log/siamidx-merge-$merge.out || fail "merge log: $(cat log/siamidx-merge-$merge.out)"
source "$SRC/tests/compare_index.sh"
same_index full.idx merged.idx col/artist_0/img_3.bmp col/artist_3/img_9.bmp ||
    fail "the index merged by Slurm differs from the single-machine build"

# Re-running a (failed) task: only task 2, then the merge of all four again.
read -r shards2 merge2 < <(submit --only 2)
s1=$(wait_job "$shards2" 60)
s2=$(wait_job "$merge2" 30)
[ "$(echo $s1)" = "1 COMPLETED" ] && [ "$(echo $s2)" = "1 COMPLETED" ] || fail "re-run: $s1 / $s2"
grep -q "indexed 0, .*(embedded 0, reused 0)" log/siamidx-shard-${shards2}_2.out ||
    fail "re-run task embedded again: $(cat log/siamidx-shard-${shards2}_2.out)"
grep -q "added 0, replaced 0, unchanged 40" log/siamidx-merge-$merge2.out ||
    fail "second merge: $(cat log/siamidx-merge-$merge2.out)"
same_index full.idx merged.idx col/artist_1/img_2.bmp || fail "after the re-run"
stop_daemons
for p in $(cat munged.pid slurmctld.pid slurmd.pid 2>/dev/null); do
    kill -0 "$p" 2>/dev/null && fail "daemon $p still running"
done
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
