#!/usr/bin/env bash
# One call on the borrowed GPU machine (JAX and PyTorch there, no TensorFlow, no internet):
# train several demo-model candidates side by side for a fixed wall time, then pack each run
# (EMA bundle, sample grid, score history) into $OUT. Keras and its two missing pure-python
# dependencies travel as wheels in .whl/.
#   usage: bash tools/gpu_demo_sweep.sh SECONDS
set -u
SECONDS_BUDGET=${1:-380}
# Scratch space of this call only: a fixed name in the shared /tmp could be another user's.
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/sweep_out}
mkdir -p "$OUT"
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl || exit 1
  export PYTHONPATH="$WORK/site"
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi -L 2>/dev/null
export KERAS_BACKEND=jax
if ! timeout 240 python3 tools/train_in_memory.py --preset tiny_32 --num-train 500 \
    --seconds 1 --report-every 100 --out "$WORK/smoke" > "$WORK/smoke.log" 2>&1; then
  tail -30 "$WORK/smoke.log"; echo "JAX smoke run failed: falling back to torch"
  export KERAS_BACKEND=torch
fi
python3 -c "import keras, jax; print('keras', keras.__version__, keras.backend.backend(), jax.devices())"
python3 tools/train_in_memory.py --prepare-only --preset mini_64 || exit 1
run() {  # name, then train_in_memory options
  local name=$1; shift
  timeout $((SECONDS_BUDGET + 110)) python3 tools/train_in_memory.py --seconds "$SECONDS_BUDGET" --out "$WORK/runs/$name" "$@" \
    > "$WORK/runs/$name.log" 2>&1
}
mkdir -p "$WORK/runs"
run smiling_mini --attrs smiling --preset mini_64 &
run smiling_mini_lr3e-4 --attrs smiling --preset mini_64 --lr 3e-4 &
run smiling_mini_nodetach --attrs smiling --preset mini_64 --no-detach-style-target &
run smiling_male_mini --attrs smiling,male --preset mini_64 &
run smiling_small --attrs smiling --preset small_64 &
(sleep 200; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv) &
wait
for log in "$WORK"/runs/*.log; do
  name=$(basename "$log" .log)
  grep "^\[$name\]" "$log" | tail -3 | cut -c1-600
  grep -q "done" "$log" || tail -20 "$log"
  tar -C "$WORK/runs" -cf "$OUT/$name.tar" "$name" "$name.log"
done
