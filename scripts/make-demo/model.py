"""A Hugging Face LlamaForCausalLM-equivalent forward pass in plain PyTorch,
plus a minimal safetensors reader/writer (no transformers / safetensors deps).

Computes what transformers' LlamaForCausalLM computes for float32 weights:
RMSNorm (variance in fp32, x * rsqrt(mean(x^2) + eps) * w), rotary embeddings
with rotate_half and inv_freq = 1 / theta^(2i/d), causal softmax attention
scaled by 1/sqrt(head_dim) with grouped KV heads, SiLU-gated MLP, tied or
untied LM head. Tensor names are the Hugging Face ones.
"""
import json, math, struct
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, H, KV = c['hidden_size'], c['num_attention_heads'], c['num_key_value_heads']
        self.H, self.KV, self.hd = H, KV, C // H
        self.q_proj = nn.Linear(C, H * self.hd, bias=False)
        self.k_proj = nn.Linear(C, KV * self.hd, bias=False)
        self.v_proj = nn.Linear(C, KV * self.hd, bias=False)
        self.o_proj = nn.Linear(H * self.hd, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.KV != self.H:
            k = k.repeat_interleave(self.H // self.KV, dim=1)
            v = v.repeat_interleave(self.H // self.KV, dim=1)
        a = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        a = torch.softmax(a.float(), dim=-1).to(q.dtype)
        o = (a @ v).transpose(1, 2).reshape(B, T, self.H * self.hd)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, I = c['hidden_size'], c['intermediate_size']
        self.gate_proj = nn.Linear(C, I, bias=False)
        self.up_proj = nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c['hidden_size'], c['rms_norm_eps'])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c['hidden_size'], c['rms_norm_eps'])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c['vocab_size'], c['hidden_size'])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c['num_hidden_layers'])])
        self.norm = RMSNorm(c['hidden_size'], c['rms_norm_eps'])


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.tied = c['tie_word_embeddings']
        if not self.tied:
            self.lm_head = nn.Linear(c['hidden_size'], c['vocab_size'], bias=False)
        hd = c['hidden_size'] // c['num_attention_heads']
        inv = 1.0 / (c['rope_theta'] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        self.register_buffer('inv_freq', inv, persistent=False)

    def forward(self, ids):
        B, T = ids.shape
        pos = torch.arange(T, dtype=torch.float32)
        f = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), float('-inf')).triu(1)
        x = self.model.embed_tokens(ids)
        for l in self.model.layers:
            x = l(x, cos, sin, mask)
        x = self.model.norm(x)
        w = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        return x @ w.t()

    def hf_state(self):
        """name -> tensor with Hugging Face names (tied head omitted)."""
        return {k: v for k, v in self.state_dict().items() if k != 'inv_freq'}


def init_weights(m, std=0.02, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith('norm.weight'):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)
                if n.endswith(('o_proj.weight', 'down_proj.weight')):
                    p.mul_(1 / math.sqrt(2 * m.c['num_hidden_layers']))


def save_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header['__metadata__'] = metadata
    for name in sorted(tensors):
        a = tensors[name].detach().contiguous().to(torch.float32).numpy().astype('<f4')
        b = a.tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32'
        s, e = info['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(data[s:e], dtype='<f4').copy()).reshape(info['shape'])
    return out


def load_model(d):
    c = json.load(open(f'{d}/config.json'))
    m = LlamaForCausalLM(c)
    sd = load_safetensors(f'{d}/model.safetensors')
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {'inv_freq'}, (missing, unexpected)
    return m
