# %% [markdown]
# # Variational autoencoders
#
# A variational autoencoder (VAE) {cite}`kingma2014vae,rezende2014stochastic` is a
# generative model with an inference network attached. It explains each image $x$ by
# a short latent code $z$: a *decoder* turns a code into an image, an *encoder*
# guesses which codes could have made a given image, and both are trained together
# by maximising one number, the evidence lower bound (ELBO). Every later chapter of
# this book is a VAE with more structure in $z$, so this one builds the plain model
# piece by piece on MNIST, trains it, and then looks inside.
#
# The code lives in the package `objectcentric`; this page shows each piece where it
# is explained and runs it.

# %%
# Colab: fetch the book's code and install it. Elsewhere this cell does nothing.
import os
import subprocess
import sys

REPOSITORY = "https://github.com/objectcentric-book/objectcentric-book"
CLONE = "/content/objectcentric-book"
if "google.colab" in sys.modules:
    try:
        if not os.path.isdir(CLONE):
            subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, CLONE], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", CLONE], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"Could not fetch or install the book's code from {REPOSITORY}: {error}.\n"
            "Check that this runtime can reach GitHub and run this cell again; or upload "
            f"a copy of the repository to {CLONE} and run it again."
        ) from None
    os.chdir(os.path.join(CLONE, "notebooks"))

# %% [markdown]
# ## Set-up
#
# One switch decides how much this page computes (see the introduction): *read*
# loads the model shipped with the book, *quick* trains for a few steps only,
# *train* trains from scratch. Set `TRAIN = True` below (or `OBJECTCENTRIC_TRAIN=1`)
# to train yourself; on a GPU that takes a few minutes.

# %%
import matplotlib.pyplot as plt
import torch

from objectcentric.checkpoints import read_manifest
from objectcentric.data import load_mnist
from objectcentric.data.binarize import stochastic_binarize
from objectcentric.experiments.vae import VAERecipe
from objectcentric.models import VAE
from objectcentric.modes import QUICK, TRAIN as TRAIN_MODE, run_mode
from objectcentric.runner import load_or_train
from objectcentric.train import pick_device, replay_history
from objectcentric.viz import compare_rows, image_grid, latent_manifold, show_source
from objectcentric.widgets import latent_traversal

TRAIN = False  # True: train from scratch even when a trained model is shipped
MODE = TRAIN_MODE if TRAIN and run_mode() != QUICK else run_mode()
device = pick_device()
torch.manual_seed(0)
print(f"mode: {MODE}, device: {device}")

# %% [markdown]
# ## The data
#
# MNIST's 28×28 grey digits, from the package's offline-first loader. The likelihood
# papers we compare with {cite}`burda2016iwae` treat each pixel as a coin flip, so we
# *binarize* the images: a pixel turns white with probability equal to its grey value,
# drawn afresh at every training step. The Bernoulli likelihood below then fits the
# data exactly, and our test numbers are comparable with theirs.

# %%
train_images, train_labels = load_mnist("train")
test_images, test_labels = load_mnist("test")
print("train", tuple(train_images.shape), "test", tuple(test_images.shape),
      f"pixel range [{train_images.min():.0f}, {train_images.max():.0f}]")
batch = test_images[:10]
compare_rows({"grey": batch, "binarized (one draw)": stochastic_binarize(batch)});

# %% [markdown]
# ## The encoder: an image to a distribution over codes
#
# The encoder is a fully connected network that reads the 784 pixels and outputs, for
# each of the $d$ latents, a mean and a log standard deviation: the parameters of a
# diagonal Gaussian $q_\phi(z \mid x)$. It does not output one code but a cloud of
# plausible codes; its width says how sure the encoder is.

# %%
show_source(VAE.__init__)
show_source(VAE._posterior)

# %%
model = VAERecipe().build_model()
posterior = model.encode(batch)
print("encoder:", model.encoder)
print("q(z|x) mean", tuple(posterior.mean.shape), "std", tuple(posterior.stddev.shape))

# %% [markdown]
# ## The reparameterization trick
#
# To train the encoder we need the gradient of an expectation over $z \sim q_\phi(z\mid x)$
# with respect to $\phi$. Sampling is not differentiable, but a Gaussian sample can be
# written as a deterministic function of the parameters and independent noise:
# $z = \mu_\phi(x) + \sigma_\phi(x) \odot \varepsilon$ with $\varepsilon \sim \mathcal N(0, I)$.
# The randomness moves into $\varepsilon$, and gradients flow through $\mu$ and $\sigma$.
# `torch.distributions.Normal.rsample` does exactly this:

# %%
z = posterior.rsample()
z.sum().backward()
grad = model.encoder[0].weight.grad
print("z", tuple(z.shape), "| gradient reached the encoder's first layer:", bool(grad.abs().sum() > 0))
model.zero_grad()

# %% [markdown]
# ## The decoder: a code to pixel probabilities
#
# The decoder mirrors the encoder. It maps a code to one logit per pixel; the pixels
# are independent Bernoulli variables given $z$, so $\log p_\theta(x \mid z)$ is a sum
# of 784 binary cross-entropies.

# %%
show_source(VAE.decode)
show_source(VAE.log_likelihood)
logits = model.decode(z.detach())
print("logits", tuple(logits.shape), "| an untrained decoder draws grey noise:")
image_grid(torch.sigmoid(logits), nrow=10);

# %% [markdown]
# ## The two terms of the ELBO
#
# The ELBO is a lower bound on $\log p_\theta(x)$:
#
# $$
# \log p_\theta(x) \;\ge\; \underbrace{\mathbb E_{q_\phi(z\mid x)}\big[\log p_\theta(x\mid z)\big]}_{\text{reconstruction}}
# \;-\; \underbrace{\mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p(z)\big)}_{\text{regularisation}} .
# $$
#
# The first term asks codes drawn from the encoder to reconstruct the image; the second
# keeps the encoder's cloud close to the prior $p(z)=\mathcal N(0, I)$, which is what
# lets us later *sample* new images by decoding prior draws. The KL between two
# Gaussians has a closed form, which `torch.distributions.kl_divergence` uses. The
# loss we minimise is the negative ELBO; the weight `beta` on the KL is 1 here and
# becomes the subject of Chapter 2.

# %%
show_source(VAE.loss)
with torch.no_grad():
    terms = model.loss(stochastic_binarize(batch))
print({name: round(float(value), 2) for name, value in terms.items()})


# %% [markdown]
# ## Training
#
# One training loop serves every chapter (`objectcentric.train.fit`): it draws the live
# loss plot below, writes a checkpoint after every epoch (resumable, also after
# Ctrl-C), and stops with a clear message if the loss ever becomes NaN. The full
# recipe is 50 latents, two hidden layers of 512 units, Adam with a cosine learning
# rate from $10^{-3}$ down to $10^{-4}$, batches of 100, and a fresh binarization at
# every step. In read mode we load the trained model and replay its recorded history
# as the same plot; `val_*` curves are on 2,000 held-out test images.

# %%
recipe = VAERecipe()  # the full settings, as data: print(recipe) shows them all
run = load_or_train(recipe, MODE)
model, history, loaded = run.model.to(device), run.history, run.record["loaded"]
if loaded:
    replay_history(history)

# %%
if loaded:
    entry = read_manifest()["checkpoints"][recipe.shipped_name()]
    print(f"trained by: {entry['command']}\ncommit {entry['commit'][:12]}, {entry['device']}, "
          f"{entry['wall_time_s'] / 60:.0f} min, {len(history)} epochs; "
          f"final held-out negative ELBO {history[-1]['val_neg_elbo']:.2f} nats")
else:
    print(f"trained here for {len(history)} epochs ({MODE} mode)"
          + ("; quick-mode numbers are not results" if MODE == QUICK else ""))

# %% [markdown]
# ## Reconstructions and samples
#
# Test digits the model never saw, above their reconstructions (decoded from the
# posterior mean), then new digits decoded from codes drawn from the prior.

# %%
with torch.no_grad():
    shown = test_images[:12].to(device)
    compare_rows({"test digits": shown.cpu(), "reconstructions": model.reconstruct(shown).cpu()}, nrow=12)
    image_grid(model.sample(40, generator=None).cpu(), nrow=10, title="samples from the prior");

# %% [markdown]
# ## Which latents are used?
#
# The KL term charges every latent for the information it carries. A latent that
# does not help reconstruction is pushed back onto the prior, KL ≈ 0, and is
# ignored by the decoder. Ranking latents by their average KL shows how many the
# model really uses; the traversal below follows that ranking.

# %%
with torch.no_grad():
    kl_per_latent = model.kl_per_latent(test_images[:2000].to(device)).cpu()
order = torch.argsort(kl_per_latent, descending=True)
active = int((kl_per_latent > 0.01).sum())
fig, ax = plt.subplots(figsize=(9, 2.5))
ax.bar(range(len(order)), kl_per_latent[order])
ax.set_xlabel("latent, sorted by KL"); ax.set_ylabel("mean KL (nats)")
ax.set_title(f"{active} of {len(order)} latents carry information (KL > 0.01 nats)");


# %% [markdown]
# ## Latent traversal
#
# Start from the code of one test digit and move one latent at a time from −3 to +3
# while the others stay put. Each row is one latent, most informative first. In the
# rendered book the sliders switch between images decoded in advance, so they work
# without a kernel; in a running notebook the large image on top also decodes your
# combination of all sliders live.

# %%
def decode_probabilities(codes):
    with torch.no_grad():
        return torch.sigmoid(model.decode(codes.to(device))).cpu()[:, 0]


base = model.encode(test_images[:1].to(device)).mean[0].cpu()
labels = {int(i): f"z[{int(i)}]  KL {kl_per_latent[i]:.2f}" for i in order}
latent_traversal(decode_probabilities, base, order.tolist(), max_latents=8, labels=labels)


# %% [markdown]
# ## A two-dimensional latent space
#
# With only two latents the whole code space fits on a page. We train (or load) a
# second model with $d=2$ and decode a grid of codes spaced by the prior's quantiles:
# digits morph smoothly into each other, and each region of the plane holds one kind
# of digit. On the right, the posterior means of test digits, coloured by their label
# (which the model never saw).

# %%
model_2d = load_or_train(VAERecipe(latent_dim=2, epochs=40), MODE).model.to(device)

fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2))
latent_manifold(lambda codes: torch.sigmoid(model_2d.decode(codes.to(device))).cpu(), n=15, ax=left)
with torch.no_grad():
    means = model_2d.encode(test_images[:5000].to(device)).mean.cpu()
points = right.scatter(means[:, 0], means[:, 1], c=test_labels[:5000], cmap="tab10", s=3)
right.legend(*points.legend_elements(), title="digit", loc="upper right", fontsize=8)
right.set_xlabel("$z_1$"); right.set_ylabel("$z_2$"); right.set_title("posterior means of test digits");

# %% [markdown]
# ## The IWAE bound: how good is the model?
#
# The ELBO only bounds $\log p(x)$ from below, and the gap is the KL between the
# encoder's guess and the true posterior. Importance weighting tightens it
# {cite}`burda2016iwae`: with $k$ samples $z_i \sim q(z\mid x)$,
#
# $$
# \log p(x) \;\ge\; \mathcal L_k = \mathbb E\left[\log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i \mid x)}\right],
# \qquad \mathcal L_1 = \text{ELBO},\quad \mathcal L_k \uparrow \log p(x) \text{ as } k\to\infty .
# $$
#
# The same trained model is scored more tightly as $k$ grows. Papers report
# $-\mathcal L_{5000}$ on the 10,000 test images as the model's negative
# log-likelihood (NLL); `benchmarks/vae_nll.py` computes exactly that and writes
# `results/vae.json`. Here we watch the bound tighten on a few hundred test images.

# %%
show_source(VAE.iwae_log_likelihood)

# %%
ks = [1, 5, 50] if MODE == QUICK else [1, 5, 50, 500]
n_images = 20 if MODE == QUICK else 300
generator = torch.Generator().manual_seed(0)
scored = stochastic_binarize(test_images[:n_images], generator=generator).to(device)
torch.manual_seed(0)
bounds = [-float(model.iwae_log_likelihood(scored, k=k).mean()) for k in ks]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(ks, bounds, "o-")
ax.set_xscale("log"); ax.set_xlabel("k (importance samples)"); ax.set_ylabel("$-\\mathcal{L}_k$ (nats)")
ax.set_title(f"the bound tightens with k ({n_images} binarized test images)")
for k, b in zip(ks, bounds):
    ax.annotate(f"{b:.1f}", (k, b), textcoords="offset points", xytext=(4, 4), fontsize=8)

# %%
import json
from pathlib import Path

result_file = Path("../results/vae.json")
if MODE != QUICK and result_file.exists():
    result = json.loads(result_file.read_text())
    print(f"test NLL (IWAE, k={result['k']}, all {result['n_test_images']} test images): "
          f"{result['test_nll_nats']:.2f} nats\nprotocol: {result['protocol']}\n"
          f"measured by: {result['command']} on {result['device']}, commit {result['commit'][:12]}")
    print("for comparison, Burda et al. (2016): VAE 86.76, IWAE (k=50) 84.78 nats")
else:
    print("no recorded benchmark shown in quick mode (run `python benchmarks/vae_nll.py`)")

# %% [markdown]
# ## What we built
#
# An encoder that outputs a Gaussian over codes, the reparameterization trick that
# lets gradients through the sampling, a Bernoulli decoder, and the ELBO that trades
# reconstruction against staying close to the prior; then the IWAE bound that scores
# the model. The next chapters keep this skeleton and change what $z$ is: weighted
# by β (Chapter 2), discrete (Chapter 3), or a list of objects with positions (AIR).
