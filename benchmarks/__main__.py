"""`make bench`: every benchmark in turn (each prints its own side-by-side ratios)."""

import subprocess
import sys

BENCHMARKS = ["benchmarks.pipeline_throughput", "benchmarks.recommend_latency"]

if __name__ == "__main__":
    failed = 0
    for module in BENCHMARKS:
        print(f"\n===== {module} =====", flush=True)
        failed |= subprocess.call([sys.executable, "-m", module, *sys.argv[1:]])
    sys.exit(failed)
