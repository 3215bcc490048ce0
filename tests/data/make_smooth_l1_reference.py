#!/usr/bin/python3
# Writes smooth_l1_torch113.bin: torch.nn.SmoothL1Loss(beta) (PyTorch 1.13 on the CPU, Debian's
# python3-torch; mean reduction) and its gradient with respect to the input, for several betas
# (beta = 0 among them: PyTorch's L1 there) on the same inputs, in float32 and float64, for
# tests/autograd/test_losses.cpp. The inputs hold exact ties |input - target| == beta for every
# beta, in both signs, and exact zeros of the difference.
# Layout (little-endian): b"SL11", uint32 rows, cols, betas; float64 beta[betas]; then for float32
# and for float64 (4- and 8-byte values): input[n], target[n], and per beta: loss, grad[n].
import struct
import numpy as np
import torch

rows, cols = 12, 16
n = rows * cols
betas = [1.0, 0.5, 0.05, 3.0, 0.0]
rng = np.random.default_rng(1113)


def inputs(dtype):
    # the differences: spread over [-6, 6] so that every beta sees both branches
    x = rng.uniform(-2, 2, n)
    d = rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-3, 0.8, n)
    t = x - d
    x, t = x.astype(dtype), t.astype(dtype)
    k = 0
    for b in betas:  # ties: input = ±beta in the dtype, target 0 (the difference is exact)
        for sign in (1, -1):
            x[k], t[k] = dtype(sign * b), dtype(0)
            k += 1
    for _ in range(4):  # zero differences
        t[k] = x[k]
        k += 1
    return x, t


with open('smooth_l1_torch113.bin', 'wb') as f:
    f.write(struct.pack('<4sIII', b'SL11', rows, cols, len(betas)))
    f.write(struct.pack('<%dd' % len(betas), *betas))
    for dtype in (np.float32, np.float64):
        x, t = inputs(dtype)
        f.write(x.tobytes())
        f.write(t.tobytes())
        for b in betas:
            xi = torch.tensor(x.reshape(rows, cols), requires_grad=True)
            loss = torch.nn.SmoothL1Loss(beta=b)(xi, torch.tensor(t.reshape(rows, cols)))
            loss.backward()
            f.write(np.asarray([loss.item()], dtype=dtype).tobytes())
            f.write(np.ascontiguousarray(xi.grad.numpy(), dtype=dtype).tobytes())
print('torch', torch.__version__, '->', 'smooth_l1_torch113.bin')
