"""How far each training path's loss and gradients are from a float64 evaluation of the textbook loop, at the
paper's MNIST size: the textbook loop in float32, the step loop (eager), the hand-written backward with compiled
kernels (``model.engine=handwritten_bptt``) and bf16 autocast (the step loop).

    python bench/gradient_accuracy.py                       # batch 100, T=64, LSTM 256, z 100, read 2, write 5
    python bench/gradient_accuracy.py --attention none --T 16
    python bench/gradient_accuracy.py --device cuda          # bf16 autocast on the GPU's tensor cores

Prints, per path, the loss (nats per image) and its difference to float64, and the largest gradient error over
all parameters relative to that parameter's largest float64 gradient. Same weights, data and noise everywhere.
"""

from __future__ import annotations

import argparse

import torch
from train_step import add_model_arguments, relative_gradient_error  # bench/ is on the path as a script

from draw_exp.likelihoods import bernoulli_nll
from draw_exp.model import DRAW


def loss_and_grads(model, engine, x, noise, autocast=False):
    model.set_engine(engine)
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(x, noise=noise)
    logits, kl = out.canvas_logits.to(x.dtype), out.kl.to(x.dtype)  # autocast's bf16 results, back to x's dtype
    loss = (bernoulli_nll(logits, x) + kl.sum(1)).mean()
    loss.backward()
    return loss.item(), {n: p.grad.detach().double().clone() for n, p in model.named_parameters()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attention", default="gaussian", choices=["gaussian", "none"])
    add_model_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    a = parser.parse_args()

    torch.manual_seed(a.seed)
    model = DRAW((1, 28, 28), a.T, a.latent, a.lstm, a.attention, a.read, a.write).to(a.device)
    x = torch.rand(a.batch, 1, 28, 28, device=a.device).bernoulli()
    noise = torch.randn(a.T, a.batch, a.latent, device=a.device)

    rows = {
        "textbook loop, float32": loss_and_grads(model, "textbook", x, noise),
        "fused_loop": loss_and_grads(model, "fused_loop", x, noise),
        "fused_loop, bf16 autocast": loss_and_grads(model, "fused_loop", x, noise, autocast=True),
        "handwritten_bptt": loss_and_grads(model, "handwritten_bptt", x, noise),
    }
    model.double()
    exact_loss, exact = loss_and_grads(model, "textbook", x.double(), noise.double())

    print(
        f"device {a.device}, attention {a.attention}, batch {a.batch}, T {a.T}, LSTM {a.lstm}, z {a.latent}; "
        f"float64 textbook loss {exact_loss:.6f} nats"
    )
    print(f"{'path':<48} {'loss':>12} {'loss - f64':>12} {'max grad err':>13}")
    for name, (loss, grads) in rows.items():
        error = relative_gradient_error(grads, exact)
        print(f"{name:<48} {loss:>12.6f} {loss - exact_loss:>+12.2e} {error:>13.2e}")


if __name__ == "__main__":
    main()
