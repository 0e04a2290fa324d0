"""Compare models.py (and the stored goldens) against the real Hugging Face `transformers`.

    /usr/bin/python3 tests/reference/check_against_transformers.py [--atol 1e-4]

For every folder under tests/fixtures/models/ that has a golden file, loads it with
AutoModelForCausalLM (float32, attn_implementation="eager", CPU), runs each golden
sequence on its own and prints the max |logit difference| against models.py and
against the stored golden logits. Exits 1 if any difference exceeds --atol, or if
transformers reports tensors it had to initialise itself. Exits 0 with a SKIP
message when transformers is not importable.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
    except Exception as e:  # ImportError or a broken install
        print(f"SKIP: transformers is not importable here ({type(e).__name__}: {e})")
        return 0
    import models  # noqa: E402

    torch.set_num_threads(2)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    mdir = os.path.join(ROOT, "tests", "fixtures", "models")
    gdir = os.path.join(ROOT, "tests", "fixtures", "golden")
    failed = False
    for name in sorted(os.listdir(mdir)):
        gpath = os.path.join(gdir, f"{name}.json")
        if not os.path.exists(gpath):
            continue
        with open(gpath, "r", encoding="utf-8") as f:
            golden = json.load(f)
        d = os.path.join(mdir, name)
        major = int(transformers.__version__.split(".")[0])
        kwargs = {"dtype" if major >= 5 else "torch_dtype": torch.float32}
        try:
            hf, info = AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager",
                                                            output_loading_info=True, **kwargs)
        except TypeError:  # very old transformers without attn_implementation
            hf, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True, **kwargs)
        hf.eval()
        missing = [k for k in info.get("missing_keys", [])
                   if not (k.endswith(".attn.bias") or k.endswith(".attn.masked_bias") or k == "lm_head.weight")]
        cfg, params = models.load_model(d)
        worst_ref = worst_gold = 0.0
        scale = 0.0
        for seq, gl in zip(golden["sequences"], golden["logits"]):
            with torch.no_grad():
                out = hf(input_ids=torch.tensor([seq], dtype=torch.long)).logits[0].float()
            ref = models.forward(cfg, params, seq)
            gold = torch.tensor(gl, dtype=torch.float32).view(len(seq), -1)
            worst_ref = max(worst_ref, float((out - ref).abs().max()))
            worst_gold = max(worst_gold, float((out - gold).abs().max()))
            scale = max(scale, float(out.abs().max()))
        bad = worst_ref > args.atol or worst_gold > args.atol or bool(missing)
        failed |= bad
        print(f"{'FAIL' if bad else 'ok  '} {name:20s} max|hf-models.py|={worst_ref:.3e} "
              f"max|hf-golden|={worst_gold:.3e} (max|logit|={scale:.2f})"
              + (f" missing={missing}" if missing else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
