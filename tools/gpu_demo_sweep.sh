#!/usr/bin/env bash
# One call on a borrowed GPU machine (JAX and PyTorch there, maybe no TensorFlow, no internet):
# train several demo-model candidates side by side with `l2m train --data synthetic_memory`
# (faces rendered into memory: no tf.data, no TensorFlow needed), then pack each run dir into
# $OUT. Keras and its two missing pure-python dependencies travel as wheels in .whl/.
#   usage: bash tools/gpu_demo_sweep.sh STEPS
set -u
STEPS=${1:-10000}
# Scratch space of this call only: a fixed name in the shared /tmp could be another user's.
WORK=$(mktemp -d)
OUT=${OUT:-$WORK/sweep_out}
mkdir -p "$OUT"
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl || exit 1
  export PYTHONPATH="$WORK/site"
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false L2M_DATA_DIR="$WORK/data"
nvidia-smi -L 2>/dev/null
l2m() { python3 -m cli.main "$@"; }  # the checkout's app, without installing it
export KERAS_BACKEND=jax
if ! timeout 300 python3 -m cli.main train --data synthetic_memory --preset tiny_32 \
    --num-examples 64 --steps 2 --run-dir "$WORK/smoke" > "$WORK/smoke.log" 2>&1; then
  tail -30 "$WORK/smoke.log"; echo "JAX smoke run failed: falling back to torch"
  export KERAS_BACKEND=torch
fi
run() {  # name, then `l2m train` options
  local name=$1; shift
  l2m train --data synthetic_memory --steps "$STEPS" --sample-every 1000 \
    --checkpoint-every 1000 --run-dir "$WORK/runs/$name" "$@" > "$WORK/runs/$name.log" 2>&1
}
mkdir -p "$WORK/runs"
# Render the faces once before the parallel runs read the cache.
l2m train --data synthetic_memory --preset mini_64 --steps 1 --run-dir "$WORK/prepare" \
  > "$WORK/prepare.log" 2>&1 || { tail -30 "$WORK/prepare.log"; exit 1; }
run smiling --attrs smiling --preset mini_64 --lr 3e-4 &
run smiling_male --attrs smiling,male --preset mini_64 --lr 3e-4 &
(sleep 200; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv) &
wait
for log in "$WORK"/runs/*.log; do
  name=$(basename "$log" .log)
  tail -c 1500 "$log"
  tar -C "$WORK/runs" -cf "$OUT/$name.tar" "$name" "$name.log"
done
