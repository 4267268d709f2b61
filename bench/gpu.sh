#!/usr/bin/env bash
# ResNet-50 FP16 training throughput on one GPU (see bench/gpu.py's docstring for what is
# measured): bare loop vs zoo, channels_last off/on, synthetic input and the real loader,
# model FLOP utilisation. Prepared for a session lent a GPU for at most 10 minutes:
#
#   bench/gpu.sh             # on the GPU machine: about 5 minutes, JSON in $OUT/gpu.json
#   bench/gpu.sh --smoke     # here, CPU, fp32, tiny: checks the script end to end
#                            # (bench/results/gpu_smoke.json)
#
# Runs from any directory; uses .venv/bin/python when there, else python3 (the GPU
# machine's, which holds torch, torchvision, timm and pyyaml). Without $OUT the JSON goes
# to bench/results/gpu.json. Extra arguments go to bench/gpu.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-}
if [[ -z $py ]]; then
  if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Without TorchCodec (the GPU machine's image) zoo.data.decode falls back to
# torchvision.io's decoders: the same libjpeg-turbo and libpng.
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm \
  --format=csv,noheader || true
# One bound for the whole script (a 15-minute window holds start-up, this and a rerun);
# bench/gpu.py stops starting parts after --budget-s and gives zoo.train subprocesses
# what is left as their timeout.
exec timeout 540 "$py" bench/gpu.py "$@"
