"""HAQ-style mixed-precision quantization benchmark (issue 4).

For each task (digits + LeNet-style CNN; ResNet-20 on synthetic 16x16 data) it prints:
  * float accuracy, 8-bit PTQ accuracy (w8/a8) and the drop (target <= 0.5 point);
  * uniform 4-bit weights (a8) after QAT vs. the mixed policy found by a small search (Optuna TPE
    over per-layer w_bits in {2,4,6,8}, each sample projected by ``project_bits`` onto the size
    budget with measured layer sensitivities, scored by a 1-epoch QAT on a validation split),
    fine-tuned with the same QAT recipe (target: mixed beats uniform 4-bit at the same or smaller size);
  * argmax agreement of the deployment form with the QAT network on the test split (target >= 99.5 %)
    and after a MindIR export/load round trip.

The size budget is the size of the uniform 4-bit model (weights at their bits + fp32 biases), so
the comparison with uniform 4-bit is like for like; ``--budget-fraction 0.25`` uses 25 % of the
float model's bytes instead.

    python benchmarks/quantization_haq.py                 # both tasks (~25 min on 2 busy CPU cores)
    python benchmarks/quantization_haq.py --tasks digits --trials 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import mindspore as ms
from mindspore import nn, ops

from automc.algorithms.quantization import (
    compressible_layers,
    project_bits,
    quantize,
    to_deploy_form,
    uniform_policy,
    weight_size_bytes,
)
from automc.analysis import LayerTable, build_layer_table
from automc.models import build_model
from automc.errors import TrialFailed
from automc.policy import Policy
from automc.training import TrainSettings, accuracy, predict, train

BIT_CHOICES = (2, 4, 6, 8)
A_BITS = 8


# ----------------------------------------------------------------------------- networks
def lenet():
    return build_model("lenet", num_classes=10, input_shape=(1, 8, 8), width=8)


def resnet20():
    return build_model("resnet20", num_classes=10, input_shape=(3, 16, 16))


# ----------------------------------------------------------------------------- data
def digits_data():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    # train 1237 / validation 200 (search) / test 360
    return (x[:1237], y[:1237]), (x[1237:1437], y[1237:1437]), (x[1437:], y[1437:])


def synthetic_data(n_train=1200, n_val=300, n_test=600, sigma=2.6, seed=0):
    """10 classes of smooth 3x16x16 patterns sharing a common base, randomly shifted, plus noise."""
    rng = np.random.default_rng(seed)

    def smooth(k):
        z = rng.normal(size=(k, 3, 4, 4))
        z = z.repeat(4, axis=2).repeat(4, axis=3)
        return z / z.std(axis=(1, 2, 3), keepdims=True)

    base, delta = smooth(1)[0], smooth(10)
    templates = base + 0.6 * delta

    def sample(n):
        y = rng.integers(0, 10, n)
        x = templates[y]
        shifts = rng.integers(-2, 3, size=(n, 2))
        x = np.stack([np.roll(xi, tuple(s), axis=(1, 2)) for xi, s in zip(x, shifts)])
        x = x + sigma * rng.normal(size=x.shape)
        return x.astype(np.float32), y.astype(np.int32)

    return sample(n_train), sample(n_val), sample(n_test)


# ----------------------------------------------------------------------------- helpers
def layer_table(net: nn.Cell, sample: np.ndarray) -> LayerTable:
    return build_layer_table(net, sample.shape[1:])


def ce_loss(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def with_a_bits(policy: Policy, layers) -> Policy:
    return Policy(w_bits=dict(policy.w_bits), a_bits={n: A_BITS for n in layers})


def measure_sensitivity(net, layers, table, calib_x, val):
    """Per-weight sensitivity: validation-loss increase when one layer's weights go to 2 bits (PTQ,
    everything else at 8 bits), divided by its weights x 2^-4, so that HAQ's proxy
    ``sensitivity * weights * 2^(-2b)`` reproduces the measured loss at 2 bits."""
    xv, yv = val
    base_policy = uniform_policy(layers, w_bits=8, a_bits=A_BITS)
    base = ce_loss(predict(quantize(net, base_policy, calib_x=calib_x), xv), yv)
    weights = table.resolve(base_policy).weights[0]
    sens = {}
    for name in layers:
        p = Policy(w_bits={**base_policy.w_bits, name: 2}, a_bits=base_policy.a_bits)
        delta = ce_loss(predict(quantize(net, p, calib_x=calib_x), xv), yv) - base
        sens[name] = max(delta, 1e-4) / (weights[table.index(name)] * 2.0**-4)
    return sens


def qat(net, policy, train_data, calib_x, *, epochs, lr, seed=0):
    qnet = quantize(net, policy, calib_x=calib_x)
    x, y = train_data
    train(qnet, x, y, TrainSettings(epochs=epochs, lr=lr, distill_weight=0.5, seed=seed), teacher=net)
    return qnet


def run_task(name, make_net, train_data, val, test, *, float_epochs, float_lr, qat_epochs, search_epochs, qat_lr,
             trials, budget_fraction, seeds=3, seed=0):
    import optuna

    t0 = time.time()
    xtr, ytr = train_data
    xte, yte = test
    calib_x = xtr[:256]
    ms.set_seed(seed)
    net = make_net()  # after seeding, so the float baseline is reproducible
    train(net, xtr, ytr, TrainSettings(epochs=float_epochs, lr=float_lr, seed=seed))
    acc_float = accuracy(net, xte, yte)
    layers = list(compressible_layers(net))
    table = layer_table(net, xtr[:2])

    # 8-bit
    q8 = quantize(net, uniform_policy(layers, w_bits=8, a_bits=8), calib_x=calib_x)
    acc_ptq8 = accuracy(q8, xte, yte)

    # budgets
    float_bytes = weight_size_bytes(table, Policy())
    u4 = uniform_policy(layers, w_bits=4, a_bits=A_BITS)
    u4_bytes = weight_size_bytes(table, u4)
    budget = u4_bytes if budget_fraction is None else budget_fraction * float_bytes

    # search
    sens = measure_sensitivity(net, layers, table, calib_x, val)
    cache: dict[tuple, float] = {}

    def project(policy: Policy) -> Policy:
        p = project_bits(table, policy, budget_fn=weight_size_bytes, budget=budget, bit_choices=BIT_CHOICES,
                         sensitivity=sens)
        return with_a_bits(p, layers)

    def objective(trial):
        raw = Policy(w_bits={n: trial.suggest_categorical(f"w_bits.{n}", list(BIT_CHOICES)) for n in layers})
        policy = project(raw)
        key = tuple(policy.w_bits[n] for n in layers)
        trial.set_user_attr("projected", list(key))
        if key not in cache:
            try:
                qnet = qat(net, policy, train_data, calib_x, epochs=search_epochs, lr=qat_lr, seed=seed)
            except TrialFailed:  # e.g. diverging fine-tune: this policy is not a candidate
                raise optuna.TrialPruned() from None
            cache[key] = ce_loss(predict(qnet, val[0]), val[1])
        return cache[key]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({f"w_bits.{n}": 8 for n in layers})  # pure HAQ projection of uniform 8-bit
    study.optimize(objective, n_trials=trials)
    best_key = min(cache, key=lambda k: cache[k])
    mixed = with_a_bits(Policy(w_bits=dict(zip(layers, best_key))), layers)

    # final QAT: uniform 4-bit vs mixed, same recipe, mean over `seeds` fine-tuning seeds
    accs = {"u4": [], "mixed": []}
    for s in range(seeds):
        q_u4 = qat(net, u4, train_data, calib_x, epochs=qat_epochs, lr=qat_lr, seed=s)
        q_mixed = qat(net, mixed, train_data, calib_x, epochs=qat_epochs, lr=qat_lr, seed=s)
        accs["u4"].append(accuracy(q_u4, xte, yte))
        accs["mixed"].append(accuracy(q_mixed, xte, yte))
    acc_u4, acc_mixed = round(float(np.mean(accs["u4"])), 4), round(float(np.mean(accs["mixed"])), 4)
    verdict = "beats" if acc_mixed > acc_u4 else ("ties" if acc_mixed == acc_u4 else "does NOT beat")

    # deployment form
    deploy = to_deploy_form(q_mixed)
    ref, out = predict(q_mixed, xte), predict(deploy, xte)
    agree = float((ref.argmax(1) == out.argmax(1)).mean() * 100)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "deploy")
        ms.export(deploy, ms.Tensor(xte[:64]), file_name=path, file_format="MINDIR")
        graph = nn.GraphCell(ms.load(path + ".mindir"))
        mindir_out = np.concatenate([graph(ms.Tensor(xte[i : i + 64])).asnumpy()
                                     for i in range(0, len(xte) - len(xte) % 64, 64)])
    mindir_agree = float((mindir_out.argmax(1) == ref[: len(mindir_out)].argmax(1)).mean() * 100)

    mixed_bytes = weight_size_bytes(table, mixed)
    print(f"\n=== {name} ({len(layers)} quantized layers, {len(xtr)} train / {len(xte)} test, {time.time() - t0:.0f} s)")
    print(f"float accuracy                     {acc_float:6.2f} %   ({float_bytes / 1024:.1f} KiB)")
    print(f"8-bit PTQ (w8/a8) accuracy         {acc_ptq8:6.2f} %   drop {acc_float - acc_ptq8:+.2f} point (target <= 0.5)")
    print(f"size budget                        {budget / 1024:.1f} KiB = {100 * budget / float_bytes:.1f} % of float")
    print(f"uniform 4-bit (w4/a8) QAT          {acc_u4:6.2f} %   {u4_bytes / 1024:.1f} KiB   per seed {[round(a, 2) for a in accs['u4']]}")
    print(f"mixed (search, w/a8) QAT           {acc_mixed:6.2f} %   {mixed_bytes / 1024:.1f} KiB   "
          f"{verdict} uniform 4-bit ({acc_mixed - acc_u4:+.2f} point)")
    print(f"                                   per seed {[round(a, 2) for a in accs['mixed']]} (mean over {seeds} QAT seeds)")
    print(f"mixed policy w_bits                {dict(mixed.w_bits)}")
    print(f"search: {trials} trials, {len(cache)} distinct projected policies; best val losses "
          f"{sorted(round(v, 4) for v in cache.values())[:5]}")
    print(f"deploy form vs QAT argmax agree    {agree:6.2f} %   max |logit diff| {np.abs(out - ref).max():.2e}")
    print(f"MindIR (GraphCell) vs QAT agree    {mindir_agree:6.2f} %   ({len(mindir_out)} samples)")
    return dict(float=acc_float, ptq8=acc_ptq8, u4=acc_u4, mixed=acc_mixed, agree=agree, mindir=mindir_agree)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="digits,resnet20")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3, help="QAT seeds averaged in the final comparison")
    ap.add_argument("--budget-fraction", type=float, default=None,
                    help="size budget as a fraction of the float model's bytes (default: the uniform 4-bit size)")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    if "digits" in tasks:
        tr, va, te = digits_data()
        run_task("digits / LeNet", lenet, tr, va, te, float_epochs=20, float_lr=0.05, qat_epochs=4,
                 search_epochs=2, qat_lr=0.01, trials=args.trials, budget_fraction=args.budget_fraction,
                 seeds=args.seeds)
    if "resnet20" in tasks:
        tr, va, te = synthetic_data()
        run_task("synthetic 3x16x16 / ResNet-20", resnet20, tr, va, te, float_epochs=12, float_lr=0.05,
                 qat_epochs=2, search_epochs=1, qat_lr=0.002, trials=max(2, args.trials // 2),
                 budget_fraction=args.budget_fraction, seeds=max(1, args.seeds - 1))


if __name__ == "__main__":
    main()
