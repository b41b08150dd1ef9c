"""What `bench gpu` leaves in its folder: bench_gpu.json (JSON-safe, `clean`) and the one summary
table it prints at the end (summary.md; `--finish` writes both again, with NME and identity)."""
from __future__ import annotations

import math

from lmexpr_nb.common.viz import markdown_table

JSON_NAME, SUMMARY_NAME = "bench_gpu.json", "summary.md"
COLUMNS = ("section", "path", "status", "img/s", "batch-1 ms (median / p90)", "MFU (% bf16 peak)", "peak GiB",
           "result")


def _f(v, fmt: str = ".1f") -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "" if (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)
    return "" if v is None else str(v)


def _nme(r: dict) -> str:
    mean = "n/a" if r.get("mean") is None else f"{r['mean']:.3f}"
    return f"{mean} (no face in {r['no_face']} of {r['n']})" if r.get("no_face") else mean


def _status(p: dict) -> str:
    return str(p.get("status", "?"))


def summary_rows(res: dict) -> list[dict]:
    s = res.get("sections", {})
    rows = []
    dev = s.get("device", {})
    rows.append({"section": "device", "path": str(dev.get("name", "?")), "status": _status(dev),
                 "result": f"{dev.get('type', '?')}, torch {dev.get('torch', '?')}"
                           + (f", {dev.get('gpus')} GPU(s), bf16 dense peak {dev.get('peak_bf16_dense_tflops')} "
                              f"TFLOP/s ({dev.get('peak_source')})" if dev.get("type") == "cuda" else "")})
    tr = s.get("train_throughput", {})
    for name, p in (tr.get("paths") or {}).items():
        mfu = p.get("mfu_of_bf16_peak")
        rows.append({"section": f"train (batch {tr.get('batch')})", "path": name, "status": _status(p),
                     "img/s": _f(p.get("images_per_second")),
                     "MFU (% bf16 peak)": _f(100 * mfu) if isinstance(mfu, float) else _f(mfu),
                     "peak GiB": _f(p.get("peak_memory_gib"), ".2f"),
                     "result": (f"{_f(p.get('achieved_tflops'), '.2f')} TFLOP/s achieved" if "achieved_tflops" in p
                                else "")})
    if "paths" not in tr:
        rows.append({"section": "train", "path": "(all)", "status": _status(tr)})
    inf = s.get("inference", {})
    for name, p in (inf.get("paths") or {}).items():
        lat, thr = p.get("latency_batch1") or {}, p.get("throughput") or {}
        diff = p.get("max_abs_diff_vs_fp32_latency")
        rows.append({"section": f"inference (batch {inf.get('batch')})", "path": name, "status": _status(p),
                     "img/s": _f(thr.get("images_per_second")),
                     "batch-1 ms (median / p90)": (f"{lat['median_ms']:.3f} / {lat['p90_ms']:.3f}" if lat else ""),
                     "peak GiB": _f(p.get("peak_memory_gib"), ".2f"),
                     "result": f"max |diff| vs fp32 {diff:.4f}" if isinstance(diff, float) else ""})
    if "paths" not in inf:
        rows.append({"section": "inference", "path": "(all)", "status": _status(inf)})
    d = s.get("ddp", {})
    chk = d.get("cpu_gloo_check") or d
    mem = chk.get("peak_memory_gib_per_rank")
    rows.append({"section": "ddp", "path": f"{d.get('backend', chk.get('backend', '?'))} x{chk.get('world_size', '?')}",
                 "status": _status(d), "img/s": _f(chk.get("images_per_second_total")),
                 "peak GiB": _f(max(mem), ".2f") if isinstance(mem, list) and mem else _f(mem),
                 "result": ("" if "allreduce_correct" not in chk else
                            f"all_reduce {'ok' if chk['allreduce_correct'] else 'WRONG'}, weights "
                            f"{'identical' if chk.get('weights_identical_across_ranks') else 'DIFFER'} across ranks"
                            + (" (gloo on CPU: code path only)" if d is not chk else ""))})
    le = s.get("learning", {})
    curve = le.get("curve") or []
    res_txt = ""
    if curve:
        a, b = curve[0], curve[-1]
        res_txt = (f"{le.get('steps')} steps in {le.get('train_seconds')} s: SSIM {_f(a['ssim_wang'], '.3f')} -> "
                   f"{_f(b['ssim_wang'], '.3f')}, PSNR {_f(a['psnr'], '.2f')} -> {_f(b['psnr'], '.2f')} dB")
        if isinstance(b.get("landmark_nme"), float):
            res_txt += f", NME {_f(a.get('landmark_nme'), '.3f')} -> {_f(b['landmark_nme'], '.3f')}"
    rows.append({"section": "learning", "path": f"training ({le.get('dtype', '?')})", "status": _status(le),
                 "img/s": _f(le.get("images_per_second")), "peak GiB": _f(le.get("peak_memory_gib"), ".2f"),
                 "result": res_txt})
    fin = le.get("finished") or {}
    for m, q in (le.get("table5") or {}).items():
        nme = (fin.get("nme") or {}).get(m)
        txt = (f"PSNR {_f(q['psnr'], '.2f')} dB, SSIM (Wang) {_f(q['ssim_wang'], '.3f')}"
               + (f", NME {_nme(nme)}" if nme else ", NME: run --finish")
               + f", N={q['n']}")
        rows.append({"section": "learning: Table 5", "path": m, "status": "ok", "result": txt})
    if fin.get("nme", {}).get("real target"):
        r = fin["nme"]["real target"]
        rows.append({"section": "learning: Table 5", "path": "real target (detector floor)", "status": "ok",
                     "result": f"NME {_nme(r)}"})
    for m, q in (fin.get("identity") or {}).items():
        rows.append({"section": "learning: identity", "path": m, "status": "ok",
                     "result": f"Rank-1 {_f(q['rank1'], '.1f')} %, TAR@FAR=1% {_f(q['tar_far_1'], '.1f')} %, "
                               f"{q['probes']} probes x {q['gallery']} gallery"})
    return rows


def summary_markdown(res: dict) -> str:
    rows = res.get("summary") or summary_rows(res)
    head = (f"**bench gpu summary** ({res.get('config_name')} config, {res.get('data')}, "
            f"{res.get('seconds_total', '?')} s of a {res.get('minutes')}-minute budget"
            + ("; GPU figures: " + res["gpu_note"] if res.get("gpu_note") else "") + ")")
    return head + "\n\n" + markdown_table([{c: r.get(c, "") for c in COLUMNS} for r in rows], list(COLUMNS))


def clean(o):
    """JSON-safe copy: NaN / inf become None (strict JSON), numpy scalars plain numbers."""
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in list(o.items())}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        try:
            o = o.item()
        except (ValueError, TypeError):
            return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o if isinstance(o, (str, int, float, bool)) or o is None else str(o)
