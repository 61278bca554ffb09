#!/bin/bash
# The one GPU session behind the GPU rows of docs/benchmarks.md (no TensorFlow on that
# machine: the Keras, namex and optree wheels travel in .whl/, see docs/benchmarks.md).
#   bash benchmarks/device_run.sh OUT_DIR
out=${1:-/tmp/bench_out}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm --format=csv
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
KERAS_BACKEND=jax timeout "${JAX_SECONDS:-330}" python3 benchmarks/bench_devices.py \
    --repeats 1 --json "$out/jax.json" 2>&1 | grep -v Warning | tee "$out/jax.log"
KERAS_BACKEND=torch timeout "${TORCH_SECONDS:-150}" python3 benchmarks/bench_devices.py \
    --repeats 1 --precisions float32 --json "$out/torch.json" 2>&1 | grep -v Warning | tee "$out/torch.log"
