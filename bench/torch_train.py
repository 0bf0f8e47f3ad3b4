"""The PyTorch reference for `make bench`'s training section: the same Llama-style decoder (RMSNorm,
rotary embeddings with rotate_half, grouped-query attention, SwiGLU MLP, tied embeddings), the same batch
of random tokens' shape, mean next-token cross-entropy, global-norm clipping at 1.0 and torch.optim.AdamW,
on the CPU with the given thread count. Prints one JSON line: tokens/s over the timed steps and the peak
resident set of this process (VmHWM).

Usage: python3 bench/torch_train.py --hidden 768 --layers 12 --heads 12 --kv-heads 4 --intermediate 2048 \
           --vocab 32000 --batch 8 --length 256 --threads 2 --steps 2
Needs PyTorch (Debian: apt-get install python3-torch); it is a benchmark reference only.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RmsNorm(nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(h))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.heads, self.kv_heads, self.d = a.heads, a.kv_heads, a.hidden // a.heads
        self.input_layernorm = RmsNorm(a.hidden, 1e-5)
        self.q_proj = nn.Linear(a.hidden, a.hidden, bias=False)
        self.k_proj = nn.Linear(a.hidden, a.kv_heads * self.d, bias=False)
        self.v_proj = nn.Linear(a.hidden, a.kv_heads * self.d, bias=False)
        self.o_proj = nn.Linear(a.hidden, a.hidden, bias=False)
        self.post_attention_layernorm = RmsNorm(a.hidden, 1e-5)
        self.gate_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.up_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.down_proj = nn.Linear(a.intermediate, a.hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        n = self.input_layernorm(x)
        q = self.q_proj(n).view(b, s, self.heads, self.d).transpose(1, 2)
        k = self.k_proj(n).view(b, s, self.kv_heads, self.d).transpose(1, 2)
        v = self.v_proj(n).view(b, s, self.kv_heads, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d) + mask
        attended = torch.softmax(scores, dim=-1) @ v
        x = x + self.o_proj(attended.transpose(1, 2).reshape(b, s, -1))
        n = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(n)) * self.up_proj(n))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList(Layer(a) for _ in range(a.layers))
        self.norm = RmsNorm(a.hidden, 1e-5)
        d = a.hidden // a.heads
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        angles = torch.outer(torch.arange(a.length, dtype=torch.float64), inv_freq)
        emb = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", emb.cos().float(), persistent=False)
        self.register_buffer("sin", emb.sin().float(), persistent=False)
        mask = torch.full((a.length, a.length), -1e9).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.norm(x) @ self.embed_tokens.weight.t()  # tied LM head


def peak_resident_bytes():
    """VmHWM of this process. Not ru_maxrss: Linux carries that over from the parent across fork and exec, so a
    child of a process that had just trained would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def blas_library():
    """The BLAS shared library this process loaded (Debian's torch uses whichever libblas.so.3 is selected)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "blas" in path.lower() and ".so" in path:
                    return path
    except OSError:
        pass
    return "unknown"


def main():
    p = argparse.ArgumentParser()
    for name, default in [("hidden", 768), ("layers", 12), ("heads", 12), ("kv-heads", 4), ("intermediate", 2048),
                          ("vocab", 32000), ("batch", 8), ("length", 256), ("threads", 2), ("steps", 4), ("warmup", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = Llama(a)
    with torch.no_grad():  # as Hugging Face (and the project's WeightSet.Random) initialise: normal(0, 0.02), norms at 1
        for name, t in model.named_parameters():
            if t.dim() == 2:
                t.normal_(0.0, 0.02)
    params = sum(t.numel() for t in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ids = torch.randint(3, a.vocab, (a.batch, a.length))

    def step():
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, a.vocab), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    seconds = (time.perf_counter() - start) / a.steps
    print(json.dumps({
        "torch": torch.__version__,
        "parameters": params,
        "threads": torch.get_num_threads(),
        "step_seconds": seconds,
        "tokens_per_second": a.batch * a.length / seconds,
        "loss": loss,
        "blas": blas_library(),
        "peak_rss_bytes": peak_resident_bytes(),
    }))


if __name__ == "__main__":
    main()
