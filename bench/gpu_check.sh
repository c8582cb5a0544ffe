#!/usr/bin/env bash
# Issue 18's GPU check and the GPU paths nothing else runs, in one go on a GPU machine with no
# package index (the workplace's `device`), from the repository root, with the kit that
# `python bench/gpu_kit.py` packs here (carry bench/runs/gpu-kit). Writes its logs and the
# benches' JSON lines to $OUT (default bench/runs/gpu-out). Each step has a time limit, and the
# issue's check comes first, so that the whole fits in one 10-minute call; every run of the
# speed bench is in its log as it ends, should its limit cut the table off.
#
#   bash bench/gpu_check.sh [repeats, default 1]
set -uo pipefail
KIT=bench/runs/gpu-kit
OUT=${OUT:-bench/runs/gpu-out}
REPEATS=${1:-1}
mkdir -p "$OUT" /tmp/site /tmp/flower-site
export PYTHONUNBUFFERED=1

# The project's dependencies first on the path; Flower's only in its own venv, before the
# machine's packages (its grpcio and protobuf must be the ones it was generated against).
tar -xJf "$KIT/project.tar.xz" -C /tmp/site || exit 1
tar -xJf "$KIT/flower.tar.xz" -C /tmp/flower-site || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 -m venv --without-pip --system-site-packages bench/runs/flower-venv || exit 1
site=$(bench/runs/flower-venv/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")
echo "import sys; sys.path[:0] = ['/tmp/flower-site']" > "$site/gpu_kit.pth"

step() {  # step NAME SECONDS COMMAND...: runs it for at most SECONDS, its output to
  local name=$1 limit=$2  # $OUT/NAME.log, and says how it ended (exit 124: out of time)
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $?"
  tail -n 25 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
step speed 330 python3 bench/bench_federated_speed.py --device cuda --repeats "$REPEATS" \
  --epochs 1 5
step throughput 90 python3 bench/bench_gpu_throughput.py
GPU_RUN=(paradigm=federated paradigm.rounds=3 paradigm.progress=false paths.output_root=/tmp/gpu-runs)
step federated_bf16 45 python3 cli.py "${GPU_RUN[@]}" trainer=bf16
step finetune_bf16 45 python3 cli.py trainer=bf16 trainer.max_epochs=2 paths.output_root=/tmp/gpu-runs
step federated_ddp 45 python3 cli.py "${GPU_RUN[@]}" trainer=ddp
step finetune_ddp 45 python3 cli.py trainer=ddp trainer.max_epochs=2 paths.output_root=/tmp/gpu-runs
cp bench/results/*.jsonl "$OUT/" 2>/dev/null
