#!/usr/bin/python3
"""Checks daemons' /metrics with Prometheus's own text-format parser.

    /usr/bin/python3 tests/dashboard/check_metrics.py URL [URL...] [--require URL=NAME[,NAME...]]

Each URL is a daemon's /metrics. Each is fetched and parsed with
prometheus_client.parser.text_string_to_metric_families (Debian's python3-prometheus-client;
hence /usr/bin/python3), and fails when:
  - it cannot be fetched, or the parser raises;
  - a family's name does not start with brume_;
  - a sample has no # TYPE line of its own (the parser makes it an untyped family);
  - a counter's name does not end in _total: its # TYPE line is read from the text, since the
    parser takes _total off a counter family's name and adds it to samples that lack it;
  - a histogram's series (a label set) lacks _bucket, _count or _sum, or its buckets are not
    cumulative, have no +Inf bucket, or their +Inf bucket differs from _count (a histogram with
    no series yet, only its # TYPE line, is fine);
  - a name given with --require URL=NAME,... is neither a family with samples nor a sample of
    that URL (a counter may be named with or without _total).
Prints one line per URL (families and samples, or what is wrong) and exits 1 if any URL failed.
"""
import argparse
import math
import sys
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


def check_histogram(family):
    """What is wrong with a histogram family: a list of sentences."""
    problems = []
    kinds = defaultdict(dict)  # label set without le -> {"bucket": [(le, value)], "count": v}
    for s in family.samples:
        suffix = s.name[len(family.name):]
        labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        if suffix == "_bucket" and "le" not in s.labels:
            problems.append(f"histogram sample {s.name} has no le label")
        elif suffix == "_bucket":
            kinds[labels].setdefault("bucket", []).append((float(s.labels["le"]), s.value))
        elif suffix in ("_count", "_sum"):
            kinds[labels][suffix[1:]] = s.value
    for labels, k in kinds.items():
        where = f"histogram {family.name}{{{','.join(f'{n}={v!r}' for n, v in labels)}}}"
        problems += [f"{where} has no _{kind}" for kind in ("bucket", "count", "sum")
                     if kind not in k]
        buckets = sorted(k.get("bucket", []))
        counts = [v for _, v in buckets]
        if any(b < a for a, b in zip(counts, counts[1:])):
            problems.append(f"{where}: buckets are not cumulative: {counts}")
        if buckets and not math.isinf(buckets[-1][0]):
            problems.append(f"{where}: no +Inf bucket")
        elif buckets and "count" in k and buckets[-1][1] != k["count"]:
            problems.append(f"{where}: +Inf bucket {buckets[-1][1]} != _count {k['count']}")
    return problems


def check(url, required):
    """Fetches and checks one URL: (families, samples, problems)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode("utf-8")
    except Exception as e:
        return 0, 0, [f"cannot fetch: {e}"]
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # whatever the parser raises
        return 0, 0, [f"the Prometheus parser refused it: {type(e).__name__}: {e}"]
    problems = [f"counter {line.split()[2]} does not end in _total"
                for line in text.splitlines()
                if line.startswith("# TYPE ") and line.split()[3:] == ["counter"]
                and not line.split()[2].endswith("_total")]
    names = set()
    for f in families:
        if f.samples:
            names.add(f.name)
            names.update(s.name for s in f.samples)
        if not f.name.startswith("brume_"):
            problems.append(f"family {f.name} lacks the brume_ prefix")
        if f.type in ("unknown", "untyped"):  # Metric calls untyped unknown
            problems.append(f"sample {f.name} has no # TYPE line of its own")
        elif f.type == "counter":
            problems += [f"counter sample {s.name} does not end in _total"
                         for s in f.samples if not s.name.endswith("_total")]
        elif f.type == "histogram":
            problems += check_histogram(f)
    problems += [f"{n} has no sample" for n in required if n not in names]
    return len(families), sum(len(f.samples) for f in families), problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("urls", nargs="+", metavar="URL", help="a daemon's /metrics")
    ap.add_argument("--require", action="append", default=[], metavar="URL=NAME[,NAME...]",
                    help="names that URL must have (repeatable)")
    args = ap.parse_args()
    required = defaultdict(list)
    for r in args.require:
        url, sep, names = r.partition("=")
        if not sep or url not in args.urls:
            ap.error(f"--require {r}: want URL=NAME[,NAME...] with URL one of those checked")
        required[url] += [n for n in names.split(",") if n]
    failed = False
    for url in args.urls:
        n_families, n_samples, problems = check(url, required[url])
        if problems:
            failed = True
            print(f"FAIL {url}: " + "; ".join(problems))
        else:
            print(f"ok {url}: {n_families} families, {n_samples} samples")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
