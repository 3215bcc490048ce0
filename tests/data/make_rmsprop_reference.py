#!/usr/bin/python3
# Writes rmsprop_torch113.bin: one torch.optim.RMSprop step (PyTorch 1.13 on the CPU, Debian's
# python3-torch) for four settings on the same 4096 float32 inputs, for tests/controller/test_rmsprop.cpp.
# Layout (little-endian): b"RMS1", uint32 n, uint32 cases; grad, square_avg, param, momentum_buffer
# (n float32 each); then per case: float64 lr, alpha, weight_decay, momentum, and the param,
# square_avg and momentum_buffer after the step (n float32 each; the buffer unchanged without momentum).
import struct
import numpy as np
import torch

n = 4096
rng = np.random.default_rng(2026)
def magnitudes(lo, hi): return 10.0 ** rng.uniform(lo, hi, n)
g = (rng.choice([-1, 1], n) * magnitudes(-9, 1)).astype(np.float32)
g[::97] = 0.0
v = magnitudes(-14, 0).astype(np.float32)
v[::89] = 0.0
p = rng.uniform(-2, 2, n).astype(np.float32)
b = (rng.choice([-1, 1], n) * magnitudes(-6, 2)).astype(np.float32)
cases = [(1e-3, 0.99, 0.0, 0.0), (1e-3, 0.9, 0.05, 0.0), (2e-3, 0.99, 0.0, 0.9), (5e-4, 0.95, 0.01, 0.5)]
with open('rmsprop_torch113.bin', 'wb') as f:
    f.write(struct.pack('<4sII', b'RMS1', n, len(cases)))
    for a in (g, v, p, b):
        f.write(a.tobytes())
    for lr, alpha, wd, mom in cases:
        param = torch.nn.Parameter(torch.from_numpy(p.copy()))
        opt = torch.optim.RMSprop([param], lr=lr, alpha=alpha, eps=1e-8, weight_decay=wd, momentum=mom)
        state = opt.state[param]
        state['step'] = torch.tensor(0.0)
        state['square_avg'] = torch.from_numpy(v.copy())
        if mom > 0:
            state['momentum_buffer'] = torch.from_numpy(b.copy())
        param.grad = torch.from_numpy(g.copy())
        opt.step()
        f.write(struct.pack('<dddd', lr, alpha, wd, mom))
        after_b = state['momentum_buffer'].numpy() if mom > 0 else b
        for a in (param.detach().numpy(), state['square_avg'].numpy(), after_b):
            f.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())
print('torch', torch.__version__, '->', 'rmsprop_torch113.bin')
