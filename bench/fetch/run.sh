#!/bin/sh
# The fetch benchmark: kpipe's fetch stage against curl + sha256sum and
# Python (requests streaming + hashlib, as Kaggle's CLI downloads; zipfile
# extractall, as its unzip) on the same local server, one after the other.
#   sh bench/fetch/run.sh [SIZE_MB] [N_CSV]   (defaults 1024 and 20000)
# Prints one line per tool and run, then the medians and ratios.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KPIPE=${KPIPE:-$ROOT/kpipe}
SIZE_MB=${1:-1024}
N_CSV=${2:-20000}
W=${BENCH_DIR:-/tmp/kpipe-bench-fetch}
REPS=${REPS:-3}
rm -rf "$W" && mkdir -p "$W/srv" "$W/runs"
cd "$W"

# the data: a large binary file and a zip of many small CSVs (Kaggle-like)
head -c $((SIZE_MB * 1048576)) /dev/urandom > srv/big.bin
/usr/bin/python3 - "$N_CSV" <<'PY'
import random, sys, zipfile
n = int(sys.argv[1]); rnd = random.Random(1)
with zipfile.ZipFile("srv/data.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for i in range(n):
        rows = "\n".join(",".join(f"{rnd.random():.6f}" for _ in range(8)) for _ in range(60))
        z.writestr(f"train/part{i:05d}.csv", "a,b,c,d,e,f,g,h\n" + rows + "\n")
PY
SHA_BIG=$(sha256sum srv/big.bin | cut -d' ' -f1)
SHA_ZIP=$(sha256sum srv/data.zip | cut -d' ' -f1)
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd srv && exec /usr/bin/python3 -m http.server --bind 127.0.0.1 "$PORT" >/dev/null 2>&1) &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
sleep 1
URL=http://127.0.0.1:$PORT

cat > fetch.yaml <<YAML
competition:
  name: bench
  train: data/train/part00000.csv
  test: data/train/part00001.csv
  id: a
  target: b
  task: regression
  metric: rmse
stages:
  data:
    type: fetch
    dir: data
    files:
      - $URL/big.bin sha256=$SHA_BIG
      - $URL/data.zip sha256=$SHA_ZIP
    provides: [train/part00000.csv, train/part00001.csv]
YAML

now() { date +%s.%N; }
t_kpipe() {
    rm -rf data runs; s=$(now)
    "$KPIPE" run fetch.yaml >/dev/null
    e=$(now); echo "$e - $s" | bc
}
t_curl() {
    rm -rf out && mkdir out; s=$(now)
    curl -sS -o out/big.bin "$URL/big.bin" & curl -sS -o out/data.zip "$URL/data.zip"; wait
    echo "$SHA_BIG  out/big.bin" | sha256sum -c --quiet
    echo "$SHA_ZIP  out/data.zip" | sha256sum -c --quiet
    (cd out && /usr/bin/python3 -c 'import zipfile; zipfile.ZipFile("data.zip").extractall(".")')
    e=$(now); echo "$e - $s" | bc
}
t_python() {
    rm -rf out && mkdir out; s=$(now)
    /usr/bin/python3 - "$URL" "$SHA_BIG" "$SHA_ZIP" <<'PY'
import hashlib, sys, zipfile, requests
from concurrent.futures import ThreadPoolExecutor
url, want = sys.argv[1], {"big.bin": sys.argv[2], "data.zip": sys.argv[3]}
def get(name):
    h = hashlib.sha256()
    with requests.get(f"{url}/{name}", stream=True) as r, open(f"out/{name}", "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            f.write(chunk); h.update(chunk)
    assert h.hexdigest() == want[name], name
with ThreadPoolExecutor(2) as ex:
    list(ex.map(get, want))
zipfile.ZipFile("out/data.zip").extractall("out")
PY
    e=$(now); echo "$e - $s" | bc
}

for rep in $(seq "$REPS"); do
    for tool in kpipe curl python; do
        echo "$tool $(t_$tool)" | tee -a times.txt
    done
done
/usr/bin/python3 - <<'PY'
import statistics
t = {}
for line in open("times.txt"):
    k, v = line.split(); t.setdefault(k, []).append(float(v))
m = {k: statistics.median(v) for k, v in t.items()}
for k in ("kpipe", "curl", "python"):
    print(f"{k:7s} median {m[k]:7.2f} s  runs {' '.join(f'{x:.2f}' for x in t[k])}")
print(f"ratio kpipe/curl+sha256sum+zipfile {m['kpipe']/m['curl']:.2f}")
print(f"ratio kpipe/python(requests+hashlib+zipfile) {m['kpipe']/m['python']:.2f}")
PY
