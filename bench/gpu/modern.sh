#!/usr/bin/env bash
# Issue 17 on a lent GPU, in one short run: `cnnbench verify` of resnet18, mobilenet_v2 and efficientnet_b0 on
# CUDA (PyTorch in fp32 with cuDNN, and the Caffe-style engine's new layers on CuPy in float64, each against the
# NumPy float64 reference), then the `modern` preset (torch and the engine on resnet50 and mobilenet_v2, fp32 and
# fp16). Writes everything under OUT. Rehearsed on the CPU (DEVICE=cpu BATCH=1); not yet run on a GPU.
#
#   bash bench/gpu/modern.sh                       # on the GPU machine (nothing installed: PYTHONPATH is set here)
#   DEVICE=cpu BATCH=1 bash bench/gpu/modern.sh    # a rehearsal of the same command lines on the CPU
set -u
OUT=${OUT:?set OUT to an empty folder}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
export PYTHONPATH=.:plugins${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
step() {  # name timeout command...: its output in OUT/name.txt, its exit status and seconds in OUT/steps.tsv
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$*" >> "$OUT/steps.tsv"
}
if [ "$DEVICE" != cpu ]; then
    step gpu 30 nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv
fi
for net in resnet18 mobilenet_v2 efficientnet_b0; do
    step "verify-$net" 150 "$PY" -m cnnbench verify --frameworks caffe,torch --network "$net" --batch-size 2 \
        --device "$DEVICE"
done
batch=()
[ -n "${BATCH:-}" ] && batch=(--batch-size "$BATCH")
step modern 330 "$PY" -m cnnbench compare --preset modern --frameworks torch,caffe --device "$DEVICE" "${batch[@]}" \
    --warmup 2 --min-time 0.3 --repeats 2 --meters auto --db "$OUT/modern.sqlite"
cat "$OUT/steps.tsv"
