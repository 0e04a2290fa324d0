#!/usr/bin/env python3
"""Pretrain the demo model (LM loss on build/corpus.txt), deterministic on CPU.

Each document is its own sequence (no packing across documents), prefixed with
<s> half of the time so the model works with and without a BOS token, and
terminated with </s>. AdamW, warmup + cosine decay.
usage: pretrain.py [epochs] [out_dir] [corpus]   (corpus: build/corpus.txt, one document per line,
       or a .jsonl file of JSON strings for documents that hold newlines)
"""
import json, math, os, random, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tokenizer as T
from model import LlamaForCausalLM, init_weights, save_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = dict(
    architectures=['LlamaForCausalLM'], model_type='llama', hidden_size=128, intermediate_size=344,
    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, head_dim=32,
    max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
    hidden_act='silu', attention_bias=False, attention_dropout=0.0, mlp_bias=False,
    initializer_range=0.02, tie_word_embeddings=True, bos_token_id=T.BOS, eos_token_id=T.EOS,
    pad_token_id=T.PAD, torch_dtype='float32', use_cache=True, transformers_version='4.44.0')


def main():
    epochs = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    out = sys.argv[2] if len(sys.argv) > 2 else T.MODEL_DIR
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("SPILLWAY_THREADS", "2")))
    r = random.Random(7)
    bpe = T.load()
    CONFIG['vocab_size'] = len(bpe.vocab)
    corpus = sys.argv[3] if len(sys.argv) > 3 else os.path.join(HERE, 'build', 'corpus.txt')
    lines = [l for l in open(corpus).read().split('\n') if l]
    docs = [json.loads(l) for l in lines] if corpus.endswith('.jsonl') else lines
    seqs = [bpe.encode(d) + [T.EOS] for d in docs]
    m = LlamaForCausalLM(CONFIG)
    init_weights(m, seed=0)
    n_params = sum(p.numel() for p in m.parameters())
    bs = 32
    steps = int(epochs * len(seqs) / bs)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, betas=(0.9, 0.98), weight_decay=0.01)
    warm = 200
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min(1.0, (t + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))))
    print(f'params {n_params}, vocab {CONFIG["vocab_size"]}, docs {len(seqs)}, steps {steps} x {bs}')
    t0, order, k, ema = time.time(), [], 0, None
    for step in range(steps):
        if k + bs > len(order):
            order = list(range(len(seqs)))
            r.shuffle(order)
            k = 0
        batch = [([T.BOS] if r.random() < 0.5 else []) + seqs[i] for i in order[k:k + bs]]
        k += bs
        L = max(len(s) for s in batch)
        ids = torch.full((bs, L), T.PAD, dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, :len(s)] = torch.tensor(s)
        tgt = ids[:, 1:].clone()
        tgt[tgt == T.PAD] = -100
        logits = m(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 200 == 0 or step == steps - 1:
            print(f'step {step} loss {ema:.3f} lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s', flush=True)
    os.makedirs(out, exist_ok=True)
    save_safetensors(os.path.join(out, 'model.safetensors'), m.hf_state(), {'format': 'pt'})
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(CONFIG, f, indent=1)
    with open(os.path.join(out, 'generation_config.json'), 'w') as f:
        json.dump({'bos_token_id': T.BOS, 'eos_token_id': T.EOS, 'pad_token_id': T.PAD,
                   'transformers_version': '4.44.0'}, f, indent=1)
    print(f'pretraining done: {steps} steps, {time.time() - t0:.0f}s, final loss {ema:.3f}')


if __name__ == '__main__':
    main()
