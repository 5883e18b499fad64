"""Test NLL of the shipped VAE with the IWAE estimate, under the protocol of the papers.

    python benchmarks/vae_nll.py                      # k=5000 on all 10,000 test images
    python benchmarks/vae_nll.py --k 50 --n-images 500  # a quick look

Protocol (as in Burda et al., 2016, whose VAE scores 86.76 nats): MNIST test
images binarized stochastically (each pixel ~ Bernoulli(grey value), drawn once
with a fixed seed), Bernoulli likelihood, NLL = -mean log (1/k) Σ p(x,z_i)/q(z_i|x)
with k = 5000. Writes results/vae.json with the number and its provenance.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from objectcentric.checkpoints import checkpoint_dir, load_shipped, read_manifest
from objectcentric.data import load_mnist
from objectcentric.data.binarize import stochastic_binarize
from objectcentric.experiments.vae import HIDDEN_DIMS, checkpoint_name
from objectcentric.models import VAE
from objectcentric.provenance import provenance
from objectcentric.train import pick_device

TARGET_NLL = 85.0
PROTOCOL = ("MNIST test set, stochastically binarized once (pixel ~ Bernoulli(grey value), "
            "torch.Generator seed = --seed); Bernoulli likelihood; NLL = -IWAE bound with k samples "
            "from q(z|x), averaged over images (Burda et al., 2016)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--n-images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device")
    parser.add_argument("--out", default="results/vae.json")
    args = parser.parse_args()

    started = time.perf_counter()
    device = pick_device(args.device)
    name = checkpoint_name(args.latent_dim)
    model = VAE(latent_dim=args.latent_dim, hidden_dims=HIDDEN_DIMS)
    history = load_shipped(name, model)["history"]
    model = model.to(device).eval()

    images, _ = load_mnist("test")
    images = stochastic_binarize(images[: args.n_images], generator=torch.Generator().manual_seed(args.seed))
    torch.manual_seed(args.seed)
    log_px, elbo = [], []
    for start in tqdm(range(0, len(images), args.batch_size), desc=f"IWAE k={args.k}", unit="batch"):
        x = images[start : start + args.batch_size].to(device)
        log_px.append(model.iwae_log_likelihood(x, k=args.k).cpu())
        elbo.append(model.iwae_log_likelihood(x, k=1).cpu())
    log_px, elbo = torch.cat(log_px), torch.cat(elbo)

    nll = -float(log_px.mean())
    entry = read_manifest()["checkpoints"][name]
    result = {
        "test_nll_nats": round(nll, 3),
        "test_nll_standard_error": round(float(log_px.std() / len(log_px) ** 0.5), 3),
        "test_neg_elbo_nats": round(-float(elbo.mean()), 3),
        "k": args.k,
        "n_test_images": len(images),
        "protocol": PROTOCOL,
        "target_nll_nats": TARGET_NLL,
        "meets_target": nll <= TARGET_NLL,
        "checkpoint": f"checkpoints/{name}",
        "checkpoint_sha256": entry["sha256"],
        "training_epochs": len(history),
        "seconds_per_training_epoch": round(statistics.median(r["seconds"] for r in history), 2),
        "training_device": entry["device"],
        "training_command": entry["command"],
        **provenance(seed=args.seed, wall_time_s=time.perf_counter() - started, device=device),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "meets" if result["meets_target"] else "misses"
    print(f"test NLL {nll:.2f} nats (k={args.k}, {len(images)} images): {verdict} the target {TARGET_NLL}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
