#!/usr/bin/env bash
# Every GPU check and figure robench still owes, in one call that fits a lent GPU machine's budget.
#
#   bash benchmarks/gpu_session.sh [--budget SECONDS] [STEP ...]
#
# A session that is lent a GPU gets 15 minutes of device time in all, machine start-up included, and
# one command may run 10 minutes; so this script runs its steps in order of importance against one
# deadline (default --budget 480 s), gives each step at most its own cap and what is left, skips the
# steps that no longer fit, and says so. Steps (in the default order):
#
#   gpu_tests          the tests marked `gpu` (issues 3, 4, 6, 8: CUDA paths vs CPU / float64)
#   sweep_rng_device   the 15 x 5 x 10,000 CIFAR-10-C-style sweep, ResNet-18, draws on the GPU (issue 4)
#   certify_resnet18   smoothing samples/s vs the Cohen loop and bare forwards, ResNet-18 (issue 6)
#   certify_wrn        the same on WRN-28-10 (the yardstick's model)
#   sweep_rng_cpu      the sweep with draws on the CPU (the default; same images on every device)
#   corruptions_32px   generation throughput on CUDA, 32 px, CIFAR table
#   corruptions_224px  generation throughput on CUDA, 224 px, ImageNet table
#   attacks_resnet18   PGD / AutoAttack step throughput vs peers, ResNet-18
#   attacks_wrn        the same on WRN-28-10
#
# Naming steps runs only those, in the order given (for a second, warm call). Where .whl/ exists
# (bash benchmarks/gpu_wheels.sh, on a machine with PyPI), the missing packages are installed from it
# into /tmp/site first. Everything is written under $OUT (default ./gpu_results) as at most three
# files, within the device tool's 8-file return limit: summary.txt (one line a step: exit code,
# seconds, cap), session.log (every step's output in turn) and logs.tar.gz (one log a step).
# Device command:  run(carry=[".whl"], timeout_s=540, command="bash benchmarks/gpu_session.sh")
set -uo pipefail
cd "$(dirname "$0")/.."
budget=480
if [[ ${1:-} == --budget ]]; then budget=$2; shift 2; fi
out=${OUT:-gpu_results}
mkdir -p "$out"
logs=$(mktemp -d)
start=$SECONDS
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

if [[ -d .whl ]] && ! "$py" -c "import pydantic, mlxtend" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_session: wheel install failed" | tee "$out/summary.txt"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

declare -A cap cmd
step() { cap[$1]=$2; cmd[$1]=$3; }
# Only the modules that hold gpu tests are collected: the others import what the GPU machine lacks
# (netcal), and one collection error made the step exit 1 with every gpu test passed.
gpu_files=$(grep -rlE 'mark\.gpu|DEVICES\b' tests --include='test_*.py' | sort | tr '\n' ' ')
step gpu_tests 200 "$py -m pytest -v --tb=short -m gpu -p no:cacheprovider --continue-on-collection-errors $gpu_files"
step sweep_rng_device 80 "$py benchmarks/bench_corruptions.py --sweep --device cuda --model resnet18 --n 10000 --batch 1024 --rng device"
step certify_resnet18 75 "$py benchmarks/bench_certify.py --device cuda --model resnet18 --images 8 --n 20000 --batch 4000 --fast --compile"
step certify_wrn 90 "$py benchmarks/bench_certify.py --device cuda --model wrn-28-10 --images 4 --n 10000 --batch 4000 --fast --compile"
step sweep_rng_cpu 80 "$py benchmarks/bench_corruptions.py --sweep --device cuda --model resnet18 --n 10000 --batch 1024 --rng cpu"
step corruptions_32px 45 "$py benchmarks/bench_corruptions.py --device cuda --side 32 --n 2000 --table cifar10"
step corruptions_224px 45 "$py benchmarks/bench_corruptions.py --device cuda --side 224 --n 128"
step attacks_resnet18 60 "$py benchmarks/bench_attacks.py --device cuda --model resnet18 --batch 256"
step attacks_wrn 75 "$py benchmarks/bench_attacks.py --device cuda --model wrn-28-10 --batch 256"
order=(gpu_tests sweep_rng_device certify_resnet18 certify_wrn sweep_rng_cpu corruptions_32px corruptions_224px attacks_resnet18 attacks_wrn)
if (($#)); then order=("$@"); fi

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1
} | tee "$out/summary.txt"
for name in "${order[@]}"; do
  if [[ -z ${cmd[$name]:-} ]]; then
    echo "$name: unknown step (steps: ${!cmd[*]})" | tee -a "$out/summary.txt"
    continue
  fi
  left=$((budget - (SECONDS - start)))
  limit=$((left < cap[$name] ? left : cap[$name]))
  if ((limit < 20)); then
    echo "$name: skipped, ${left}s of the ${budget}s budget left" | tee -a "$out/summary.txt"
    continue
  fi
  echo "=== $name (cap ${limit}s): ${cmd[$name]}" | tee -a "$out/session.log"
  tick=$SECONDS
  timeout --kill-after=5 "$limit" ${cmd[$name]} >"$logs/$name.log" 2>&1
  rc=$?
  cat "$logs/$name.log" >>"$out/session.log"
  note=""
  ((rc == 124 || rc == 137)) && note=" (stopped at its cap)"
  echo "$name: exit $rc, $((SECONDS - tick))s of ${limit}s$note" | tee -a "$out/summary.txt"
done
tar -czf "$out/logs.tar.gz" -C "$logs" .
echo "total $((SECONDS - start))s of ${budget}s" | tee -a "$out/summary.txt"
