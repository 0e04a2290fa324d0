"""Each family-specific mistake, injected into the reference, against the golden.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/reference/mistakes.py [--markdown] [--check]

For every (fixture, mistake) below, patches one piece of models.py for the
duration of a forward (the mistake a port could make: a scaling ignored, a
window dropped, a fused split the wrong way round, ...), recomputes the golden
examples' batch loss and the golden sequences' token log-probs, and reports
how far they move from the stored golden, against the tolerances the engine's
golden tests use (losses 1e-5, log-probs 2e-5). A mistake the goldens could not
see would move them by less: --check exits 1 when any moves the loss by less
than 100 times its tolerance. --markdown prints mistakes.md.
"""
import argparse
import contextlib
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import losses  # noqa: E402
import models  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LOSS_TOL = 1e-5
LOGPROB_TOL = 2e-5
MARGIN = 100


@contextlib.contextmanager
def patched(obj, name, replacement):
    """obj.name = replacement(original) while the block runs."""
    original = getattr(obj, name)
    setattr(obj, name, replacement(original))
    try:
        yield
    finally:
        setattr(obj, name, original)


def rope_edit(edit):
    """A mistake in how the config's RoPE is read: edit(dict) -> dict."""
    return patched(models, "rope_parameters", lambda f: lambda *a, **k: edit(dict(f(*a, **k))))


def scaling_ignored(rp):
    return {**rp, "rope_type": "default"}


def without(*keys):
    return lambda rp: {k: v for k, v in rp.items() if k not in keys}


def attention_factor_skipped():
    return patched(models, "_rope", lambda f: lambda T, inv, attention=1.0: f(T, inv, 1.0))


def window_ignored():
    return patched(models, "_layer_window", lambda f: lambda cfg, l: None)


def window_on_every_layer():
    """The model's window on all layers instead of the ones its config names."""
    def windows(f):
        def every(cfg, l):
            return max((f(cfg, i) or 0) for i in range(cfg["num_hidden_layers"])) or None
        return every
    return patched(models, "_layer_window", windows)


def window_off_by_one():
    """i - j <= window instead of < window: one key too many."""
    def mask(f):
        return lambda T, window=None: f(T, window + 1 if window else window)
    return patched(models, "_mask", mask)


def qk_norm_skipped():
    return patched(models, "_qk_norm", lambda f: lambda q, k, p, lp, eps: (q, k))


def qk_norm_after_rope():
    def after(f):
        def position(cfg, p, lp, l, q, k, cos, sin, eps):
            if models._layer_rope(cfg, l):
                q, k = models._apply_rope(q, cos, sin), models._apply_rope(k, cos, sin)
            return models._qk_norm(q, k, p, lp, eps)
        return position
    return patched(models, "_position_qk", after)


def qk_norm_over_all_heads():
    """One RMSNorm over the whole projection (OLMo 2's), the head weight repeated."""
    def whole(f):
        def norm(q, k, p, lp, eps):
            def one(x, w):
                H, T, D = x.shape
                flat = x.transpose(0, 1).reshape(T, H * D)
                return models._rms_norm(flat, w.repeat(H), eps).view(T, H, D).transpose(0, 1)
            return one(q, p[lp + "self_attn.q_norm.weight"]), one(k, p[lp + "self_attn.k_norm.weight"])
        return norm
    return patched(models, "_qk_norm", whole)


def qkv_split_as(order):
    """Phi-3's fused qkv_proj cut in another order of q (H*D), k and v (KV*D each)."""
    def project(f):
        def split(p, lp, h, H, KV, D):
            name = lp + "self_attn.qkv_proj"
            if name + ".weight" not in p:
                return f(p, lp, h, H, KV, D)
            width = {"q": H * D, "k": KV * D, "v": KV * D}
            pieces = dict(zip(order, models._linear(h, p, name).split([width[n] for n in order], dim=-1)))
            return models._heads(pieces["q"], H, D), models._heads(pieces["k"], KV, D), models._heads(pieces["v"], KV, D)
        return split
    return patched(models, "_project_qkv", project)


def gate_up_swapped():
    return patched(models, "_gate_up", lambda f: lambda p, lp, h: tuple(reversed(f(p, lp, h))))


def rotary_on_every_dim(rp):
    """partial_rotary_factor ignored: all 8 dims of phi3-tiny's heads turn, not 6 (the fourth
    frequency's longrope factors taken as 1)."""
    return {**rp, "partial_rotary_factor": 1.0, "short_factor": rp["short_factor"] + [1.0],
            "long_factor": rp["long_factor"] + [1.0]}


MISTAKES = [
    ("qwen2-window-tiny", "sliding window ignored", window_ignored),
    ("qwen2-window-tiny", "window on every layer (max_window_layers ignored)", window_on_every_layer),
    ("qwen2-window-tiny", "window one key too wide", window_off_by_one),
    ("ministral-tiny", "sliding window ignored", window_ignored),
    ("ministral-tiny", "window on every layer (layer_types ignored)", window_on_every_layer),
    ("llama3-tiny", "llama3 scaling ignored", lambda: rope_edit(scaling_ignored)),
    ("llama3-tiny", "llama3: every frequency divided by the factor", lambda: rope_edit(lambda rp: {**rp, "rope_type": "linear"})),
    ("llama-linear-tiny", "linear scaling ignored (type alias not read)", lambda: rope_edit(scaling_ignored)),
    ("llama-dynamic-tiny", "dynamic NTK ignored", lambda: rope_edit(scaling_ignored)),
    ("llama-yarn-tiny", "yarn scaling ignored", lambda: rope_edit(scaling_ignored)),
    ("llama-yarn-tiny", "yarn attention factor skipped", attention_factor_skipped),
    ("llama-yarn-tiny", "yarn ramp not truncated", lambda: rope_edit(lambda rp: {**rp, "truncate": False})),
    ("llama-longrope-tiny", "longrope scaling ignored", lambda: rope_edit(scaling_ignored)),
    ("llama-longrope-tiny", "longrope attention factor skipped", attention_factor_skipped),
    ("llama-longrope-tiny", "longrope short factors past the original length", lambda: rope_edit(lambda rp: {**rp, "long_factor": rp["short_factor"]})),
    ("llama-longrope-tiny", "longrope top-level original_max_position_embeddings not read",
     lambda: rope_edit(lambda rp: {**rp, "original_max_position_embeddings": rp["max_position_embeddings"]})),
    ("smollm3-tiny", "RoPE on every layer (no_rope_layers ignored)", lambda: patched(models, "_layer_rope", lambda f: lambda cfg, l: True)),
    ("smollm3-tiny", "no_rope_layers read inverted (1 = no RoPE)", lambda: patched(models, "_layer_rope", lambda f: lambda cfg, l: not f(cfg, l))),
    ("qwen3-tiny", "q/k norms skipped", qk_norm_skipped),
    ("qwen3-tiny", "q/k norms after RoPE instead of before", qk_norm_after_rope),
    ("qwen3-tiny", "q/k norm over the whole projection, not per head", qk_norm_over_all_heads),
    ("phi3-tiny", "fused qkv_proj split as q, v, k", lambda: qkv_split_as("qvk")),
    ("phi3-tiny", "fused gate_up_proj read as [up; gate]", gate_up_swapped),
    ("phi3-tiny", "partial rotary on every dim (partial_rotary_factor ignored)", lambda: rope_edit(rotary_on_every_dim)),
    ("phi3-tiny", "sliding window ignored", window_ignored),
]


INTRO = """# Mistakes the goldens see

Each row injects one family-specific mistake into the reference (`tests/reference/models.py`,
patched for the duration of a forward by `mistakes.py`) and measures how far it moves the golden
batch loss and the golden sequences' token log-probs from the stored goldens, against the
tolerances of the engine's golden tests. `tests/reference/reference.test.ts` runs
`mistakes.py --check` (every mistake must move the loss by at least 100 x its tolerance).
Regenerate with

```sh
OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/reference/mistakes.py --markdown > tests/reference/mistakes.md
```
"""


def measure(name, make_mistake):
    d = os.path.join(ROOT, "tests", "fixtures", "models", name)
    with open(os.path.join(ROOT, "tests", "fixtures", "golden", f"{name}.json"), encoding="utf-8") as f:
        golden = json.load(f)
    cfg, params = models.load_model(d)
    with make_mistake():
        loss = losses.batch_loss(cfg, params, golden["examples"]["batch"])
        worst = 0.0
        for seq, gl in zip(golden["sequences"], golden["logits"]):
            mine = torch.log_softmax(models.forward(cfg, params, seq), dim=-1)
            ref = torch.log_softmax(torch.tensor(gl, dtype=torch.float32).view(len(seq), -1), dim=-1)
            idx = torch.tensor(seq[1:])[:, None]
            worst = max(worst, float((mine[:-1].gather(1, idx) - ref[:-1].gather(1, idx)).abs().max()))
    return abs(loss - golden["examples"]["batch_loss"]), worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = [(name, what, *measure(name, make)) for name, what, make in MISTAKES]
    weak = [r for r in rows if r[2] < MARGIN * LOSS_TOL]
    if a.markdown:
        print(INTRO)
        print(f"| fixture | mistake | \\|Δ loss\\| | × tolerance ({LOSS_TOL:g}) | max \\|Δ log p\\| | × tolerance ({LOGPROB_TOL:g}) |")
        print("|---|---|---|---|---|---|")
        for name, what, dl, dp in rows:
            print(f"| `{name}` | {what} | {dl:.3g} | {dl / LOSS_TOL:,.0f} | {dp:.3g} | {dp / LOGPROB_TOL:,.0f} |")
    else:
        for name, what, dl, dp in rows:
            print(f"{name:22s} {what:60s} dloss {dl:.3e} ({dl / LOSS_TOL:9.0f}x)  dlogp {dp:.3e}")
    if a.check and weak:
        for name, what, dl, _ in weak:
            print(f"FAIL {name}: '{what}' moves the loss by {dl:.3g}, less than {MARGIN} x {LOSS_TOL:g}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
