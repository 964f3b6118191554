#!/usr/bin/env bash
# The GPU acceptance run (issue 15): the paper's GPU experiments, cnnbench's CUDA and NVML paths and the
# idle, ECC and DVFS records, in one script for a lent GPU machine that cannot install anything.
#
#   bench/gpu/acceptance.sh [--out DIR]   run every step, writing everything under DIR (default: $OUT)
#   bench/gpu/acceptance.sh --plan        print the steps, their estimated seconds and the total; runs nothing
#   bench/gpu/acceptance.sh --rehearse --out DIR
#                                         the same command lines on the CPU with lenet and tiny windows, on any
#                                         machine: proves the flags before device time is spent (no GPU numbers)
#
# It runs from a bare checkout: PYTHONPATH=.:plugins, no package installs (the lent machine has PyTorch with
# CUDA, CuPy, JAX, nvidia-ml-py, pluggy, tabulate and matplotlib; no TensorFlow, no MXNet, no registry).
# The session's device time is about 15 minutes, so the whole run is held to BUDGET_S seconds: each step has
# its own timeout, cut further so that the steps after it keep their estimated time.
#
# It must never change the machine it is lent: no GPU clocks, power limits, ECC, persistence or MIG.
# `cnnbench dvfs` runs without --allow-clock-changes (it then only reads and plans), and nvidia-smi only
# with the read-only options in NVSMI_READ_ONLY. Every step is checked against both before anything runs.
#
# Exit codes: 0 every step exited 0; 1 some step failed or was cut (each is recorded, the others still ran);
# 2 bad usage, or a step that would change a setting; 3 no GPU here (nothing written).

set -u -o pipefail
export LC_NUMERIC=C  # wall times are read with a decimal point

# The most seconds the whole run may take: a session's 15 minutes of device time, less the machine's start-up
# and room to rerun a step.
readonly BUDGET_S=540
readonly HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT="$(cd "$HERE/../.." && pwd)"
readonly ME="acceptance.sh"

# Options that change a GPU or CPU setting. tests/test_gpu_acceptance.py reads these two lines.
readonly FORBIDDEN_CNNBENCH=(--allow-clock-changes --restore)
readonly NVSMI_READ_ONLY=(-L -q -d --query-gpu --format -i)

usage() {
    echo "usage: bench/gpu/acceptance.sh [--plan] [--rehearse] [--out DIR] [-h]"
}

die_usage() {
    echo "$ME: error: $1" >&2
    exit 2
}

plan=0 rehearse=0 out="${OUT:-}"
valid="valid options: --plan, --rehearse, --out DIR, -h"
while (($#)); do
    case "$1" in
        --plan) plan=1 ;;
        --rehearse) rehearse=1 ;;
        --out)
            (($# >= 2)) || die_usage "--out needs a folder; $valid"
            out="$2"; shift ;;
        --out=*) out="${1#--out=}" ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown option '$1'; $valid" ;;
    esac
    shift
done

# What the steps measure. A rehearsal keeps every command line and flag and shrinks only the values.
if ((rehearse)); then
    DEV=cpu NET=lenet BS=8 WARMUP=1 MIN_TIME=0.05 REPEATS=2 IDLE=1 IDLE_LONG=1
    LONG_WINDOW=0.2 LAYER_MIN_TIME=0.02 CELL_TIMEOUT=120 LONG_METERS=auto
else
    # alexnet batch 128: the paper's Fig. 2 and 3. Windows of 0.5 s, three of them: enough for a median and a
    # spread, and the whole run fits the budget with CUDA start-up and autotuning in every cell.
    DEV=cuda NET=alexnet BS=128 WARMUP=2 MIN_TIME=0.5 REPEATS=3 IDLE=5 IDLE_LONG=20
    # 30 s: NVML's energy counter and the integral of its power field agree to a few tenths of a percent only
    # over windows far longer than the counter's ~100 ms update and the 1 s power averaging.
    LONG_WINDOW=30 LAYER_MIN_TIME=0.25 CELL_TIMEOUT=150 LONG_METERS=nvml
fi
MEASURE=(--warmup "$WARMUP" --min-time "$MIN_TIME" --repeats "$REPEATS" --timeout "$CELL_TIMEOUT" -q)
O="${out:-\$OUT}"

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
CNNBENCH=("$PYTHON" -m cnnbench)

# The steps, in order: name, estimated seconds on one H100, own timeout, then the command. The estimates
# count a fresh machine: the first CuPy cell compiles its kernels (NVRTC) and every JAX cell compiles its step
# with XLA autotuning. The same list is planned, checked and run.
steps() {
    step gpu-info 3 30 -- nvidia-smi -L
    step gpu-query 3 30 -- nvidia-smi --query-gpu=name,uuid,driver_version,vbios_version,pstate,temperature.gpu,power.draw,power.limit,clocks.sm,clocks.mem,ecc.mode.current,ecc.mode.pending,mig.mode.current,persistence_mode --format=csv
    step ecc 3 30 -- nvidia-smi -q -d ECC
    step list 5 60 -- "${CNNBENCH[@]}" list --json
    # First, on a GPU nothing has run on yet: the idle baseline, with a one-iteration cell to carry it.
    step idle $((IDLE_LONG + 15)) 120 -- "${CNNBENCH[@]}" run --framework torch --network lenet --batch-size 8 \
        --device "$DEV" --warmup 1 --iterations 1 --repeats 1 --meters auto --idle "$IDLE_LONG" \
        --timeout "$CELL_TIMEOUT" -q --json --db "$O/db/idle.sqlite"
    # Fig. 2: cuDNN against native kernels; the Caffe-style engine on CuPy has only native kernels (its
    # vendor cell is unsupported, without a worker).
    step fig2 75 200 -- "${CNNBENCH[@]}" compare --frameworks torch,caffe --kernels vendor,native \
        --networks "$NET" --batch-size "$BS" --device "$DEV" --precision fp32 "${MEASURE[@]}" --idle "$IDLE" \
        --json --db "$O/db/fig2.sqlite"
    # Fig. 3: frameworks by precision, each on its own first kernel family. JAX, the third-party plugin, runs
    # as a grid of its own: were it not to load, its name would be a usage error that took the grid down.
    step fig3 70 200 -- "${CNNBENCH[@]}" compare --frameworks torch,caffe --precision fp32,fp16,bf16,tf32 \
        --networks "$NET" --batch-size "$BS" --device "$DEV" "${MEASURE[@]}" --idle "$IDLE" \
        --json --db "$O/db/fig3.sqlite"
    step fig3-jax 100 200 -- "${CNNBENCH[@]}" compare --frameworks jax --precision fp32,fp16,bf16,tf32 \
        --networks "$NET" --batch-size "$BS" --device "$DEV" "${MEASURE[@]}" --idle "$IDLE" \
        --json --db "$O/db/fig3-jax.sqlite"
    step verify 20 120 -- "${CNNBENCH[@]}" verify --frameworks caffe,torch --network "$NET" --batch-size 2 \
        --device "$DEV" --precision fp32 --timeout "$CELL_TIMEOUT"
    # Fig. 5 on the GPU: every layer forward and backward, then the whole step, with the coherence line.
    step layers 55 150 -- "${CNNBENCH[@]}" layers --framework torch --network "$NET" --batch-size "$BS" \
        --device "$DEV" --warmup "$WARMUP" --min-time "$LAYER_MIN_TIME" --repeats "$REPEATS" \
        --timeout "$CELL_TIMEOUT" --idle "$IDLE" -q --plot "$O/figures/layers-torch-$NET.png"
    # One long window: NVML's energy counter and its power integral side by side (summary.py prints both).
    step nvml-window 60 150 -- "${CNNBENCH[@]}" run --framework torch --network "$NET" --batch-size "$BS" \
        --device "$DEV" --warmup "$WARMUP" --min-time "$LONG_WINDOW" --repeats 1 --meters "$LONG_METERS" \
        --idle "$IDLE" --timeout "$CELL_TIMEOUT" -q --json --db "$O/db/nvml-window.sqlite"
    # Plans only: without --allow-clock-changes dvfs reads the supported clocks and power limits, nothing more.
    # Always the GPU side, in a rehearsal too: that is the path the lent machine takes.
    step dvfs-plan 5 60 -- "${CNNBENCH[@]}" dvfs --device cuda
    step report-fig2 5 60 -- "${CNNBENCH[@]}" report latest --format md --plot "$O/figures/fig2.png" \
        -o "$O/reports/fig2.md" --db "$O/db/fig2.sqlite"
    step report-fig3 5 60 -- "${CNNBENCH[@]}" report latest --format md --plot "$O/figures/fig3.png" \
        -o "$O/reports/fig3.md" --db "$O/db/fig3.sqlite"
    step report-fig3-jax 5 60 -- "${CNNBENCH[@]}" report latest --format md --plot "$O/figures/fig3-jax.png" \
        -o "$O/reports/fig3-jax.md" --db "$O/db/fig3-jax.sqlite"
    step csv-fig2 2 30 -- "${CNNBENCH[@]}" report latest --format csv -o "$O/reports/fig2.csv" --db "$O/db/fig2.sqlite"
    step csv-fig3 2 30 -- "${CNNBENCH[@]}" report latest --format csv -o "$O/reports/fig3.csv" --db "$O/db/fig3.sqlite"
    step csv-fig3-jax 2 30 -- "${CNNBENCH[@]}" report latest --format csv -o "$O/reports/fig3-jax.csv" \
        --db "$O/db/fig3-jax.sqlite"
    step report-nvml-window 3 60 -- "${CNNBENCH[@]}" report latest --format md -o "$O/reports/nvml-window.md" \
        --db "$O/db/nvml-window.sqlite"
    step summary 3 60 -- "$PYTHON" bench/gpu/summary.py "$O"
}

# -- pass 1: collect and check ------------------------------------------------------------------------------

names=() ests=() limits=() commands=() refused=()

# Why a command may not run, or nothing.
refusal() {
    local arg bad
    if [[ "$1" == nvidia-smi ]]; then
        # A word that is no option is allowed only as the value of -d or -i: sub-commands (mig, clocks, ...) set.
        local previous="" ok allowed
        for arg in "${@:2}"; do
            ok=0
            [[ "$arg" != -* && ( "$previous" == -d || "$previous" == -i ) ]] && ok=1
            for allowed in "${NVSMI_READ_ONLY[@]}"; do
                [[ "$arg" == "$allowed" || "$arg" == "$allowed="* ]] && ok=1
            done
            ((ok)) || { echo "nvidia-smi $arg is not one of the read-only options (${NVSMI_READ_ONLY[*]})"; return; }
            previous=$arg
        done
        return
    fi
    for arg in "$@"; do
        for bad in "${FORBIDDEN_CNNBENCH[@]}"; do
            [[ "$arg" == "$bad" ]] && { echo "$arg would change the machine's settings"; return; }
        done
    done
}

# A command as one line that a shell reads back the same; words of plain characters stay unquoted.
quoted() {
    local word words=()
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
            words+=("$word")
        elif [[ "$word" =~ ^\$OUT[A-Za-z0-9_./:=,+@%-]*$ ]]; then
            words+=("\"$word\"")
        else
            words+=("$(printf '%q' "$word")")
        fi
    done
    echo "${words[*]}"
}

collect() {
    local name=$1 est=$2 limit=$3
    shift 4
    names+=("$name") ests+=("$est") limits+=("$limit") commands+=("$(quoted "$@")")
    local why
    why="$(refusal "$@")"
    [[ -n "$why" ]] && refused+=("step $name: $why")
}

step() { collect "$@"; }
steps
if ((${#refused[@]})); then
    echo "$ME: error: refusing to run: ${refused[0]}" >&2
    exit 2
fi

total=0
for est in "${ests[@]}"; do total=$((total + est)); done

if ((plan)); then
    printf '%-20s %6s %8s  %s\n' step est_s limit_s command
    for i in "${!names[@]}"; do
        printf '%-20s %6s %8s  %s\n' "${names[i]}" "${ests[i]}" "${limits[i]}" "${commands[i]}"
    done
    echo "total: $total s"
    echo "budget: $BUDGET_S s (each step's timeout is cut so that the steps after it keep their estimates)"
    ((total <= BUDGET_S)) || { echo "$ME: error: the estimates ($total s) exceed the budget ($BUDGET_S s)" >&2; exit 1; }
    exit 0
fi

# -- before anything is written -------------------------------------------------------------------------------

[[ -n "$out" ]] || die_usage "no output folder: give --out DIR or set OUT"
if [[ -e "$out" && ! -d "$out" ]] || { [[ -d "$out" ]] && [[ -n "$(ls -A "$out")" ]]; }; then
    die_usage "$out is not an empty folder; give a new or empty one (a run's record is never overwritten)"
fi

if ((!rehearse)); then
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "$ME: no GPU here: nvidia-smi is not on PATH (no NVIDIA driver); nothing was run" >&2
        exit 3
    fi
    if ! listed="$(nvidia-smi -L 2>&1)" || ! grep -q '^GPU [0-9]' <<<"$listed"; then
        echo "$ME: no GPU here: nvidia-smi -L lists none ($(head -n 1 <<<"$listed")); nothing was run" >&2
        exit 3
    fi
    if ! why="$(cd "$ROOT" && "$PYTHON" -c 'import sys, torch
sys.exit(0) if torch.cuda.is_available() else sys.exit(f"torch {torch.__version__} sees no CUDA device")' 2>&1)"; then
        echo "$ME: no GPU here for PyTorch: $(tail -n 1 <<<"$why"); nothing was run" >&2
        exit 3
    fi
fi

# -- pass 2: run ----------------------------------------------------------------------------------------------

mkdir -p "$out"/{steps,db,figures,reports}
out="$(cd "$out" && pwd)"
O="$out"
cd "$ROOT" || exit 2

# The JAX example plugin is registered as its entry point would be by pip, without installing anything: a
# dist-info folder naming its entry point, on PYTHONPATH beside the plugin's source (workers inherit both).
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
mkdir "$site/cnnbench_jax-0.1.0.dist-info"
printf 'Metadata-Version: 2.1\nName: cnnbench-jax\nVersion: 0.1.0\n' >"$site/cnnbench_jax-0.1.0.dist-info/METADATA"
printf '[cnnbench]\njax = cnnbench_jax\n' >"$site/cnnbench_jax-0.1.0.dist-info/entry_points.txt"
export PYTHONPATH="$ROOT:$ROOT/plugins:$ROOT/docs/examples/cnnbench-jax:$site"
export CNNBENCH_HOME="$out/home" MPLBACKEND=Agg

{
    echo "command: bench/gpu/acceptance.sh$( ((rehearse)) && echo ' --rehearse') --out \$OUT"
    echo "mode: $( ((rehearse)) && echo 'rehearsal on the CPU (lenet, tiny windows): no GPU figures' || echo gpu)"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm)"
    echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo 'unknown (no git metadata in this checkout)')"
    echo "python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0])' 2>&1)"
    echo "budget_s: $BUDGET_S"
    echo "planned_s: $total"
} >"$out/run.txt"
printf 'step\texit\twall_s\tlimit_s\tcommand\n' >"$out/steps.tsv"

now() { if [[ -n "${EPOCHREALTIME:-}" ]]; then echo "$EPOCHREALTIME"; else date +%s.%N; fi; }

n=0 failed=0
run_step() {
    local name=$1 est=$2 limit=$3
    shift 4
    local dir reserve=0 j allowed t0 rc wall
    dir="$out/steps/$(printf '%02d' $((n + 1)))-$name"
    mkdir -p "$dir"
    # The record names the output folder $OUT, not this machine's path to it.
    local word shown=()
    for word in "$@"; do shown+=("${word//"$out"/\$OUT}"); done
    quoted "${shown[@]}" >"$dir/command"
    for ((j = n + 1; j < ${#ests[@]}; j++)); do reserve=$((reserve + ests[j])); done
    allowed=$((BUDGET_S - SECONDS - reserve))
    ((allowed > limit)) && allowed=$limit
    # The summary is the record: it runs whatever the steps before it overran (it takes about a second).
    [[ "$name" == summary ]] && ((allowed < 10)) && allowed=10
    n=$((n + 1))
    if ((rehearse)) && [[ "$1" == nvidia-smi ]]; then
        echo "skipped: a rehearsal has no GPU" >"$dir/skipped"
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" skipped 0 "$limit" "$(head -c 300 "$dir/command")" >>"$out/steps.tsv"
        return
    fi
    if ((allowed < 1)); then
        echo "skipped: the steps before it used the ${BUDGET_S} s budget but what the steps after it need" \
            "(${reserve} s)" >"$dir/skipped"
        printf '%s\t%s\t%s\t%s\t%s\n' "$name" skipped 0 "$limit" "$(head -c 300 "$dir/command")" >>"$out/steps.tsv"
        failed=1
        return
    fi
    echo "[$n/${#names[@]}] $name (estimate $est s, timeout $allowed s)" >&2
    t0=$(now)
    # SIGTERM first: cnnbench then stores and prints the cells it finished; SIGKILL 5 s later if it hangs.
    timeout --kill-after=5 "$allowed" "$@" >"$dir/stdout" 2>"$dir/stderr" </dev/null
    rc=$?
    wall=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "$rc" >"$dir/exit_code"
    echo "$wall" >"$dir/wall_s"
    echo "$allowed" >"$dir/timeout_s"
    ((rc == 124 || rc == 137)) && echo "timed out after $allowed s" >"$dir/timed_out"
    ((rc == 0)) || failed=1
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$wall" "$allowed" "$(head -c 300 "$dir/command")" >>"$out/steps.tsv"
    echo "    exit $rc in $wall s" >&2
}

step() { run_step "$@"; }
steps
echo "$ME: done in $SECONDS s; summary: $out/summary.md" >&2
exit "$failed"
