#!/bin/bash
# The prepared GPU check: run from the repository root on a machine with an NVIDIA GPU and a CUDA
# JAX (plus PyTorch for the speed baselines), after `pip install -e .`:
#
#   bash experiments/gpu_check.sh OUT_DIR [PHASE ...]    # env bench lm cli tests (default: all)
#
# Writes into OUT_DIR: env.txt (versions, GPU), bench_influence/results.json (PyTorch on the
# same GPU as the baseline), bench_lm_head/results.json (full size: V = 32,000), cli.log (the
# README's first command, on the GPU), tests.log (the suite with JAX on the GPU). Each phase has
# its own time limit, so one slow phase cannot take the others' results with it. BENCHMARKS.md
# ("On one GPU") reports what it printed.
set -u
OUT=${1:?usage: bash experiments/gpu_check.sh OUT_DIR [PHASE ...]}
shift
PHASES=${*:-env bench lm cli tests}
want() { [[ " $PHASES " == *" $1 "* ]]; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}

if want env; then
  { date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import sys, jax, flax, optax; print(sys.version.split()[0], 'jax', jax.__version__,
'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"
fi

if want bench; then
  echo "== bench_influence (PyTorch on the same GPU)"
  timeout 180 $PY experiments/bench_influence.py --repeats 9 --loop-repeats 1 \
      --chunk-sweep 256,1024,2048 --out "$OUT/bench_influence" 2>&1 | tail -n 25
fi

if want lm; then
  echo "== bench_lm_head (full size)"
  timeout 150 $PY experiments/bench_lm_head.py --repeats 3 --sweep 32000,128000,256000 \
      --out "$OUT/bench_lm_head" 2>&1 | tail -n 25
fi

if want cli; then
  echo "== README's first command on the GPU"
  rm -rf /tmp/gpu_check_digits
  ( time timeout 150 $PY -m imu_jax.lab.cli run --dataset digits --model mlp --forget class:3 \
      --methods retrain,ga,imu --seeds 0 --out /tmp/gpu_check_digits --no-progress ) \
      > "$OUT/cli.log" 2>&1
  tail -n 15 "$OUT/cli.log"
fi

if want tests; then
  echo "== the test suite, JAX on the GPU (8-device mesh tests skip on one GPU)"
  # conftest.py asks for 8 fake CPU devices only where these are unset; empty means JAX's
  # default platforms (the GPU first, and the CPU that host callbacks need), as on Colab.
  JAX_PLATFORMS= XLA_FLAGS= XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 timeout 240 \
      $PY -m pytest -q -n 8 -p no:cacheprovider tests imu_jax \
      --ignore=tests/test_notebooks.py > "$OUT/tests.log" 2>&1
  tail -n 40 "$OUT/tests.log"
fi
