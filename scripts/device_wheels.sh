#!/usr/bin/env bash
# Wheels that bench/bench_gpu.py's Ray runner needs on a bare GPU image that has PyTorch,
# pyarrow, pandas, scikit-image, aiohttp ... but not Ray (Python 3.12, x86-64).
#
#   echo /.whl/ >> .git/info/exclude; bash scripts/device_wheels.sh .whl   # here (PyPI)
#
# Ray's wheel is about 79 MB, 32 MB of it Java jars that Python workers never load; they are
# cut out (RECORD rewritten to match): about 49 MB in all, so they travel with the working tree
# (the run's `carry: [".whl"]`) inside its 64 MiB. On the GPU machine:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 bench/bench_gpu.py --out "$OUT"
#
# Without these wheels the bench still runs there: its packing phase uses plain processes.
set -euo pipefail
out=${1:-.whl}
python=${PYTHON:-python3}
ray_version=${RAY_VERSION:-$("$python" -c 'import ray; print(ray.__version__)' 2>/dev/null || echo 2.60.0)}
platform=(--python-version 3.12 --implementation cp --only-binary=:all:
          --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux_2_28_x86_64)
mkdir -p "$out"
# Ray and what Ray core / Tune import that the image lacks (jsonschema's and pydantic's trees)
"$python" -m pip download -q --no-deps "${platform[@]}" -d "$out" \
    "ray==$ray_version" jsonschema referencing rpds-py jsonschema-specifications \
    pydantic pydantic-core annotated-types typing-inspection typing-extensions
"$python" - "$out" <<'EOF'
import base64, hashlib, pathlib, sys, zipfile

for wheel in pathlib.Path(sys.argv[1]).glob("ray-*.whl"):
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        dropped = {i.filename for i in src.infolist() if i.filename.startswith("ray/jars/")}
        for info in src.infolist():
            if info.filename in dropped:
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(l for l in lines if l.split(",")[0] not in dropped) + "\n").encode()
            dst.writestr(info, data)
    slim.replace(wheel)
    print(f"{wheel.name}: dropped {len(dropped)} Java files, {wheel.stat().st_size / 2**20:.0f} MiB")
EOF
du -sh "$out"
