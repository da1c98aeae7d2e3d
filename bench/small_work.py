"""The measurements behind the small-work thread policy (fastgates/_threads.py).

    python bench/small_work.py 1,2      # then 4,16: batch sizes, one quiet window each

One layer's streaming step (``_recurrence.StepPlan.run``, float32) for B in the given
batch sizes, D 8/64/256, H 32-384 and the RNN/GRU/LSTM gate counts, with 1 and 2 threads,
best of 7 interleaved rounds.  Prints per line: B D H G multiply-adds weight-bytes
time-1-thread time-2-threads (us) and their ratio (> 1: two threads win).
"""
import time, sys, numpy as np, fastgates
from fastgates import _recurrence as R, cells
rng=np.random.default_rng(0)
dt = np.float32
Bs = [int(b) for b in sys.argv[1].split(",")]
out=[]
for B in Bs:
  for D in (8, 64, 256):
    for H in (32, 64, 128, 192, 256, 384):
      for name in ["rnn_tanh","gru","lstm"]:
        c=cells.CELLS[name]; G=c.G
        w=[rng.uniform(-.1,.1,s).astype(dt) for s in [(G*H,D),(G*H,H),(G*H,),(G*H,)]]
        plan=R.StepPlan([R.pack_layer(c.code,*w,2)])
        h0=np.zeros((1,B,H),dt); c0=h0.copy() if name=="lstm" else None
        xs=rng.standard_normal((B,D)).astype(dt)
        work = B*G*H*(D+H)
        n = max(20, min(2000, int(3e7/ max(work,1)) ))
        best={1:1e9,2:1e9}
        for r in range(7):
          for nt in (1,2):
            t0=time.perf_counter()
            for _ in range(n): plan.run(xs,h0,c0,nt)
            best[nt]=min(best[nt],(time.perf_counter()-t0)/n*1e6)
        print(f"{B} {D} {H} {G} {work} {G*H*(D+H)*4} {best[1]:.2f} {best[2]:.2f} {best[1]/best[2]:.2f}", flush=True)
