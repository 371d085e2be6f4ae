#!/usr/bin/env bash
# The GPU figures of BUILD.md in one prepared run, for a short session on a lent GPU: each
# stage runs under its own time limit and writes its JSON and log under $OUT, so a session cut
# short keeps what finished. Stages, most informative first:
#
#   triton   the search step compiles without XLA_FLAGS (jnas sets xla_gpu_options itself),
#            and whether this XLA still needs the option (JNAS_XLA_GPU_OPTIONS=0)
#   profile  benchmarks/profile_step.py: where the retraining step's time goes (8 cells)
#   train    the retraining step, float32 and bfloat16, batch 96 and 256, FLOP/s and % of peak
#   search   the first-order search step at batch 64, DARTS and GDAS
#
#   OUT=/tmp/gpu bash benchmarks/gpu_session.sh                    # all stages
#   OUT=/tmp/gpu STAGES="triton profile" bash benchmarks/gpu_session.sh
#   OUT=/tmp/gpu TINY=1 bash benchmarks/gpu_session.sh             # a dry run at tiny sizes (CPU)
#
# PEAK_F32 and PEAK_BF16 (TFLOP/s, the GPU's data sheet) add the percentage of peak; a
# PyTorch comparison is benchmarks/torch_reference.py [--autocast] on the same GPU.
#
# Cost: compilation dominates. Measured before: the first-order search step compiled in 155 s
# on an H100, the 20-cell retraining step in 117-119 s on an H200; so the triton stage takes
# about 6 minutes, profile 2, train 8-10 (four programs), search 5. A 15-minute device budget
# fits STAGES="triton profile" and then STAGES=train in a second call, not everything at once.
# TINY=1 on the 2-core CPU: about 8 minutes for all four stages.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_session_out}
STAGES=${STAGES:-triton profile train search}
mkdir -p "$OUT"
if [ -n "${TINY:-}" ]; then
  NET=(--layers=3 --C=4) BATCHES=4 SEARCH_BATCH=4 LIMIT=600
else
  NET=() BATCHES=96,256 SEARCH_BATCH=64 LIMIT=${LIMIT:-420}
fi
peak() { [ -n "${1:-}" ] && echo "--peak_tflops=$1"; }

run() {  # run NAME COMMAND...: one stage part, its output in $OUT/NAME.log, its status noted
  local name=$1
  shift
  local start=$SECONDS
  timeout "$LIMIT" "$@" >"$OUT/$name.log" 2>&1
  local status=$?
  echo "$name: exit $status after $((SECONDS - start)) s" | tee -a "$OUT/status.txt"
}

python -c "import jax; print(jax.__version__, jax.devices())" >"$OUT/devices.txt" 2>&1
for stage in $STAGES; do
  case $stage in
    triton)
      run search_gpu_options python benchmarks/search_step.py --order=1 --batch="$SEARCH_BATCH" \
        --steps=3 "${NET[@]}" --json="$OUT/search_gpu_options.json"
      JNAS_XLA_GPU_OPTIONS=0 run search_no_gpu_options python benchmarks/search_step.py \
        --order=1 --batch="$SEARCH_BATCH" --steps=3 "${NET[@]}" \
        --json="$OUT/search_no_gpu_options.json"
      ;;
    profile)
      run profile python benchmarks/profile_step.py --step=train --batch="${BATCHES%%,*}" \
        "${NET[@]}" --out="$OUT/profile"
      ;;
    train)
      layers=(--layers=20)
      [ -n "${TINY:-}" ] && layers=("${NET[@]}")
      run train_f32 python benchmarks/train_step.py --batch="$BATCHES" "${layers[@]}" --steps=5 \
        $(peak "${PEAK_F32:-}") --json="$OUT/train_f32.json"
      run train_bf16 python benchmarks/train_step.py --batch="$BATCHES" "${layers[@]}" --steps=5 \
        --compute_dtype=bfloat16 $(peak "${PEAK_BF16:-}") --json="$OUT/train_bf16.json"
      ;;
    search)
      run search_step python benchmarks/search_step.py --method=darts,gdas --order=1 \
        --batch="$SEARCH_BATCH" "${NET[@]}" $(peak "${PEAK_F32:-}") \
        --json="$OUT/search_step.json"
      ;;
    *)
      echo "unknown stage $stage (triton, profile, train, search)" | tee -a "$OUT/status.txt"
      ;;
  esac
done
