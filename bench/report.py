"""Render bench/results/*.json as the markdown quoted in the README (python -m bench.report)."""

from __future__ import annotations

import json

from bench.common import RESULTS


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _scaling(title: str, r: dict, png: str) -> list[str]:
    """One row per method and pass, one column per length; a length not measured is "-", out of memory "OOM"."""
    lengths = sorted({x["tokens"] for x in r["rows"]})
    out = [title, "", "| method | pass | " + " | ".join(str(t) for t in lengths) + " |",
           "|---|---|" + "---|" * len(lengths)]
    for method, kind in dict.fromkeys((x["method"], x["pass"]) for x in r["rows"]):
        found = {x["tokens"]: x for x in r["rows"] if x["method"] == method and x["pass"] == kind}
        cells = ["-" if t not in found else "OOM" if found[t].get("out_of_memory")
                 else f"{found[t]['median_s']:.2f} s / {found[t]['peak_mb']:.0f} MB" for t in lengths]
        out.append(f"| {method} | {kind} | " + " | ".join(cells) + " |")
    return out + ["", "log-log slope of time against length (1.0 = linear): "
                  + ", ".join(f"{k} {v}" for k, v in r["loglog_slope"].items()), "",
                  f"![length scaling](bench/results/{png})", ""]


def _runtimes(r: dict) -> list[str]:
    """One row per runtime: in process on the test documents, then through `bentoml serve` at each concurrency."""
    levels = sorted({c for v in r["served"].values() if "load" in v for c in v["load"]}, key=int)
    out = [f"**Serving runtimes** of {r['champion']}: {r['test_docs']} test documents (mean {r['mean_chars']:.0f} "
           f"characters) in process; /classify through `bentoml serve` at concurrency {', '.join(levels)}. Share of "
           f"peak: the encoder's executed FLOP/s against the dense fp32 matmul's "
           f"({r['fp32_matmul_gflops_per_s']:.0f} GFLOP/s here).", "",
           "| runtime | docs/s in process | speed-up | macro-F1 | labels differing from torch fp32 | share of fp32 "
           "matmul peak | " + " | ".join(f"conc {c}: req/s, p50/p99 ms, 5xx" for c in levels) + " |",
           "|---|---|---|---|---|---|" + "---|" * len(levels)]
    for name, row in r["in_process"].items():
        if "docs_per_s" not in row:
            out.append(f"| {name} | {row.get('status', '')} |")
            continue
        served = r["served"].get(name, {}).get("load", {})
        cells = [f"{served[c]['throughput_rps']:.1f}, {served[c]['p50_ms']:.0f}/{served[c]['p99_ms']:.0f}, "
                 f"{served[c]['server_errors'] + served[c]['dropped']}" if c in served else "-" for c in levels]
        out.append(f"| {name} | {row['docs_per_s']:.1f} | {row['speedup']:.2f}x | {row['macro_f1']:.4f} | "
                   f"{row['labels_differing_from_torch_fp32']} | {100 * row['share_of_fp32_matmul_peak']:.0f}% | "
                   + " | ".join(cells) + " |")
    return [*out, "", "![serving runtimes](bench/results/runtimes.png)", ""]


def render() -> str:
    out = []
    if (r := _load("inference_vs_recipe")) is not None:
        out += ["**Inference against the usual recipe** (same encoder, same documents, CPU):", "",
                "| window | documents | recipe docs/s | longdoc docs/s | longdoc tokens/s | speed-up |",
                "|---|---|---|---|---|---|"]
        for key, v in r.items():
            if key.startswith("window_"):
                out.append(f"| {v['window']} | {v['documents']} | {v['recipe']['docs_per_s']:.2f} | "
                           f"{v['longdoc']['docs_per_s']:.2f} | {v['longdoc']['tokens_per_s']:.0f} | "
                           f"**{v['speedup']:.1f}x** |")
        out.append("")
    if (r := _load("hardware_efficiency")) is not None:
        out += [f"**Hardware efficiency**: dense fp32 matmul ({r['matmul']['n']}x{r['matmul']['n']}) "
                f"{r['matmul']['flops_per_s'] / 1e9:.1f} GFLOP/s; the encoder on longdoc's inference path "
                f"{r['encoder']['flops_per_s'] / 1e9:.1f} GFLOP/s executed = "
                f"**{100 * r['share_of_matmul_peak']:.0f}% of the measured matmul peak**.", ""]
    if (r := _load("length_scaling")) is not None:
        out += _scaling("**Cost against length** (CPU, fp32; seconds per document, median; peak MB above baseline):",
                        r, "length_scaling.png")
    if (r := _load("length_scaling_cuda")) is not None:
        gpu = r["machine"].get("gpu") or "GPU"
        out += _scaling(f"**Cost against length on {gpu}** ({r.get('precision', 'bf16 autocast')}; seconds per "
                        "document, median; peak MB allocated above the weights):", r, "length_scaling_cuda.png")
    if (r := _load("embedding_cache")) is not None:
        out += [f"**Embedding cache**: {len(r['aggregators'])} learned aggregators, frozen encoder, "
                f"{r['documents']} documents: {r['uncached']['total_seconds']:.0f} s without the cache, "
                f"{r['cached']['total_seconds']:.0f} s with it: **{r['speedup']:.1f}x**.", ""]
    if (r := _load("training_throughput")) is not None:
        out += [f"**Training throughput** ({r['steps']} steps of {r['batch_docs']} documents, CPU): "
                + ", ".join(f"{k} {v['tokens_per_s']:.0f} tokens/s" for k, v in r["variants"].items()) + ".", ""]
    if (r := _load("quantization")) is not None and "fp32" in r:
        out += [f"**int8 dynamic quantization** of {r['champion']} on {r['test_docs']} test documents: "
                f"{r['fp32']['docs_per_s']:.1f} -> {r['int8']['docs_per_s']:.1f} docs/s "
                f"({r['speedup']:.2f}x), macro-F1 {r['fp32']['macro_f1']:.4f} -> {r['int8']['macro_f1']:.4f}.", ""]
    if (r := _load("serving")) is not None and "recording" in r:
        for name in [n for n in ("recording", "not_recording", "int8") if n in r]:
            v = r[name]
            load = v["load"]
            latency = v["latency_2000_tokens_ms"]["median"]
            out.append(f"**Serving ({name})**: a ~2,000-token document in {latency:.0f} ms "
                       f"(median of {v['latency_2000_tokens_ms']['n']}); /classify_batch of {v['batch']['documents']} "
                       f"articles at {v['batch']['docs_per_s']:.1f} docs/s; load test {load['requests']} requests at "
                       f"concurrency {load['concurrency']}: {load['ok']} ok, {load['server_errors']} 5xx, "
                       f"{load['dropped']} dropped, p50/p95/p99 {load['p50_ms']:.0f}/{load['p95_ms']:.0f}/"
                       f"{load['p99_ms']:.0f} ms, {load['throughput_rps']:.1f} req/s.")
        if "monitoring_overhead" in r:
            o = r["monitoring_overhead"]
            out.append(f"**Recording every document for monitoring** costs p50 x{o['single_p50_ms']['ratio']:.3f} on "
                       f"one document ({o['single_p50_ms']['on']:.1f} against {o['single_p50_ms']['off']:.1f} ms) and "
                       f"x{o['load_p50_ms']['ratio']:.3f} under load ({o['load_p50_ms']['on']:.0f} against "
                       f"{o['load_p50_ms']['off']:.0f} ms).")
        out.append("")
    if (r := _load("runtimes")) is not None and "in_process" in r:
        out += _runtimes(r)
    if (r := _load("summary")) is not None:
        out += [f"Sections took {r['section_seconds']} seconds; GPU: {r['gpu']}. Machine: "
                f"{r['machine']['processor']}, {r['machine']['cpus']} CPUs, torch {r['machine']['versions']['torch']}."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render())
