import sys, json, time
from dataclasses import replace
from torchlmu.experiments import psmnist_parallel as pp
from torchlmu.experiments.harness import RunContext
name = sys.argv[1]
kw = json.loads(sys.argv[2])
cfg = replace(pp.Config(), seeds=(0,), **kw)
ctx = RunContext(out=f"/tmp/tune/{name}", threads=1, progress=False)
t0 = time.time()
r = pp.run(cfg, ctx)
s = r["results"]["seeds"]["0"]
print(json.dumps({"name": name, "kw": kw, "params": s["params"], "best_val": s["best_val_acc"], "best_epoch": s["best_epoch"], "test": s["test_acc"], "final_train_acc": s["history"][-1]["train_acc"], "wall": time.time()-t0}), flush=True)
