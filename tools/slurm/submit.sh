#!/bin/bash
# submit.sh - submits a sharded siamidx build to Slurm: an array job of N shard
# builds (tools/slurm/shard.sbatch, one `siamidx build --shard I/N` per task),
# then a merge job (tools/slurm/merge.sbatch) that starts only when every task
# succeeded (--dependency=afterok). Prints the two job ids.
#
#   tools/slurm/submit.sh -n 16 -d /shared/idx/shards -o /shared/idx/paintings.idx \
#       -m /shared/models/m.safetensors -c 8 [-p PARTITION] [-t 2:00:00] \
#       [--only 3,7] [--bin /shared/bin/siamidx] [--logs DIR] [--sbatch ARG]... COLLECTION...
#
#   -n N        number of shards (array tasks 0 .. N-1)
#   -d DIR      the shard indexes, DIR/shard-I.idx (a filesystem every node sees)
#   -o OUT      the merged index (made, or added to)
#   -m MODEL    the model file (else $SIAMIDX_MODEL, else siamidx's default)
#   -c CPUS     CPUs per shard task = its compute threads (default 1)
#   -p, -t      partition and time limit of both jobs
#   --only IDS  re-run only these array tasks (e.g. the failed ones: 3,7 or 2-5),
#               then merge all N shards again
#   --bin PATH  the siamidx binary the jobs run (default: siamidx on PATH)
#   --logs DIR  where the jobs' logs go (default: the current folder)
#   --sbatch A  one more sbatch option for both jobs (repeatable)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
n="" dir="" out="" cpus=1 only="" logs=$PWD extra=()
bin=${SIAMIDX_SLURM_BIN:-siamidx}
usage() { sed -n '2,/^set -eu/p' "$0" | sed 's/^# \{0,1\}//; /^set -eu/d' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    -d) dir=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    -m) export SIAMIDX_MODEL=$2; shift 2 ;;
    -c) cpus=$2; shift 2 ;;
    -p) extra+=("--partition=$2"); shift 2 ;;
    -t) extra+=("--time=$2"); shift 2 ;;
    --only) only=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --sbatch) extra+=("$2"); shift 2 ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) echo "submit.sh: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
done
[ -n "$n" ] && [ -n "$dir" ] && [ -n "$out" ] && [ $# -ge 1 ] || usage
case "$n" in '' | *[!0-9]* | 0) echo "submit.sh: -n wants a number of shards >= 1" >&2; exit 2 ;; esac
# The jobs get these through sbatch's default --export=ALL.
export SIAMIDX_SLURM_N=$n SIAMIDX_SLURM_DIR=$dir SIAMIDX_SLURM_OUT=$out SIAMIDX_SLURM_BIN=$bin
mkdir -p "$dir" "$logs"
array=${only:-0-$((n - 1))}
shards=$(sbatch --parsable --array="$array" --cpus-per-task="$cpus" \
    --output="$logs/siamidx-shard-%A_%a.out" "${extra[@]}" "$here/shard.sbatch" "$@")
shards=${shards%%;*} # "id;cluster" on multi-cluster setups
merge=$(sbatch --parsable --dependency="afterok:$shards" --kill-on-invalid-dep=yes \
    --output="$logs/siamidx-merge-%j.out" "${extra[@]}" "$here/merge.sbatch")
merge=${merge%%;*}
echo "shards $shards (array $array of $n), merge $merge (after every shard task succeeds)"
