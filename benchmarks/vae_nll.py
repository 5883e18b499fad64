"""Test NLL of the shipped VAE with the IWAE estimate, under the protocol of the papers.

    python benchmarks/vae_nll.py                      # both shipped models, k=5000 on all 10,000 test images
    python benchmarks/vae_nll.py --k 50 --n-images 500  # a quick look

Protocol (as in Burda et al., 2016, whose VAE scores 86.76 nats): MNIST test
images binarized stochastically (each pixel ~ Bernoulli(grey value), drawn once
with a fixed seed), Bernoulli likelihood, NLL = -mean log (1/k) Σ p(x,z_i)/q(z_i|x)
with k = 5000. Writes results/vae.json through the one records writer.
"""

import argparse
import time

from objectcentric import records
from objectcentric.checkpoints import load_shipped, read_manifest
from objectcentric.experiments.vae import IWAERecipe, VAERecipe, nll_record, nll_results
from objectcentric.train import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--n-images", type=int, default=10_000)
    parser.add_argument("--device")
    args = parser.parse_args()

    started = time.perf_counter()
    device = pick_device(args.device)
    measured = {}
    for name, recipe in (("plain_vae", VAERecipe(latent_dim=50)), ("iwae", IWAERecipe())):
        model = recipe.build_model()
        history = load_shipped(recipe.shipped_name(), model)["history"]
        entry = read_manifest()["checkpoints"][recipe.shipped_name()]
        measured[name] = nll_record(model.to(device).eval(), history, entry, k=args.k, n_images=args.n_images)
        print(f"{name}: test NLL {measured[name]['test_nll_nats']:.2f} nats (k={args.k}, "
              f"{measured[name]['n_test_images']} images)")
    records.write_results("vae", nll_results(measured), provenance=records.provenance(
        seed=0, wall_time_s=time.perf_counter() - started, device=device))
    print("wrote results/vae.json")


if __name__ == "__main__":
    main()
