"""Checks that the stored fixtures agree with the reference code (and with simple
independent formulas). Run: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/reference/test_fixtures.py"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare import NOISE_ULPS, assert_ulp_close  # noqa: E402
import losses  # noqa: E402
import models  # noqa: E402
import noise  # noqa: E402
import st  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MD = os.path.join(ROOT, "tests", "fixtures", "models")
GD = os.path.join(ROOT, "tests", "fixtures", "golden")


def load_golden(name):
    with open(os.path.join(GD, name), "r", encoding="utf-8") as f:
        return json.load(f)


def test_logits_and_losses():
    for name in sorted(os.listdir(MD)):
        g = load_golden(f"{name}.json")
        assert g["magic"] == "spillway-golden" and g["version"] == 1 and g["model"] == name
        cfg, params = models.load_model(os.path.join(MD, name))
        for seq, gl in zip(g["sequences"], g["logits"]):
            ref = models.forward(cfg, params, seq)
            gold = torch.tensor(gl, dtype=torch.float32).view(len(seq), -1)
            assert float((ref - gold).abs().max()) < 1e-4, name
        ex = g["examples"]
        total, per = losses.batch_loss(cfg, params, ex["batch"], detail=True)
        assert abs(total - ex["batch_loss"]) < 1e-5
        for e, (loss, correct, _), want in zip(ex["batch"], per, ex["per_example"]):
            assert abs(loss - want["loss"]) < 1e-5 and correct == want["correct"]
            if e["kind"] != "classify":  # independent formula: cross-entropy over the span
                s, t = e["span"]
                lg = models.forward(cfg, params, e["tokens"])
                ce = F.cross_entropy(lg[s - 1:t - 1], torch.tensor(e["tokens"][s:t]))
                assert abs(float(ce) - want["loss"]) < 1e-5
    # the sharded copy is the same model
    a = load_golden("llama-tiny.json")
    b = load_golden("llama-tiny-sharded.json")
    assert a["logits"] == b["logits"] and a["sequences"] == b["sequences"]


def test_mezo():
    for name in ("opt-tiny", "llama-tiny", "qwen2-tiny"):
        g = load_golden(f"mezo-{name}.json")
        inp, out = g["inputs"], g["outputs"]
        seeds = [int(s) for s in out["seeds"]]
        assert seeds == [noise.step_seed(inp["run_seed"], inp["step"], j) for j in range(inp["q"])]
        for zs in g["z_samples"]:
            z = noise.noise_at(seeds[zs["perturbation"]], zs["tensor_id"], [zs["index"]], inp["noise"])[0]
            assert zs["tensor_id"] == noise.fnv1a32(zs["name"])
            assert_ulp_close(z, zs["z"], NOISE_ULPS, f"z of {zs['name']}[{zs['index']}] (perturbation {zs['perturbation']})")
        cfg, params = models.load_model(os.path.join(MD, name))
        new = st.load_file(os.path.join(GD, out["updated_params"]))
        assert sorted(new) == sorted(params)
        lr, q, wd = inp["lr"], inp["q"], inp["weight_decay"]
        for n, th in params.items():  # float64 re-derivation of the update
            upd = th.double().numpy().copy()
            for j, gj in enumerate(out["projected_grad"]):
                z = noise.tensor_noise(seeds[j], n, th.numel(), inp["noise"]).astype(np.float32)
                upd -= lr * gj / q * z.astype(np.float64).reshape(th.shape)
            if not models.no_decay(n):
                upd -= lr * wd * th.double().numpy()
            assert np.abs(upd - new[n].double().numpy()).max() < 1e-6, n


if __name__ == "__main__":
    torch.set_num_threads(2)
    test_logits_and_losses()
    test_mezo()
    print("test_fixtures: all checks passed")
