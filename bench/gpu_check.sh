#!/usr/bin/env bash
# GPU check: kdnmt on CUDA agrees with the CPU, and trains. Short (a few minutes on one GPU)
# and self-contained: the demo slice (data/demo/de-en) and the bundled teacher
# (data/demo/teacher), nothing big is built. From a checkout with .venv:
#
#   bench/gpu_check.sh [LINES]         # LINES training sentences to decode (default 3000)
#
# 1. generate on cpu and cuda in float32 (--quantization float32 --compute-type float32):
#    the same pseudo-targets (GPU_CHECK_MAX_DIFF lines may differ, default 0);
# 2. eval on the test slice (1,000 pairs, beam 5): cuda float16 BLEU within GPU_CHECK_BLEU_TOL
#    (default 0.3) of cpu float32, and cuda's default compute type for the record;
# 3. soft targets (top-8) on cuda and cpu: the same best token at >= 99.9% of the positions;
# 4. distill --device cuda, 100 updates each, for word (cache) and seq, in float32 and in fp16
#    through OpenNMT-py's own option (onmt: {model_dtype: fp16}; OpenNMT-py 3.5.1 has no bf16);
# and prints tokens/s of each, with the machine (CPU, GPU, CTranslate2, torch). It also times,
# for the record (not a check), `kdnmt generate` int8 on every CPU core against a bare
# CTranslate2 translate_iterable loop with as many replicas (target >= 0.9x): GPU machines have
# many cores, where draining CTranslate2 between calls would show.
#
# Exit codes: 0 every check passed; 1 a check disagreed (named in the output); 2 a command
# failed or the checkout is not set up; 3 no GPU visible to CTranslate2 (nothing checked);
# 4 the decoding checks passed but torch sees no GPU (a CPU build of torch): soft targets and
# distill --device cuda were not checked. GPU_CHECK_KEEP=1 keeps the work directory.
#
# GPU_CHECK_SIMULATE_ON_CPU=1 runs every step with cpu in place of cuda (float32 in place of
# float16, no fp16 training): it checks this script, not a GPU (tests/integration/
# test_gpu_check_script.py runs it so, with GPU_CHECK_STEPS and GPU_CHECK_TEST_LINES small).
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ] || [ ! -x .venv/bin/kdnmt ]; then
    echo "gpu_check: no .venv with kdnmt in $(pwd) (run make install)"; exit 2
fi
LINES=${1:-3000}
MAX_DIFF=${GPU_CHECK_MAX_DIFF:-0}
BLEU_TOL=${GPU_CHECK_BLEU_TOL:-0.3}
STEPS=${GPU_CHECK_STEPS:-100}
TEST_LINES=${GPU_CHECK_TEST_LINES:-1000}
START=$SECONDS
DEV=cuda HALF=float16
if [ "${GPU_CHECK_SIMULATE_ON_CPU:-0}" = 1 ]; then
    DEV=cpu HALF=float32
    echo "gpu_check: SIMULATED on the CPU (cpu in place of cuda): this checks the script, not a GPU"
fi

CT2_GPUS=$($PY -c "from kdnmt.devices import ct2_gpu_count; print(ct2_gpu_count())") || exit 2
[ "$DEV" = cpu ] && CT2_GPUS="(simulated)"
if [ "$CT2_GPUS" = "0" ]; then
    echo "gpu_check: no GPU visible to CTranslate2 (no CUDA device, or a driver older than its" \
         "CUDA runtime): nothing checked; run this on a machine with a GPU"
    exit 3
fi
TORCH_GPUS=$($PY -c "from kdnmt.devices import torch_gpu_count; print(torch_gpu_count())") \
    || exit 2
[ "$DEV" = cpu ] && TORCH_GPUS="(simulated)"

W=$(mktemp -d "${TMPDIR:-/tmp}/kdnmt-gpu-check-XXXXXX")
if [ "${GPU_CHECK_KEEP:-0}" = 1 ]; then echo "work directory: $W"; else trap 'rm -rf "$W"' EXIT; fi
LOG="$W/commands.log"
FAILED=()

kd() {  # one kdnmt command, quietly; its output is shown if it fails
    echo "+ kdnmt $*" >>"$LOG"
    if ! .venv/bin/kdnmt "$@" >>"$LOG" 2>&1; then
        { echo "gpu_check: kdnmt $* failed:"; tail -n 30 "$LOG"; } >&2; exit 2
    fi
}
timed() {  # seconds a kdnmt command took, on stdout
    local t0=$SECONDS; kd "$@"; echo $((SECONDS - t0))
}
fail() { echo "FAILED: $*"; FAILED+=("$*"); }

$PY - <<'EOF' || exit 2
import sys
sys.path.insert(0, "bench")
from _common import machine_header
print(machine_header())
import shutil, subprocess
smi = shutil.which("nvidia-smi")
names = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total",
                        "--format=csv,noheader"], capture_output=True, text=True) if smi else None
print("GPUs:", "; ".join(names.stdout.split("\n")).strip("; ") if names and names.returncode == 0
      else "(nvidia-smi not available)")
EOF
echo "CTranslate2 sees $CT2_GPUS GPU(s), torch $TORCH_GPUS"

# -- data: LINES training pairs, 200 validation pairs, the 1,000 test pairs of the demo slice
for lang in de en; do
    xzcat "data/demo/de-en/train.$lang.xz" | head -n "$LINES" >"$W/train.$lang"
    xzcat "data/demo/de-en/valid.$lang.xz" | head -n 200 >"$W/valid.$lang"
    xzcat "data/demo/de-en/test.$lang.xz" | head -n "$TEST_LINES" >"$W/test.$lang"
done
kd prepare --run "$W/cpu" --src de --tgt en --train "$W/train" --valid "$W/valid" \
    --test "$W/test" --teacher-checkpoint data/demo/teacher/teacher.pt \
    --teacher-spm data/demo/teacher/spm.model
cp -r "$W/cpu" "$W/gpu"
cp -r "$W/cpu" "$W/cores"
F32=(--quantization float32 --compute-type float32)

# -- 0. for the record: kdnmt generate int8 against a bare loop, every CPU core, interleaved
# (every core: KDNMT_THREADS unset, except when simulated, where the tests' one core is kept)
CORES=(env -u KDNMT_THREADS)
[ "$DEV" = cpu ] && CORES=(env)
"${CORES[@]}" "$PY" - "$W/cores" <<'EOF' || exit 2
import statistics, sys, time
sys.path.insert(0, ".")
from pathlib import Path
import ctranslate2
from kdnmt.teacher.generate import GenerateOptions, generate
from kdnmt.models import ct2_model
from kdnmt.rundir import RunDir
from kdnmt.translation import default_threads
run = Path(sys.argv[1])
model = ct2_model(RunDir(run), "teacher", "int8")
sources = [l.split() for l in (run / "data/train.sp.de").read_text().splitlines()]
replicas, ratios = default_threads()[0], []
for _ in range(2):
    start = time.perf_counter()
    translator = ctranslate2.Translator(str(model), inter_threads=replicas, intra_threads=1)
    results = list(translator.translate_iterable(iter(sources), max_batch_size=2048,
                                                 batch_type="tokens", beam_size=5,
                                                 max_decoding_length=150))
    bare = sum(len(r.hypotheses[0]) for r in results) / (time.perf_counter() - start)
    translator.unload_model()
    start = time.perf_counter()
    generate(GenerateOptions(run=run, force=True))
    pseudo = (run / "generated/teacher/train.sp.en").read_text().split()
    ratios.append(len(pseudo) / (time.perf_counter() - start) / bare)
ratio = statistics.median(ratios)
print(f"CPU, {replicas} replicas: kdnmt generate int8 / bare CTranslate2 = {ratio:.2f} "
      f"(target >= 0.9: {'met' if ratio >= 0.9 else 'missed'}; for the record, not a check)")
EOF

# -- 1. pseudo-targets, float32 on both
cpu_s=$(timed generate --run "$W/cpu" "${F32[@]}" --device cpu) || exit 2
gpu_s=$(timed generate --run "$W/gpu" "${F32[@]}" --device "$DEV") || exit 2
read -r lines differ tokens <<<"$($PY - "$W" <<'EOF'
import sys
w = sys.argv[1]
a = open(f"{w}/cpu/generated/teacher/train.sp.en", encoding="utf-8").read().splitlines()
b = open(f"{w}/gpu/generated/teacher/train.sp.en", encoding="utf-8").read().splitlines()
print(len(a), sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b)), sum(len(x.split()) for x in a))
EOF
)"
echo "generate float32: $lines pseudo-targets, $differ differ between cpu and cuda" \
     "(allowed: $MAX_DIFF); cpu $((tokens / (cpu_s > 0 ? cpu_s : 1))) tok/s ($cpu_s s)," \
     "cuda $((tokens / (gpu_s > 0 ? gpu_s : 1))) tok/s ($gpu_s s), whole commands"
[ "$differ" -le "$MAX_DIFF" ] || fail "float32 pseudo-targets: $differ of $lines lines differ"

# -- 2. BLEU on the test slice: cuda float16 against cpu float32; cuda's default for the record
EVAL=(eval --models teacher --beam 5 --no-teacher-forced)
kd "${EVAL[@]}" --run "$W/cpu" "${F32[@]}" --device cpu
kd "${EVAL[@]}" --run "$W/gpu" --quantization float32 --compute-type "$HALF" --device "$DEV"
kd "${EVAL[@]}" --run "$W/gpu" --device "$DEV"
$PY - "$W" "$BLEU_TOL" "$HALF" <<'EOF' || fail "float16 BLEU differs from float32 by more than $BLEU_TOL"
import json, sys
w, tol, half = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = [r for run in ("cpu", "gpu")
        for r in json.load(open(f"{w}/{run}/reports/eval.json"))["results"]]
for r in rows:
    print(f"eval {r['device']} {r['quantization']} -> {r['ctranslate2_compute_type']}: BLEU "
          f"{r['bleu']}, {r['source_tokens_per_second']:,.0f} src tok/s, "
          f"{r['tokens_per_second']:,.0f} out tok/s")
cpu32 = rows[0]
gpu16 = next(r for r in rows[1:] if r["compute_type"] == half)
delta = gpu16["bleu"] - cpu32["bleu"]
print(f"{half} on {gpu16['device']} - float32 on cpu: {delta:+.2f} BLEU (allowed: +-{tol})")
sys.exit(0 if abs(delta) <= tol else 1)
EOF

if [ "$TORCH_GPUS" = "0" ]; then
    echo "torch sees no GPU (a CPU build of torch?): soft targets and distill --device cuda" \
         "not checked"
    echo "done in $((SECONDS - START)) s"
    [ ${#FAILED[@]} -eq 0 ] || { printf 'FAILED: %s\n' "${FAILED[@]}"; exit 1; }
    exit 4
fi

# -- 3. soft targets: the same best token on both devices (decoding is done: same settings)
cpu_s=$(timed generate --run "$W/cpu" "${F32[@]}" --device cpu --soft-targets 8) || exit 2
gpu_s=$(timed generate --run "$W/gpu" "${F32[@]}" --device "$DEV" --soft-targets 8) || exit 2
$PY - "$W" "$cpu_s" "$gpu_s" <<'EOF' || fail "soft targets: best tokens differ at > 0.1% of positions"
import sys
sys.path.insert(0, ".")
import numpy as np
from kdnmt.teacher.store import SoftTargetStore
w, cpu_s, gpu_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a = SoftTargetStore.open(f"{w}/cpu/generated/teacher/soft-references", verify=False)
b = SoftTargetStore.open(f"{w}/gpu/generated/teacher/soft-references", verify=False)
same = total = 0
gap = 0.0
for i in range(a.num_lines):
    (ia, la), (ib, lb) = a[i], b[i]
    same += int((ia[:, 0] == ib[:, 0]).sum())
    total += ia.shape[0]
    gap = max(gap, float(np.abs(la[:, 0].astype(np.float32) - lb[:, 0].astype(np.float32)).max()))
print(f"soft targets: best token equal at {same}/{total} positions ({same / total:.4%}), largest "
      f"|log p| gap of the best token {gap:.4f}; whole commands cpu {cpu_s} s, cuda {gpu_s} s "
      f"({total / max(gpu_s, 1):,.0f} positions/s on the GPU)")
sys.exit(0 if same >= 0.999 * total else 1)
EOF

# -- 4. distill on the GPU, 100 updates each; fp16 through OpenNMT-py's own option
printf 'onmt:\n  model_dtype: fp16\n' >"$W/fp16.yaml"
SPECS=("word:--method word --teacher-mode cache" "seq:--method seq")
[ "$DEV" = cuda ] && SPECS+=("seq-fp16:--method seq --config $W/fp16.yaml"
                             "word-fp16:--method word --teacher-mode cache --config $W/fp16.yaml")
for spec in "${SPECS[@]}"; do
    name=${spec%%:*}
    # shellcheck disable=SC2086
    kd distill --run "$W/gpu" --name "$name" ${spec#*:} --preset tiny --steps "$STEPS" \
        --device "$DEV"
    $PY - "$W/gpu/models/$name/train.log" "$name" "$STEPS" "$DEV" <<'EOF' \
        || fail "distill $name: no finite loss at the last update"
import math, re, sys
steps = re.findall(r"Step (\d+)/\d+; loss ([\d.naif]+); .*?; (\d+) tok/s;", open(sys.argv[1]).read())
step, loss, rate = steps[-1]
rates = sorted(int(r) for _, _, r in steps[1:]) or [int(rate)]
print(f"distill {sys.argv[2]} --device {sys.argv[4]}: step {step}, loss {loss}, "
      f"{rates[len(rates) // 2]:,} target tok/s (median report)")
sys.exit(0 if math.isfinite(float(loss)) and int(step) == int(sys.argv[3]) else 1)
EOF
done

echo "done in $((SECONDS - START)) s"
if [ ${#FAILED[@]} -ne 0 ]; then printf 'FAILED: %s\n' "${FAILED[@]}"; exit 1; fi
echo "gpu_check: every check passed"
