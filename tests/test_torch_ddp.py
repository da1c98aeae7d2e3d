"""DistributedDataParallel over fastgates.torch modules: two processes, gloo, loopback.

Each rank trains on half of a batch of ragged sequences (a PackedSequence through a
bidirectional two-layer LSTM, a linear head on the final states); DDP averages the
gradients, so after a few SGD steps both ranks must hold the same parameters as one
process trained on the whole batch.  The processes are joined under a deadline and
terminated if it passes, so the test cannot hang.
"""

import os
import socket
import time

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import fastgates.torch as ft  # noqa: E402

WORLD, STEPS, BATCH = 2, 4, 8
DEADLINE_S = 120


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = ft.LSTM(3, 8, num_layers=2, bidirectional=True, dtype=torch.float64,
                           n_threads=1)
        self.head = torch.nn.Linear(16, 2, dtype=torch.float64)

    def forward(self, packed):
        _, (h, _) = self.rnn(packed)
        return self.head(torch.cat([h[-2], h[-1]], dim=1))     # last layer, both directions


def make_model():
    torch.manual_seed(0)
    return Classifier()


def make_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, BATCH, 3, dtype=torch.float64, generator=g)
    lengths = torch.randint(1, 10, (BATCH,), generator=g)
    labels = torch.randint(0, 2, (BATCH,), generator=g)
    return x, lengths, labels


def train(model, x, lengths, labels):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(STEPS):
        opt.zero_grad()
        logits = model(pack_padded_sequence(x, lengths, enforce_sorted=False))
        torch.nn.functional.cross_entropy(logits, labels).backward()
        opt.step()


def worker(rank, port, outdir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(make_model())
        x, lengths, labels = make_data()
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        train(model, x[:, rows], lengths[rows], labels[rows])
        torch.save(model.module.state_dict(), os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    ctx = mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"DDP workers did not finish within {DEADLINE_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
                p.join(5)

    single = make_model()
    start = {k: v.clone() for k, v in single.state_dict().items()}
    torch.set_num_threads(1)
    train(single, *make_data())
    ranks = [torch.load(os.path.join(tmp_path, f"rank{r}.pt")) for r in range(WORLD)]
    for name, want in single.state_dict().items():
        assert not torch.equal(want, start[name]), f"{name} did not train"
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], want, rtol=1e-10, atol=1e-12, msg=name)
