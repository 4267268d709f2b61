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
# zoo.data.decode imports TorchCodec's decode_png, which the GPU machine's image may lack
# (nothing can be installed there). This bench's images are JPEGs, decoded by PIL; an
# adapter to torchvision's decode_png keeps the import (and any PNG) working.
if ! "$py" -c "import torchcodec.decoders" 2>/dev/null; then
  shim=$(mktemp -d)
  mkdir -p "$shim/torchcodec"
  : >"$shim/torchcodec/__init__.py"
  cat >"$shim/torchcodec/decoders.py" <<'PY'
import torch
from torchvision.io import ImageReadMode
from torchvision.io import decode_png as _decode_png


def decode_png(data, mode="RGB"):
    return _decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                       mode=ImageReadMode.RGB)
PY
  export PYTHONPATH="$PYTHONPATH:$shim"
  echo "bench/gpu.sh: torchcodec missing; PNGs decode through torchvision.io" >&2
fi
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm \
  --format=csv,noheader || true
exec "$py" bench/gpu.py "$@"
