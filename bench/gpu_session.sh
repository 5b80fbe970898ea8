#!/usr/bin/env bash
# Everything this project measures on a GPU, in one go (GPU time comes in short leases): the GPU tests,
# the length benchmark on CUDA (every method, Reformer included), and the stage-1 / cache / inference rates.
#   LONGDOC_GPU_DATA=DIR bash bench/gpu_session.sh OUTDIR
# DIR: `longdoc --profile gpu validate` and `chunk` outputs as v/ and c/. Each step logs to OUTDIR/<step>.log;
# a failed step does not stop the others, and the exit code says whether any failed.
set -uo pipefail
out=${1:?usage: bench/gpu_session.sh OUTDIR}
data=${LONGDOC_GPU_DATA:?set LONGDOC_GPU_DATA to the folder holding v/ and c/}
mkdir -p "$out"
failed=0

step() {
    local name=$1 start=$SECONDS rc
    shift
    echo "== $name"
    "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    tail -n 30 "$out/$name.log"
    [ "$rc" = 0 ] || failed=1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step gpu_tests python3 -m pytest -q -p no:cacheprovider -o addopts="-ra --durations=10" tests/test_gpu.py
step length_cuda python3 -m bench.scaling --device cuda --lengths 512,1024,2048,4096,8192,16384 \
    --out "$out/length_scaling_cuda"
step throughput python3 -m bench.gpu_throughput --data "$data" --steps "${STAGE1_STEPS:-200}" \
    --out "$out/gpu_throughput.json"
exit $failed
