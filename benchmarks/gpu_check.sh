#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with an NVIDIA GPU and PyTorch already installed:
#   - the `gpu`-marked tests (CUDA analysis vs CPU, training on CUDA),
#   - the benchmark on the CUDA device (end-to-end realtime factor, model images/s), then with torch.compile.
# Usage: benchmarks/gpu_check.sh OUT_DIR [FACE_MODELS_DIR] [VIDEO...]
# Wheels in .whl/ (if any) are installed into /tmp/site first (for machines without a package index).
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [FACE_MODELS_DIR] [VIDEO...]}
models=${2:-../shared/models}
shift $(( $# >= 2 ? 2 : $# ))
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore DEEPFAKE_TEST_FACE_MODELS=$models
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
{ nvidia-smi; python3 -c 'import torch, timm, av, cv2; print("torch", torch.__version__, "timm", timm.__version__,
  "av", av.__version__, "cv2", cv2.__version__, torch.cuda.get_device_name())'; } > "$out/machine.txt" 2>&1
tail -3 "$out/machine.txt"
start=$SECONDS
timeout 170 python3 -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q -x > "$out/gpu_tests.log" 2>&1
echo "gpu tests: rc=$? in $((SECONDS - start)) s"; tail -3 "$out/gpu_tests.log"
start=$SECONDS
timeout 170 python3 benchmarks/bench_pipeline.py "$@" --generate 60s --device cuda --repeat 3 \
    --throughput 1,16,64,256 --face-models "$models" --json > "$out/bench_cuda.jsonl" 2> "$out/bench_cuda.err"
echo "benchmark (cuda): rc=$? in $((SECONDS - start)) s"
start=$SECONDS
timeout 120 python3 benchmarks/bench_pipeline.py "$@" --device cuda --repeat 3 --no-reference --compile \
    --throughput 64,256 --face-models "$models" --json > "$out/bench_cuda_compile.jsonl" 2> "$out/bench_cuda_compile.err"
echo "benchmark (cuda, torch.compile): rc=$? in $((SECONDS - start)) s"
python3 - "$out" <<'PY'
import json, sys, pathlib
for name in ("bench_cuda.jsonl", "bench_cuda_compile.jsonl"):
    for line in (pathlib.Path(sys.argv[1]) / name).read_text().splitlines():
        r = json.loads(line)
        if "model_images_per_s" in r:
            print(name, "images/s", r["precision"], r["model_images_per_s"])
        else:
            print(name, pathlib.Path(r["video"]).name, "total", r["total_s"], "rtf", r["realtime_factor"],
                  "speedup", r["speedup_vs_reference"], "maxdiff", r["max_abs_prob_diff"], "stages", r["stages"])
PY
