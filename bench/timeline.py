"""Where the slow requests of a load run fall in time, from oha's per-request CSV (`--output-format csv`).

Prints the latency percentiles; a strip chart of 1 ms bins by the slowest request started in each (`#` over the
threshold, `+` over 70 % of it, `.` under); and the stretches of consecutive slow bins: how many, how long, and
how far apart their starts are. Stretches at a steady spacing are periodic work on the proxy's core.

    python3 bench/timeline.py [--slow-ms 1] [--chart-ms 300] requests.csv
"""

import argparse
import csv
import statistics
import sys


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="oha's per-request CSV")
    ap.add_argument("--slow-ms", type=float, default=1.0, help="a request slower than this is slow")
    ap.add_argument("--chart-ms", type=int, default=300, help="how many 1 ms bins the strip chart shows")
    a = ap.parse_args()

    requests = []
    with open(a.csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("status") != "200":
                continue
            requests.append((float(row["request-start"]), float(row["request-duration"]) * 1e3))
    if not requests:
        sys.exit(f"no successful requests in {a.csv}")
    requests.sort()
    latencies = sorted(ms for _, ms in requests)
    span = requests[-1][0] - requests[0][0]
    print(f"{len(requests)} requests over {span:.1f} s ({len(requests) / max(span, 1e-9):,.0f}/s); latency ms: "
          + "  ".join(f"p{int(q * 100)} {percentile(latencies, q):.3f}" for q in (0.5, 0.9, 0.99))
          + f"  p99.9 {percentile(latencies, 0.999):.3f}")

    # The slowest request started in each 1 ms bin, skipping the first second (connections warming up).
    slowest = {}
    for start, ms in requests:
        b = int(start * 1000)
        slowest[b] = max(slowest.get(b, 0.0), ms)
    first = int(requests[0][0] * 1000) + 1000
    bins = [b for b in sorted(slowest) if b >= first] or sorted(slowest)
    chart = "".join(
        "#" if slowest.get(b, 0) > a.slow_ms else "+" if slowest.get(b, 0) > 0.7 * a.slow_ms else "."
        for b in range(bins[0], bins[0] + a.chart_ms)
    )
    print(f"slowest request per 1 ms bin, {a.chart_ms} ms from {bins[0] / 1000:.3f} s "
          f"(# over {a.slow_ms} ms, + over {0.7 * a.slow_ms:.2f} ms):")
    for i in range(0, len(chart), 100):
        print("  " + chart[i:i + 100])

    stretches = []
    for b in bins:
        if slowest[b] <= a.slow_ms:
            continue
        if stretches and b == stretches[-1][1] + 1:
            stretches[-1][1] = b
        else:
            stretches.append([b, b])
    slow_share = sum(1 for b in bins if slowest[b] > a.slow_ms) / len(bins)
    print(f"bins with a request over {a.slow_ms} ms: {slow_share:.1%}")
    if len(stretches) < 2:
        print(f"stretches: {len(stretches)}")
        return
    lengths = [end - start + 1 for start, end in stretches]
    gaps = [b[0] - a_[0] for a_, b in zip(stretches, stretches[1:])]
    print(f"stretches: {len(stretches)}, median length {statistics.median(lengths):.0f} ms, "
          f"median spacing {statistics.median(gaps):.0f} ms (quartiles "
          + " / ".join(f"{q:.0f}" for q in statistics.quantiles(gaps, n=4)) + " ms)")


if __name__ == "__main__":
    main()
