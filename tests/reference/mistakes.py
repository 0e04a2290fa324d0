"""Each family-specific mistake, injected into the readable reference, and how far it moves
the golden fixtures' outputs: the table in tests/reference/README.md ("Mistakes the goldens
catch").

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/reference/mistakes.py [--check]

For every (fixture, mistake): the change of the golden batch loss (the examples of
tests/fixtures/golden/<fixture>.json) and the largest change of a per-token log-probability
(the golden sequences), against the tolerances the engine's golden tests hold it to (1e-5 for
losses, 2e-5 for log-probabilities). A mistake is a change of the config (what a loader that
ignored a key would run), a piece of models.py swapped for a wrong one, or weights read
wrongly. --check exits 1
when a mistake moves neither by at least 100 times its tolerance (the goldens would miss it).
"""
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
def swapped(name, fn):
    """models.<name> replaced by fn while the block runs."""
    old = getattr(models, name)
    setattr(models, name, fn)
    try:
        yield
    finally:
        setattr(models, name, old)


# A mistake: (cfg, params) -> (cfg, params, context) the wrong run uses.

def config(**changes):
    """The model run with other config values (None: the key removed)."""
    def apply(cfg, params):
        cfg = dict(cfg)
        for k, v in changes.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        return cfg, params, contextlib.nullcontext()
    return apply


def patch(name, fn):
    """A piece of models.py swapped for a wrong one."""
    return lambda cfg, params: (cfg, params, swapped(name, fn))


def nulled(*keys):
    """The model run with config keys set to null (what a loader that skipped a feature runs)."""
    return lambda cfg, params: ({**cfg, **{k: None for k in keys}}, params, contextlib.nullcontext())


def weights(fn):
    """The model run with weights read wrongly: fn(params) -> the wrong params."""
    return lambda cfg, params: (cfg, fn(dict(params)), contextlib.nullcontext())


# ---- the wrong pieces

def qkv_split_in_blocks(qkv, T, H, D):
    """GPT-NeoX's fused projection read as whole q, k, v blocks (GPT-2's layout) instead of per head."""
    q, k, v = qkv.split(H * D, dim=-1)
    return tuple(x.view(T, H, D).transpose(0, 1) for x in (q, k, v))


def qk_norm_per_head(x, weight, eps, H, D):
    """q/k normed per head over head_dim (Qwen3 / Gemma 3 style) instead of over the whole width."""
    T = x.shape[0]
    xf = x.view(T, H, D)
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf.reshape(T, H * D) * weight).view(T, H, D).transpose(0, 1)


def qk_norm_skipped(x, weight, eps, H, D):
    return models._heads(x, H, D)


def norm_after_residual(x, y, weight, eps):
    """The post-norm applied to x + y (OPT-350m's post-LN) instead of to the branch alone."""
    return models._rms_norm(x + y, weight, eps)


def projections_swapped(p):
    """OPT-350m's project_in and project_out each read in the other's place (both fit, transposed)."""
    pi, po = "model.decoder.project_in.weight", "model.decoder.project_out.weight"
    p[pi], p[po] = p[po].t().contiguous(), p[pi].t().contiguous()
    return p


def norm_times_w(x, weight, eps):
    """Gemma's (1 + w) norm read as a Llama RMSNorm, x * w."""
    return models._rms_norm(x, weight, eps)


_ACT = models._act


def gelu_exact(name, x):
    """The erf GELU where Gemma's config asks for gelu_pytorch_tanh."""
    return torch.nn.functional.gelu(x) if name == "gelu_pytorch_tanh" else _ACT(name, x)


def gemma_qk_norm_skipped(x, weight, eps, H, D):
    return models._heads(x, H, D)


# (fixture, mistake, how[, margin: how many tolerances it must move the outputs by, MARGIN unless given])
MISTAKES = [
    ("gptneox-tiny", "fused qkv split as whole q, k, v blocks (GPT-2 style), not per head", patch("split_fused_qkv", qkv_split_in_blocks)),
    ("gptneox-tiny", "partial rotary (rotary_pct 0.5) on every dim", config(rotary_pct=1.0)),
    ("gptneox-tiny", "rotary_pct ignored (transformers' default 0.25 assumed)", config(rotary_pct=None)),
    ("gptneox-tiny", "parallel residual run one branch after the other", config(use_parallel_residual=False)),
    ("gptneox-seq-tiny", "use_parallel_residual false ignored (parallel)", config(use_parallel_residual=True)),
    ("olmo2-tiny", "q/k norm per head over head_dim, not over the projection width", patch("qk_norm_olmo2", qk_norm_per_head)),
    ("olmo2-tiny", "q/k norms skipped", patch("qk_norm_olmo2", qk_norm_skipped)),
    ("olmo2-tiny", "post-norms applied after the residual (norm(x + f(x)))", patch("post_norm_residual", norm_after_residual)),
    ("opt350m-tiny", "do_layer_norm_before false ignored (pre-LN blocks, no final norm)",
     config(do_layer_norm_before=True, _remove_final_layer_norm=True)),
    ("opt350m-tiny", "project_in and project_out swapped (each transposed into the other's place)", weights(projections_swapped)),
    ("gemma2-tiny", "(1 + w) norms read as w", patch("gemma_norm", norm_times_w)),
    ("gemma2-tiny", "embeddings not scaled by sqrt(hidden)", patch("gemma_embed_scale", lambda C: 1.0)),
    ("gemma2-tiny", "attention soft-cap skipped", nulled("attn_logit_softcapping")),
    ("gemma2-tiny", "final logit soft-cap skipped", nulled("final_logit_softcapping")),
    ("gemma2-tiny", "query_pre_attn_scalar ignored (scores scaled by head_dim^-1/2)", config(query_pre_attn_scalar=16)),
    ("gemma2-tiny", "sliding window ignored", config(sliding_window=None)),
    ("gemma2-tiny", "every layer sliding (the local/global pattern ignored)",
     config(layer_types=["sliding_attention", "sliding_attention"])),
    # The two GELUs differ by at most ~2e-4 (relative 1e-3): caught, with a smaller margin.
    ("gemma2-tiny", "GeGLU with the erf GELU instead of the tanh one", patch("_act", gelu_exact), 10),
    ("gemma3-tiny", "q/k norms skipped", patch("gemma_qk_norm", gemma_qk_norm_skipped)),
    ("gemma3-tiny", "one rotary base for every layer (rope_local_base_freq ignored)", config(rope_local_base_freq=1e6)),
    ("gemma3-tiny", "sliding_window_pattern ignored (transformers' default 6: every layer here local)",
     config(sliding_window_pattern=None)),
]


def golden(fixture):
    with open(os.path.join(ROOT, "tests", "fixtures", "golden", f"{fixture}.json"), encoding="utf-8") as f:
        return json.load(f)


def token_logprobs(cfg, params, seqs):
    out = []
    for s in seqs:
        lp = torch.log_softmax(models.forward(cfg, params, s), dim=-1)
        out += [float(lp[p - 1, s[p]]) for p in range(1, len(s))]
    return out


def main():
    torch.set_num_threads(1)
    rows, missed = [], []
    loaded = {}
    for fixture, what, how, *margin in MISTAKES:
        margin = margin[0] if margin else MARGIN
        if fixture not in loaded:
            cfg, params = models.load_model(os.path.join(ROOT, "tests", "fixtures", "models", fixture))
            g = golden(fixture)
            batch = g["examples"]["batch"]
            loaded[fixture] = (cfg, params, g, losses.batch_loss(cfg, params, batch),
                               token_logprobs(cfg, params, g["sequences"]))
        cfg, params, g, loss, lps = loaded[fixture]
        wrong_cfg, wrong_params, ctx = how(cfg, params)
        with ctx:
            wrong_loss = losses.batch_loss(wrong_cfg, wrong_params, g["examples"]["batch"])
            wrong_lps = token_logprobs(wrong_cfg, wrong_params, g["sequences"])
        dl = abs(wrong_loss - loss)
        dlp = max(abs(a - b) for a, b in zip(wrong_lps, lps))
        rows.append((fixture, what, dl, dl / LOSS_TOL, dlp, dlp / LOGPROB_TOL))
        if dl < margin * LOSS_TOL and dlp < margin * LOGPROB_TOL:
            missed.append(f"{fixture}: {what}")
    print("| fixture | mistake | Δ batch loss | × loss tolerance (1e-5) | max Δ log p | × log-p tolerance (2e-5) |")
    print("|---|---|---|---|---|---|")
    for fixture, what, dl, rl, dlp, rlp in rows:
        print(f"| `{fixture}` | {what} | {dl:.3g} | {rl:,.0f} | {dlp:.3g} | {rlp:,.0f} |")
    if missed:
        print("\nmoved by less than their margin (%dx the tolerances unless stated): %s" % (MARGIN, "; ".join(missed)),
              file=sys.stderr)
        if "--check" in sys.argv:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
