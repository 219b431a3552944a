#!/usr/bin/env bash
# Run the test suite once per Keras backend (keras fixes its backend at import, so each pass is
# its own pytest process). Extra arguments go to pytest. Exits non-zero if any pass fails.
set -u
cd "$(dirname "$0")/.."
status=0
for backend in ${L2M_TEST_BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend python -m pytest tests "$@" || status=1
done
exit $status
