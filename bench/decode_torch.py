"""Decoding with PyTorch and transformers' generate() (KV cache, greedy), timed
per step, for bench/decode.ts.

    python decode_torch.py MODEL_DIR PROMPTS_JSON --batch B --new N --threads T [--warmup 1] [--runs 2]

PROMPTS_JSON holds {"prompts": [[id, ...], ...]}: the first B are decoded together
(equal lengths: no padding). A stopping criterion stamps the time after every
step: the first stamp ends the prefill and the first token, each later one a
decoding step (one token for every sequence). Prints one JSON line.
"""
import argparse
import json
import resource
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, StoppingCriteria, StoppingCriteriaList


class Stamps(StoppingCriteria):
    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores, **kwargs):
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--new", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    with open(a.prompts) as f:
        prompts = json.load(f)["prompts"][: a.batch]
    ids = torch.tensor(prompts)
    runs = []
    with torch.inference_mode():
        for r in range(a.warmup + a.runs):
            stamps = Stamps()
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=a.new,
                           min_new_tokens=a.new, pad_token_id=0, use_cache=True,
                           stopping_criteria=StoppingCriteriaList([stamps]))
            cpu = time.process_time() - cpu0
            t = stamps.times
            runs.append({
                "warmup": r < a.warmup,
                "prefillMs": (t[0] - t0) * 1e3,
                "stepMs": [(t[i] - t[i - 1]) * 1e3 for i in range(1, len(t))],
                "cpuMs": cpu * 1e3,
            })
    print(json.dumps({
        "impl": "pytorch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "runs": runs,
        "maxRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
