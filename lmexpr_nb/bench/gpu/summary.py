"""What `bench gpu` leaves in its folder: bench_gpu.json (JSON-safe, `clean`) and the one summary
table it prints at the end (summary.md; `--finish` writes both again, with NME, FD-dlib/KID-dlib and
identity). A CPU check of a GPU-only path shows as such, never as a GPU figure."""
from __future__ import annotations

import math

from lmexpr_nb.common.viz import markdown_table

JSON_NAME, SUMMARY_NAME, LOCK_NAME = "bench_gpu.json", "summary.md", ".bench_gpu.lock"
COLUMNS = ("section", "path", "status", "img/s", "batch-1 ms (median / p90)", "MFU % (datasheet / measured peak)",
           "peak GiB", "result")


def _f(v, fmt: str = ".1f") -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "" if (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)
    return "" if v is None else str(v)


def _nme(r: dict) -> str:
    mean = "n/a" if r.get("mean") is None else f"{r['mean']:.3f}"
    return f"{mean} (no face in {r['no_face']} of {r['n']})" if r.get("no_face") else mean


def _status(p: dict) -> str:
    return str(p.get("status", "?"))


def speedups(paths: dict) -> dict:
    """img/s of each measured training path over fp32 eager (TF32 off) and over fp32 eager with TF32."""
    def rate(name):
        v = (paths.get(name) or {}).get("images_per_second")
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None
    out = {}
    for base, tag in (("fp32_eager", "fp32"), ("fp32_tf32_eager", "fp32_tf32")):
        if rate(base):
            out.update({f"{p}_vs_{tag}": round(rate(p) / rate(base), 3) for p in paths
                        if p not in ("fp32_eager", base) and rate(p)})
    return out


def _precision(p: dict) -> str:
    q = p.get("precision")
    if not isinstance(q, dict):
        return ""
    on = {True: "on", False: "off"}
    return f"TF32 conv/matmul {on[q['tf32_convolutions']]}/{on[q['tf32_matmul']]}"


def _compile(p: dict) -> str:
    c = p.get("compile")
    if not isinstance(c, dict):
        return ""
    secs = c.get("compile_seconds", c.get("compile_seconds_latency_batch1"))
    txt = (f"compile {_f(secs)} s: {c['graphs']} graphs, {c['graph_breaks']} breaks, {c['recompiles']} recompiles"
           + (f" ({c['recompiles_while_timed']} while timed)" if c.get("recompiles_while_timed") else ""))
    return txt + (", FELL BACK TO EAGER" if c.get("fell_back_to_eager") else "")


def _result(*parts: str) -> str:
    return "; ".join(x for x in parts if x)


def _checked(p: dict) -> tuple[dict, str]:
    """(the figure to show, a note) of a path: a CPU check of a GPU-only path shows its check."""
    chk = p.get("cpu_check")
    if isinstance(chk, dict):
        return chk, f"CPU check ({chk.get('backend', '?')} backend, {_status(chk)}; not a GPU figure)"
    return p, ""


def _mfu(p: dict) -> str:
    a, b = p.get("mfu_of_bf16_peak"), p.get("mfu_of_measured_bf16_peak")
    if not isinstance(a, float) and not isinstance(b, float):
        return _f(a)
    return f"{_f(100 * a) if isinstance(a, float) else '?'} / {_f(100 * b) if isinstance(b, float) else '?'}"


def _device_row(dev: dict) -> dict:
    txt = f"{dev.get('type', '?')}, torch {dev.get('torch', '?')}"
    if dev.get("type") == "cuda":
        txt += (f", {dev.get('gpus')} GPU(s); bf16 dense peak {dev.get('peak_bf16_dense_tflops')} TFLOP/s "
                f"({dev.get('peak_source')}), measured {dev.get('measured_bf16_tflops')} TFLOP/s")
    return {"section": "device", "path": str(dev.get("name", "?")), "status": _status(dev), "result": txt}


def _speed_rows(res: dict) -> list[dict]:
    s = res.get("sections", {})
    rows = []
    tr = s.get("train_throughput", {})
    for name, path in (tr.get("paths") or {}).items():
        p, note = _checked(path)
        rows.append({"section": f"train (batch {tr.get('batch')})", "path": name, "status": _status(path),
                     "img/s": "" if note else _f(p.get("images_per_second")), "MFU % (datasheet / measured peak)":
                     "" if note else _mfu(p), "peak GiB": "" if note else _f(p.get("peak_memory_gib"), ".2f"),
                     "result": _result(note, f"{_f(p.get('achieved_tflops'), '.2f')} TFLOP/s" if "achieved_tflops" in p
                                       else "", _precision(p), _compile(p))})
    if "paths" not in tr:
        rows.append({"section": "train", "path": "(all)", "status": _status(tr)})
    if tr.get("speedups"):
        rows.append({"section": "train: speed-up", "path": "img/s over fp32 eager", "status": "ok",
                     "result": ", ".join(f"{k.replace('_vs_', ' vs ')} {v:.2f}x" for k, v in tr["speedups"].items())
                     + (f" (goal: {tr['goal']})" if tr.get("goal") else "")})
    inf = s.get("inference", {})
    for name, path in (inf.get("paths") or {}).items():
        p, note = _checked(path)
        lat, thr = p.get("latency_batch1") or {}, p.get("throughput") or {}
        err = p.get("rel_err_vs_fp32_throughput", p.get("rel_err_vs_fp32_latency"))
        rows.append({"section": f"inference (batch {inf.get('batch')})", "path": name, "status": _status(path),
                     "img/s": "" if note else _f(thr.get("images_per_second")),
                     "batch-1 ms (median / p90)": (f"{lat['median_ms']:.3f} / {lat['p90_ms']:.3f}" if lat and not note
                                                   else ""),
                     "peak GiB": "" if note else _f(p.get("peak_memory_gib"), ".2f"),
                     "result": _result(note, f"rel. error vs fp32 {err:.2e}" if isinstance(err, float) else "",
                                       _precision(p), _compile(p))})
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
    return rows


def _realism(q: dict) -> str:
    return ", ".join(f"{k} {_f(v['value'], '.3f')}" for k, v in q.items() if isinstance(v, dict) and "value" in v)


def _learning_rows(le: dict) -> list[dict]:
    rows = []
    curve = le.get("curve") or []
    res_txt = ""
    if curve:
        a, b = curve[0], curve[-1]
        res_txt = (f"{le.get('steps')} steps in {le.get('train_seconds')} s: SSIM {_f(a['ssim_wang'], '.3f')} -> "
                   f"{_f(b['ssim_wang'], '.3f')}, PSNR {_f(a['psnr'], '.2f')} -> {_f(b['psnr'], '.2f')} dB")
        if isinstance(b.get("sharpness"), float):
            res_txt += f", sharpness {_f(a.get('sharpness'), '.3f')} -> {_f(b['sharpness'], '.3f')}"
        if isinstance(b.get("landmark_nme"), float):
            res_txt += f", NME {_f(a.get('landmark_nme'), '.3f')} -> {_f(b['landmark_nme'], '.3f')}"
    rows.append({"section": "learning", "path": f"training ({le.get('dtype', '?')})", "status": _status(le),
                 "img/s": _f(le.get("images_per_second")), "peak GiB": _f(le.get("peak_memory_gib"), ".2f"),
                 "result": res_txt})
    fin = le.get("finished") or {}
    for m, q in (le.get("table5") or {}).items():
        nme = (fin.get("nme") or {}).get(m)
        later = (fin.get("realism") or {}).get(m) or {}
        txt = _result(f"PSNR {_f(q['psnr'], '.2f')} dB, SSIM (Wang) {_f(q['ssim_wang'], '.3f')}", _realism(q),
                      _realism(later) if later else "FD-dlib, KID-dlib: run --finish",
                      f"NME {_nme(nme)}" if nme else "NME: run --finish", f"N={q['n']}")
        rows.append({"section": "learning: Table 5", "path": m, "status": "ok", "result": txt})
    if fin.get("nme", {}).get("real target"):
        r = fin["nme"]["real target"]
        ceiling = _realism((fin.get("realism") or {}).get("real target") or {})
        rows.append({"section": "learning: Table 5", "path": "real target (detector floor)", "status": "ok",
                     "result": f"NME {_nme(r)}" + (f", {ceiling}" if ceiling else "")})
    for m, q in (fin.get("identity") or {}).items():
        rows.append({"section": "learning: identity", "path": m, "status": "ok",
                     "result": f"Rank-1 {_f(q['rank1'], '.1f')} %, TAR@FAR=1% {_f(q['tar_far_1'], '.1f')} %, "
                               f"{q['probes']} probes x {q['gallery']} gallery"})
    return rows


def summary_rows(res: dict) -> list[dict]:
    s = res.get("sections", {})
    return [_device_row(s.get("device", {})), *_speed_rows(res), *_learning_rows(s.get("learning", {}))]


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
