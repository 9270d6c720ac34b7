#!/usr/bin/env bash
# Every GPU check and figure robench still owes, in stages of under ten minutes each on one H100.
#
#   bash benchmarks/gpu_session.sh STAGE [OUTDIR]     STAGE: tests | corruptions | certify | attacks | all
#
# Run from the repository root on a CUDA machine where robench's dependencies import (the peers
# pyautoattack, foolbox, torchattacks, ART and imagecorruptions are optional: missing ones are
# skipped). Logs go to OUTDIR (default $OUT, else ./gpu_results), one file per measurement; paste
# the tables into docs/performance.md with the date and the GPU.
set -uo pipefail
stage=${1:-all}
out=${2:-${OUT:-gpu_results}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

run() {  # run NAME CMD...: tee the output to $out/NAME.log, keep going on failure
  local name=$1; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$out/$name.log"
  echo "=== $name: exit ${PIPESTATUS[0]}"
}

if [[ $stage == tests || $stage == all ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
  # --continue-on-collection-errors: a test module whose CPU-only reference package (netcal...) is
  # missing there must not stop the GPU tests of the other modules
  run gpu_tests "$py" -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors
fi
if [[ $stage == corruptions || $stage == all ]]; then
  run corruptions_32px "$py" benchmarks/bench_corruptions.py --device cuda --side 32 --n 2000 --table cifar10
  run corruptions_224px "$py" benchmarks/bench_corruptions.py --device cuda --side 224 --n 128
  run sweep_rng_cpu "$py" benchmarks/bench_corruptions.py --sweep --device cuda --model resnet18 --n 10000 --batch 1000 --rng cpu
  run sweep_rng_device "$py" benchmarks/bench_corruptions.py --sweep --device cuda --model resnet18 --n 10000 --batch 1000 --rng device
fi
if [[ $stage == certify || $stage == all ]]; then
  run certify_resnet18 "$py" benchmarks/bench_certify.py --device cuda --model resnet18 --images 8 --n 20000 --batch 4000 --fast --compile
  run certify_wrn "$py" benchmarks/bench_certify.py --device cuda --model wrn-28-10 --images 4 --n 10000 --batch 4000 --fast --compile
fi
if [[ $stage == attacks || $stage == all ]]; then
  run attacks_resnet18 "$py" benchmarks/bench_attacks.py --device cuda --model resnet18 --batch 256
  run attacks_wrn "$py" benchmarks/bench_attacks.py --device cuda --model wrn-28-10 --batch 256
fi
