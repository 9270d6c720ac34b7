#!/usr/bin/env bash
# Fetch, on a machine with PyPI, the wheels that the lent GPU machine lacks, into .whl/ (git-ignored).
#
#   bash benchmarks/gpu_wheels.sh
#
# The GPU machine has no network and runs Python 3.12 with torch, numpy, scipy, scikit-image, timm,
# statsmodels, torchmetrics, opencv-python-headless, pyyaml, jinja2, tqdm and safetensors already
# (device tool's KINDS.md, 2026-11). What robench and its peer libraries need beyond that is pinned
# here to the versions this project is tested with; `--no-deps` because every dependency is either
# listed or already there. About 50 MB (pyautoattack ships its model files); the device tool's
# working-tree limit is 64 MiB, so nothing else large may travel in the same call.
# benchmarks/gpu_session.sh installs them there into /tmp/site when it finds .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl \
  pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
  mlxtend==0.25.0 pyautoattack==0.2.0 imagecorruptions==1.1.2 \
  foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3 \
  torchattacks==3.5.1 adversarial-robustness-toolbox==1.20.1
ls .whl
du -sh .whl
