"""Collects bench/gpu/run.sh's raw outputs into OUT.json and OUT.md.

usage: python3 bench/gpu/report.py --out bench/results/gpu-zo-step --smi NVIDIA_SMI.txt \
           MODEL:spillway-*.json MODEL:torch-*.json MODEL:stream-*.json zo2:zo2.txt [json:EARLIER-gpu-zo-step.json ...]
       python3 bench/gpu/report.py --out OUT --raw WORK_DIR [json:EARLIER.json ...]
           (every raw file run.sh left in WORK_DIR, the model read from the file name: for a call cut off
           before run.sh wrote its report)
(each raw JSON may have a sibling FILE.smi: peak nvidia-smi memory.used in MiB while it ran)
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

GiB = 2 ** 30
# ZO2's published peak GPU memory (ALGORITHMS.md §2: NVML, fp16 AMP, batch 1, sequence 2048, OPT), GB.
ZO2_MEMORY_GB = {"1.3b": 3.75, "6.7b": 4.99, "13b": 6.18, "30b": 8.86, "66b": 12.07, "175b": 18.04}
TRANSFER_TARGET = 0.85


def load(path):
    with open(path) as f:
        d = json.loads(f.read().strip().splitlines()[-1])
    smi = path + ".smi"
    if os.path.exists(smi):
        try:
            d["nvidiaSmiPeakMiB"] = int(open(smi).read().strip())
        except ValueError:
            pass
    return d


def zo2_parse(path):
    text = open(path, errors="replace").read()
    times = [float(x) for x in re.findall(r"Time cost after iteration \d+: ([0-9.]+) ms", text)]
    rc = re.findall(r"zo2 exit status (\d+)", text)
    res = {"exitStatus": int(rc[-1]) if rc else None, "tail": text.strip().splitlines()[-25:]}
    if times:
        timed = times[2:] if len(times) > 2 else times
        res.update({"stepsMs": times, "ms": {"median": statistics.median(timed), "min": min(timed), "max": max(timed)}})
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--smi")
    ap.add_argument("--raw", help="a run.sh WORK folder: take every raw output in it")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    if a.raw:
        for f in sorted(glob.glob(os.path.join(a.raw, "*.json"))):
            m = re.match(r"(?:spillway|torch|stream|zo2schedule)-([0-9a-z.]+?)(?:-|\.json$)", os.path.basename(f))
            if m:
                a.files.append(f"{m.group(1)}:{f}")
        if os.path.exists(os.path.join(a.raw, "zo2.txt")):
            a.files.append("zo2:" + os.path.join(a.raw, "zo2.txt"))
        if not a.smi and os.path.exists(os.path.join(a.raw, "nvidia-smi.txt")):
            a.smi = os.path.join(a.raw, "nvidia-smi.txt")
    machine = open(a.smi).read() if a.smi and os.path.exists(a.smi) else ""
    rows, raw, zo2 = [], {}, None
    for spec in a.files:
        model, path = spec.split(":", 1)
        if model == "json":  # an earlier report's JSON: merge its rows (several run.sh calls into one report)
            prev = json.load(open(path))
            rows += prev["rows"]
            for k, v in prev.get("meta", {}).items():
                raw.setdefault(k, []).extend(v)
            zo2 = zo2 if prev.get("zo2") is None else prev["zo2"]
            machine = machine or prev.get("machine", "")
            continue
        if model == "zo2":
            zo2 = zo2_parse(path)
            continue
        try:
            d = load(path)
        except (ValueError, IndexError, OSError) as e:  # empty or cut-off output (a process that died)
            print(f"skipping {path}: {e}", file=sys.stderr)
            continue
        raw.setdefault(model, []).append({k: v for k, v in d.items() if k != "runs"})
        for r in d["runs"]:
            r = dict(r)
            r["model"] = model
            if d["impl"] == "pytorch":
                r["peakBytes"] = r["peakAllocatedBytes"]
                r["peakNote"] = "torch.cuda.max_memory_allocated"
                r["torch"], r["transformers"] = d["torch"], d["transformers"]
            elif d["impl"] == "zo2-schedule":
                r["peakBytes"] = r["peakAllocatedBytes"]
                r["peakNote"] = "torch.cuda.max_memory_allocated (the process's NVML peak in smi)"
                r["torch"] = d["torch"]
            elif r.get("offload") in ("cpu", "ssd"):
                pk = r.get("peakProcessBytes")  # null where NVML gave no reading
                r["peakBytes"] = float("nan") if pk is None else pk
                r["peakNote"] = "NVML free-memory delta from process start (CUDA context and cuBLAS workspace included)"
            else:
                pk = r.get("peakDeviceBytes")
                r["peakBytes"] = float("nan") if pk is None else pk
                r["peakNote"] = "cudaMemGetInfo delta (incl. cuBLAS workspace, excl. CUDA context)"
            if d.get("calibration") is not None:
                r["calibration"] = d["calibration"]
            r["processNvidiaSmiPeakMiB"] = d.get("nvidiaSmiPeakMiB")
            r["tokensPerS"] = r["batch"] * r["seq"] / (r["ms"]["median"] / 1e3)
            rows.append(r)

    def is_streamed(r):
        return r.get("offload") in ("cpu", "ssd")

    def find(model, impl, B, prec=None, seq=None):
        for r in rows:
            if (r["model"] == model and r["impl"] == impl and r["batch"] == B and not is_streamed(r)
                    and (prec is None or r["precision"] == prec) and (seq is None or r["seq"] == seq)):
                return r
        return None

    ratios = []
    for r in rows:
        if r["impl"] != "spillway" or is_streamed(r):
            continue
        # Against PyTorch at the same precision: fp32 with fp32, TF32 with TF32 matmuls, bf16 GEMMs with bf16 autocast.
        for prec in (r.get("precision", "fp32"),):
            t = find(r["model"], "pytorch", r["batch"], prec)
            if t:
                ratios.append({"model": r["model"], "batch": r["batch"], "seq": r["seq"],
                               "spillway": f"spillway-{r.get('precision', 'fp32')}", "vs": f"pytorch-{prec}",
                               "timeRatio": r["ms"]["median"] / t["ms"]["median"],
                               "memoryRatio": r["peakBytes"] / t["peakBytes"] if t["peakBytes"] else float("nan"),
                               "loss0Spillway": r["loss0"], "loss0PyTorchFp32": t["loss0"],
                               "loss0RelDiff": abs(r["loss0"] - t["loss0"]) / abs(t["loss0"])})
    # Streamed rows: transfer efficiency (H2D floor / step), the §5 floor with the resident step at the
    # same shape and GEMM precision as the compute term, and the comparisons.
    streamed = []
    for r in rows:
        if r["impl"] != "spillway" or not is_streamed(r):
            continue
        x = {"model": r["model"], "batch": r["batch"], "seq": r["seq"], "offload": r["offload"], "masters": r["masters"],
             "updateOn": r.get("updateOn"), "precision": r["precision"], "stepMs": r["ms"]["median"],
             "peakBytes": r["peakBytes"], "h2dBytesPerStep": r.get("h2dBytesPerStep"),
             "d2hBytesPerStep": r.get("d2hBytesPerStep"), "h2dFloorMs": r.get("h2dFloorMs"),
             "floorMs": r.get("floorMs"), "transferEfficiency": r.get("transferEfficiency"),
             # The engine's uploads and write-backs share one copy queue (one CUDA stream), so with device-side
             # updates they run one after the other: this sum, not the max, is what the queue can reach.
             "serialFloorMs": (r["h2dFloorMs"] + (r.get("d2hFloorMs") or 0.0)) if r.get("h2dFloorMs") is not None else None}
        res = find(r["model"], "spillway", r["batch"], r["precision"], r["seq"])
        if res:
            x["residentMs"] = res["ms"]["median"]
            x["vsResident"] = r["ms"]["median"] / res["ms"]["median"]
            x["memoryVsResident"] = r["peakBytes"] / res["peakBytes"] if res["peakBytes"] else None
            if x["floorMs"] is not None:
                x["transferBound"] = x["floorMs"] > res["ms"]["median"]
                x["sec5FloorMs"] = max(x["floorMs"], res["ms"]["median"])
                x["sec5Efficiency"] = x["sec5FloorMs"] / r["ms"]["median"]
        for prec in ("fp32", "tf32"):
            t = find(r["model"], "pytorch", r["batch"], prec, r["seq"])
            if t:
                x[f"vsPyTorch{prec.upper()}"] = r["ms"]["median"] / t["ms"]["median"]
        if r["model"] in ZO2_MEMORY_GB:
            x["zo2MemoryGB"] = ZO2_MEMORY_GB[r["model"]]
            x["memoryVsZo2"] = r["peakBytes"] / 1e9 / ZO2_MEMORY_GB[r["model"]]
        streamed.append(x)
    # ZO2's schedule (re-implemented): each Spillway streamed row at its shape whose process peak (NVML, smi)
    # is no more than the schedule's, the step-time ratio against the 0.8x target.
    smi = lambda r: r.get("processNvidiaSmiPeakMiB")  # noqa: E731
    versus_zo2 = []
    for z in (r for r in rows if r["impl"] == "zo2-schedule"):
        for r in rows:
            if r["impl"] != "spillway" or not is_streamed(r) or (r["model"], r["batch"], r["seq"]) != (z["model"], z["batch"], z["seq"]):
                continue
            fits = None if smi(r) is None or smi(z) is None else smi(r) <= smi(z)
            versus_zo2.append({"model": z["model"], "batch": z["batch"], "seq": z["seq"], "masters": r["masters"], "precision": r["precision"],
                               "spillwayMs": r["ms"]["median"], "zo2ScheduleMs": z["ms"]["median"],
                               "timeRatio": r["ms"]["median"] / z["ms"]["median"], "spillwaySmiMiB": smi(r), "zo2ScheduleSmiMiB": smi(z),
                               "noMoreMemory": fits})
    out = {"machine": machine, "rows": rows, "ratios": ratios, "streamed": streamed, "versusZo2Schedule": versus_zo2, "zo2": zo2, "meta": raw}
    with open(a.out + ".json", "w") as f:
        json.dump(out, f, indent=1)

    resident = [r for r in rows if not is_streamed(r) and r["impl"] != "zo2-schedule"]
    counts = sorted({(sum(1 for x in r.get("steps", []) if not x.get("warmup")), sum(1 for x in r.get("steps", []) if x.get("warmup")))
                     for r in resident if r["impl"] == "spillway"}) or [(5, 2)]
    steps_text = " or ".join(f"{n} timed steps after {w} warm-up steps" for n, w in counts)
    L = ["# One MeZO step on the GPU: Spillway CUDA engine vs PyTorch MeZO (model resident) and in ZO2's regime (streamed)", "",
         "Tables generated by `bench/gpu/report.py` from `bench/gpu/run.sh` (see bench/gpu/README.md); the notes above them are written by hand from this run. Machine:", "", "```", machine.rstrip(), "```", "",
         "Step = one MeZO step (q = 1: two forwards of B x T tokens, perturbation, update); median (min-max) of",
         f"{steps_text} (Spillway). tokens/s = B x T / median step time. Peak GPU memory: PyTorch",
         "`torch.cuda.max_memory_allocated` over that configuration's steps; Spillway the NVML free-memory delta",
         "(addon.cudaDevices()) from before its engine existed to the lowest free figure after load / score / each",
         "step (run.sh runs one engine per process, so the CUDA context and cuBLAS workspace are included).",
         "(smi N) = nvidia-smi memory.used peak (GiB) of the whole process",
         "(context included; for PyTorch one process ran all its configurations of that model). Phase columns:",
         "Spillway's step `times` (host clock; the engine synchronizes only at the end of the head and of the",
         "update, so GPU work queued by noise/forward is mostly charged to head); PyTorch's perturb",
         "(3 x zo_perturb_parameters), forward (2 x loss, .item()) and update (zo_update), each synchronized.",
         "Spillway's GEMM precision is SPILLWAY_GEMM as the backend reported it: fp32 = cublasSgemm, default math;",
         "tf32 = cublasGemmEx, CUBLAS_COMPUTE_32F_FAST_TF32; bf16 = operands rounded to bf16 per call, cublasGemmEx,",
         "fp32 accumulation. Weights, activations, noise and updates are fp32 in every mode.",
         "",
         "| model | B x T | implementation | step ms median (min-max) | tokens/s | peak GPU memory | noise / perturb ms | forward ms | head ms | update ms |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    spillway_names = {"fp32": "Spillway CUDA, fp32 (cuBLAS sgemm, default math)",
                      "tf32": "Spillway CUDA, TF32 GEMMs (cublasGemmEx, FAST_TF32)",
                      "bf16": "Spillway CUDA, bf16 GEMM operands (cublasGemmEx, fp32 accumulate)"}
    prec_order = {"fp32": 0, "tf32": 1, "bf16": 2}
    torch_names = {"fp32": "fp32", "tf32": "TF32 matmuls", "bf16": "bf16 autocast"}
    for r in sorted((r for r in rows if not is_streamed(r) and r["impl"] != "zo2-schedule"),
                    key=lambda r: (r["model"], r["batch"], r["seq"], r["impl"] != "spillway", prec_order.get(r["precision"], 9))):
        p = r["phasesMedianMs"]
        name = (spillway_names.get(r["precision"], "Spillway CUDA, " + r["precision"]) if r["impl"] == "spillway"
                else f"PyTorch {r['torch']} + transformers {r['transformers']} ({r['attn']}), "
                     f"{torch_names.get(r['precision'], r['precision'])}")
        noise = p.get("noiseMs", p.get("perturbMs"))
        L.append(f"| OPT-{r['model']} | {r['batch']} x {r['seq']} | {name} | {r['ms']['median']:.1f} "
                 f"({r['ms']['min']:.1f}-{r['ms']['max']:.1f}) | {r['tokensPerS']:.0f} | {r['peakBytes'] / GiB:.2f} GiB"
                 f"{'' if r.get('processNvidiaSmiPeakMiB') is None else ' (smi ' + str(round(r['processNvidiaSmiPeakMiB'] / 1024, 2)) + ')'} | "
                 f"{noise:.1f} | {p.get('forwardMs', float('nan')):.1f} | "
                 f"{p['headMs']:.1f} | " if 'headMs' in p else
                 f"| OPT-{r['model']} | {r['batch']} x {r['seq']} | {name} | {r['ms']['median']:.1f} "
                 f"({r['ms']['min']:.1f}-{r['ms']['max']:.1f}) | {r['tokensPerS']:.0f} | {r['peakBytes'] / GiB:.2f} GiB"
                 f"{'' if r.get('processNvidiaSmiPeakMiB') is None else ' (smi ' + str(round(r['processNvidiaSmiPeakMiB'] / 1024, 2)) + ')'} | "
                 f"{noise:.1f} | {p.get('forwardMs', float('nan')):.1f} | (in forward) | ")
        L[-1] += f"{p['updateMs']:.1f} |"
    L += ["", "| model | B x T | Spillway / PyTorch | time ratio | memory ratio | loss at init: Spillway / PyTorch fp32 (rel diff) |",
          "|---|---|---|---|---|---|"]
    for x in ratios:
        L.append(f"| OPT-{x['model']} | {x['batch']} x {x['seq']} | {x.get('spillway', 'spillway-fp32')} vs {x['vs']} | {x['timeRatio']:.2f}x | "
                 f"{x['memoryRatio']:.2f}x | {x['loss0Spillway']:.6f} / {x['loss0PyTorchFp32']:.6f} ({x['loss0RelDiff']:.1e}) |")
    if streamed:
        L += streamed_section(rows, streamed, is_streamed)
    if versus_zo2:
        L += ["", "## Against ZO2's schedule (re-implemented in PyTorch: bench/gpu/zo2_schedule.py)", "",
              "ZO2 itself cannot run here (it pins transformers 4.51.3). zo2_schedule.py re-implements its offloaded step:",
              "three CUDA streams (upload, offload, compute) with the host waiting at every task as ZO2's do, each module's",
              "dual forward (the previous step's update, +eps, forward, -2eps, forward, +eps), layers kept in host memory in",
              "fp16 and widened after upload, forwards under autocast fp16. Not ZO2's code: a re-implementation of its schedule.",
              "Memory: each process's nvidia-smi peak (NVML, context included). Target: Spillway's step <= 0.8x at no more memory.", "",
              "| model | B x T | Spillway masters, GEMM | Spillway ms | ZO2 schedule ms | time ratio | Spillway / ZO2 schedule peak (GiB) | no more memory | <= 0.8x |",
              "|---|---|---|---|---|---|---|---|---|"]
        for x in sorted(versus_zo2, key=lambda x: (x["model"], x["batch"] * x["seq"], x["masters"])):
            mem = lambda v: "-" if v is None else f"{v / 1024:.2f}"  # noqa: E731
            L.append(f"| OPT-{x['model']} | {x['batch']} x {x['seq']} | {x['masters']}, {x['precision']} | {x['spillwayMs']:.1f} | "
                     f"{x['zo2ScheduleMs']:.1f} | {x['timeRatio']:.2f}x | {mem(x['spillwaySmiMiB'])} / {mem(x['zo2ScheduleSmiMiB'])} | "
                     f"{'?' if x['noMoreMemory'] is None else 'yes' if x['noMoreMemory'] else 'no'} | {'met' if x['timeRatio'] <= 0.8 else 'missed'} |")
    if zo2 is not None:
        L += ["", "ZO2 (exit status %s):" % zo2["exitStatus"], "", "```"] + zo2["tail"] + ["```"]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(L) + "\n")
    print("\n".join(L))


def gb(v):
    return None if v is None else v / 1e9


def fmt(v, f="{:.2f}", none="-"):
    return none if v is None else f.format(v)


def streamed_section(rows, streamed, is_streamed):
    cal = next((r["calibration"] for r in rows if is_streamed(r) and r["impl"] == "spillway" and r.get("calibration")), None)
    L = ["", "## Streamed (ZO2's regime)", "",
         "Every transformer block homed on the CPU (pinned; or the SSD where the offload column says so) and",
         "streamed through the GPU once per step; embeddings and head resident. Masters fp32 or bf16 (stochastic",
         "rounding of updates); update on device = ZO2's way (applied at the block's next visit, written back D2H);",
         "home = on host threads, nothing D2H. One engine per row group, shapes run in increasing B x T.",
         "Step: median of the timed steps (after warm-up). Peak GPU memory: NVML free-memory delta from the start of",
         "the process (CUDA context, cuBLAS workspace and every engine buffer included: what ZO2's NVML figures",
         "count), sampled after each step and every 20 ms during load, score and warm-up; (smi N) = nvidia-smi",
         "memory.used peak (GiB) sampled every 100 ms while the process ran (all its shapes).",
         "H2D / D2H: the engine's tier counters over the timed steps, per step. H2D floor = H2D bytes / calibrated",
         "H2D bandwidth" + (f" ({cal['h2dBytesPerS'] / 1e9:.2f} GB/s H2D, {cal['d2hBytesPerS'] / 1e9:.2f} GB/s D2H: "
                             f"`calibrate()`, {cal.get('backend')}, {'pinned' if cal.get('pinned') else 'pageable'} "
                             f"{cal.get('copyBytes', 0) / 2**20:.0f} MiB copies)" if cal and "h2dBytesPerS" in cal else
                             " (no calibration)") + ".",
         "Transfer efficiency = H2D floor / step time. Transfer-bound = max(H2D, D2H floor) above the resident",
         "Spillway step at the same shape and GEMM precision (the compute term); the 85% target applies there only.",
         "§5 efficiency = max(resident step, transfer floors) / streamed step (ALGORITHMS.md §5, T_floor / T_measured).",
         "H2D+D2H floor: the engine moves uploads and device-side-update write-backs on one copy queue (one CUDA",
         "stream), so they cannot overlap each other: with update on device this sum bounds the step from below, and",
         "a transfer efficiency above H2D floor / (H2D + D2H floors) (about 50% when every block is written back) needs a",
         "second copy queue.",
         "",
         "| model | B x T | offload, masters, update, GEMM | step ms median (min-max) | tokens/s | peak GPU memory | "
         "H2D GB/step | D2H GB/step | H2D floor ms | transfer efficiency | bound | 85% target | H2D+D2H floor ms (share of step) | "
         "§5 efficiency | vs resident Spillway (time, memory) | vs PyTorch resident fp32 / TF32 |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(x["model"], x["batch"], x["seq"], x["offload"], x["masters"], x["updateOn"], x["precision"]): x for x in streamed}
    for r in sorted((r for r in rows if is_streamed(r) and r["impl"] == "spillway"),
                    key=lambda r: (r["model"], r["offload"], r["masters"] != "fp32", r["masters"], r["precision"],
                                   r["batch"] * r["seq"], r["seq"])):
        x = by[(r["model"], r["batch"], r["seq"], r["offload"], r["masters"], r.get("updateOn"), r["precision"])]
        smi = r.get("processNvidiaSmiPeakMiB")
        eff = x.get("transferEfficiency")
        bound = {True: "transfer", False: "compute"}.get(x.get("transferBound"), "?")
        if x.get("transferBound") is False or eff is None:
            target = "-"
        elif x.get("transferBound"):
            target = "met" if eff >= TRANSFER_TARGET else "missed"
        else:  # no resident row at this shape: the compute term is unknown
            target = "met" if eff >= TRANSFER_TARGET else "? (no resident run at this shape)"
        ssd = (f" (SSD read {fmt(gb(r.get('ssdReadBytesPerStep')), '{:.3f}')}, written "
               f"{fmt(gb(r.get('ssdWriteBytesPerStep')), '{:.3f}')} GB/step; no SSD term in the floors)"
               if r["offload"] == "ssd" else "")
        L.append(f"| OPT-{r['model']} | {r['batch']} x {r['seq']} | {r['offload']}, {r['masters']}, {r.get('updateOn')}, "
                 f"{r['precision']}{ssd} | {r['ms']['median']:.1f} ({r['ms']['min']:.1f}-{r['ms']['max']:.1f}) | {r['tokensPerS']:.0f} | "
                 f"{r['peakBytes'] / GiB:.2f} GiB{'' if smi is None else ' (smi ' + str(round(smi / 1024, 2)) + ')'} | "
                 f"{fmt(gb(x['h2dBytesPerStep']), '{:.3f}')} | {fmt(gb(x['d2hBytesPerStep']), '{:.3f}')} | "
                 f"{fmt(x['h2dFloorMs'], '{:.1f}')} | {fmt(None if eff is None else 100 * eff, '{:.1f}%')} | {bound} | {target} | "
                 f"{fmt(x['serialFloorMs'], '{:.1f}')} ({fmt(None if x['serialFloorMs'] is None else 100 * x['serialFloorMs'] / x['stepMs'], '{:.0f}%')}) | "
                 f"{fmt(None if x.get('sec5Efficiency') is None else 100 * x['sec5Efficiency'], '{:.1f}%')} | "
                 f"{fmt(x.get('vsResident'), '{:.2f}x')}, {fmt(x.get('memoryVsResident'), '{:.2f}x')} | "
                 f"{fmt(x.get('vsPyTorchFP32'), '{:.2f}x')} / {fmt(x.get('vsPyTorchTF32'), '{:.2f}x')} |")
    L += ["", "Against ZO2's published peak GPU memory (ALGORITHMS.md §2: NVML, fp16 AMP, batch 1, sequence 2048;",
          "the paper's unit is taken as GB = 1e9 bytes; in GiB ZO2's figures would be 7% larger). Target: no more",
          "than ZO2's. The like-for-like row is batch 1 x 2048 with bf16 masters (ZO2's AMP keeps fp16 blocks):", ""]
    for m in sorted({x["model"] for x in streamed}):
        if m not in ZO2_MEMORY_GB:
            L.append(f"- OPT-{m}: ZO2 publishes no figure for this shape.")
            continue
        same = [x for x in streamed if x["model"] == m and x["batch"] == 1 and x["seq"] == 2048]
        for x in sorted(same, key=lambda x: (x["masters"], x["precision"])):
            verdict = "met" if x["memoryVsZo2"] <= 1.0 else "missed"
            L.append(f"- OPT-{m}, 1 x 2048, {x['offload']}, masters {x['masters']}, gemm {x['precision']}: "
                     f"{x['peakBytes'] / 1e9:.2f} GB ({x['peakBytes'] / GiB:.2f} GiB) against ZO2's {ZO2_MEMORY_GB[m]:.2f} GB: "
                     f"{x['memoryVsZo2']:.2f}x ({verdict}).")
        if not same:
            other = [x for x in streamed if x["model"] == m]
            lo = min(other, key=lambda x: x["peakBytes"])
            L.append(f"- OPT-{m}: not run at ZO2's shape (1 x 2048); lowest peak here {lo['peakBytes'] / 1e9:.2f} GB at "
                     f"{lo['batch']} x {lo['seq']}, masters {lo['masters']}, against ZO2's {ZO2_MEMORY_GB[m]:.2f} GB "
                     f"(not the same shape: no verdict).")
    L += ["", "ZO2's own code cannot run on this machine (see the ZO2 note): its step time is measured on a re-implementation",
          "of its schedule (the next section). The last column sets the streamed step against PyTorch MeZO resident at",
          "the same shape (ZO2 claims almost no overhead over it)."]
    return L


if __name__ == "__main__":
    main()
