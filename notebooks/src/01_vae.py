# %% [markdown]
# # Variational autoencoders
#
# A variational autoencoder (VAE) {cite}`kingma2014vae,rezende2014stochastic` is a
# generative model with an inference network attached. It explains each image $x$ by
# a short latent code $z$: a *decoder* turns a code into an image, an *encoder*
# guesses which codes could have made a given image, and both are trained together
# by maximising one number, the evidence lower bound (ELBO). Most later chapters of
# this book are VAEs with more structure in $z$, so this one builds the plain model
# piece by piece on MNIST, trains it, looks inside, and ends with what it gets wrong.
#
# The code lives in the package `objectcentric`; this page shows each piece where it
# is explained and runs it.

# %% tags=["hide-input"]
# Colab: fetch the book's code and install it. Elsewhere this cell does nothing.
import os
import subprocess
import sys

REPOSITORY = "https://github.com/objectcentric-book/objectcentric-book"
CLONE = "/content/objectcentric-book"
if "google.colab" in sys.modules:
    try:
        if not os.path.isdir(CLONE):
            clone = ["git", "clone", "--depth", "1", REPOSITORY, CLONE]
            subprocess.run(clone, check=True)
        install = [sys.executable, "-m", "pip", "install", "--quiet", CLONE]
        subprocess.run(install, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(
            f"Could not fetch or install the book's code from {REPOSITORY}: "
            f"{error}.\nCheck that this runtime can reach GitHub and run this cell "
            f"again; or upload a copy of the repository to {CLONE} and run it again."
        ) from None
    os.chdir(os.path.join(CLONE, "notebooks"))

# %%
TRAIN = False  # True: train from scratch even when a trained model is shipped

import torch
from IPython.display import display

from objectcentric import book
from objectcentric.chapters import vae as chapter
from objectcentric.data import load_mnist
from objectcentric.data.binarize import stochastic_binarize
from objectcentric.experiments.vae import IWAERecipe, VAERecipe
from objectcentric.models import IWAE, VAE
from objectcentric.modes import QUICK
from objectcentric.records import read_results
from objectcentric.runner import load_or_train
from objectcentric.train import replay_history
from objectcentric.viz import compare_rows, image_grid, show_source
from objectcentric.widgets import latent_traversal

MODE, device = book.setup("vae", train=TRAIN)

# %% [markdown]
# ## The data
#
# MNIST's 28×28 grey digits {cite}`larochelle2011nade`, from the package's
# offline-first loader: 60,000 for training, 10,000 for testing. The likelihood
# papers we compare with {cite}`burda2016iwae` treat each pixel as a coin flip, so
# we *binarize* the images: a pixel turns white with probability equal to its grey
# value, drawn afresh at every training step ({numref}`fig-vae-data`). The
# Bernoulli likelihood below then fits the data exactly, and our test numbers are
# comparable with theirs.
#
# Every random draw on this page starts from a fixed *seed*, a number that fixes
# the initial weights, the order of the training batches and the binarization
# draws, so that running the page again gives the same pictures and numbers. The
# runs recorded with the book use seed 0.

# %% mystnb={"figure": {"caption": "Ten MNIST test digits as stored (grey values in [0, 1]), and one binarization of them: each pixel is white with probability equal to its grey value. A new draw is made at every training step.", "name": "fig-vae-data"}, "image": {"alt": "ten grey MNIST digits above their binarized versions"}}
train_images, train_labels = load_mnist("train")
test_images, test_labels = load_mnist("test")
batch = test_images[:10]
fig = compare_rows({"grey": batch, "binarized (one draw)": stochastic_binarize(batch)})

# %% [markdown]
# ## The encoder: an image to a distribution over codes
#
# The encoder is a fully connected network that reads the 784 pixels and outputs,
# for each of the $d$ latents, a mean and a log standard deviation: the parameters
# of a diagonal Gaussian $q_\phi(z \mid x)$. It does not output one code but a
# cloud of plausible codes; its width says how sure the encoder is.

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
# To train the encoder we need the gradient of an expectation over
# $z \sim q_\phi(z\mid x)$ with respect to $\phi$. Sampling is not differentiable,
# but a Gaussian sample can be written as a deterministic function of the
# parameters and independent noise:
#
# $$
# z = \mu_\phi(x) + \sigma_\phi(x) \odot \varepsilon,
# \qquad \varepsilon \sim \mathcal N(0, I).
# $$
#
# The randomness moves into $\varepsilon$, and gradients flow through $\mu$ and
# $\sigma$. `torch.distributions.Normal.rsample` does exactly this:

# %%
z = posterior.rsample()
z.sum().backward()
grad = model.encoder[0].weight.grad
print(
    "z",
    tuple(z.shape),
    "| gradient reached the encoder's first layer:",
    bool(grad.abs().sum() > 0),
)
model.zero_grad()

# %% [markdown]
# ## The decoder: a code to pixel probabilities
#
# The decoder mirrors the encoder. It maps a code to one logit per pixel; the
# pixels are independent Bernoulli variables given $z$, so
# $\log p_\theta(x \mid z)$ is a sum of 784 binary cross-entropies. Untrained, it
# draws grey noise ({numref}`fig-vae-untrained`).

# %%
show_source(VAE.decode)
show_source(VAE.log_likelihood)

# %% mystnb={"figure": {"caption": "Pixel probabilities decoded by the untrained decoder from the codes of the ten digits above: grey noise, as every logit starts near zero.", "name": "fig-vae-untrained"}, "image": {"alt": "ten grey noise images"}}
logits = model.decode(z.detach())
ax = image_grid(torch.sigmoid(logits), nrow=10)

# %% [markdown]
# ## The two terms of the ELBO
#
# The ELBO is a lower bound on $\log p_\theta(x)$:
#
# $$
# \begin{aligned}
# \log p_\theta(x) \;\ge\;
# &\underbrace{\mathbb E_{q_\phi(z\mid x)}\big[\log p_\theta(x\mid z)\big]}
#   _{\text{reconstruction}} \\
# &-\underbrace{\mathrm{KL}\big(q_\phi(z\mid x)\,\|\,p(z)\big)}
#   _{\text{regularisation}} .
# \end{aligned}
# $$
#
# The first term asks codes drawn from the encoder to reconstruct the image; the
# second keeps the encoder's cloud close to the prior $p(z)=\mathcal N(0, I)$,
# which is what lets us later *sample* new images by decoding prior draws. The KL
# between two Gaussians has a closed form, which
# `torch.distributions.kl_divergence` uses. The loss we minimise is the negative
# ELBO; the weight `beta` on the KL is 1 here and becomes the subject of
# Chapter 2.

# %%
show_source(VAE.loss)
with torch.no_grad():
    terms = model.loss(stochastic_binarize(batch))
print({name: book.fmt(float(value)) for name, value in terms.items()})

# %% [markdown]
# ## Training
#
# One training loop serves every chapter (`objectcentric.train.fit`): it draws the
# live loss plot, writes a checkpoint after every epoch (resumable, also after an
# interruption), and stops with a clear message if the loss ever becomes NaN. The
# full recipe is 50 latents, two hidden layers of 512 units, Adam with a cosine
# learning rate from $10^{-3}$ down to $10^{-4}$, batches of 100, 400 passes over
# the training set, and a fresh binarization at every step. The page loads the
# trained model shipped with the book and replays its recorded history
# ({numref}`fig-vae-training`), with the curves on 2,000 held-out images: which
# ones, the line under the figure says.

# %% mystnb={"figure": {"caption": "Training history of the 50-latent VAE: the negative ELBO and its KL term per image, on the training batches and on 2,000 held-out images, after each pass over the data.", "name": "fig-vae-training"}, "image": {"alt": "two panels of training curves: negative ELBO falling, KL rising then levelling"}}
recipe = VAERecipe()  # the full settings, as data: print(recipe) shows them all
run = load_or_train(recipe, MODE)
model, history = run.model.to(device), run.history
replay_history(history, keys=["neg_elbo", "kl"])

# %% [markdown]
# After the last pass the held-out negative ELBO is the number below; the IWAE
# section further down turns it into the tighter estimate papers report.

# %%
print(f"The held-out curves are on {chapter.monitored_on(run)}.")
final = {key: book.fmt(value, 4) for key, value in history[-1].items()}
print(f"{len(history)} passes; held-out negative ELBO {final['val_neg_elbo']} nats")
print(f"= reconstruction {final['val_reconstruction']} + KL {final['val_kl']}")

# %% [markdown]
# ## Reconstructions and samples
#
# {numref}`fig-vae-reconstructions` shows test digits the model never saw, above
# their reconstructions (decoded from the posterior mean), and
# {numref}`fig-vae-samples` new digits decoded from codes drawn from the prior.

# %% mystnb={"figure": {"caption": "Twelve test digits (top) and the pixel probabilities the VAE decodes from their posterior means (bottom).", "name": "fig-vae-reconstructions"}, "image": {"alt": "twelve test digits above their reconstructions"}}
with torch.no_grad():
    shown = test_images[:12].to(device)
    reconstructions = model.reconstruct(shown).cpu()
fig = compare_rows(
    {"test digits": shown.cpu(), "reconstructions": reconstructions}, nrow=12
)

# %% mystnb={"figure": {"caption": "Forty images decoded from codes drawn from the prior N(0, I): pixel probabilities, as a VAE's samples are usually shown. Most are digits; some are blurred or blend two digits (see What fails).", "name": "fig-vae-samples"}, "image": {"alt": "forty generated digits, some blurry"}}
with torch.no_grad():
    samples = model.sample(40, generator=None).cpu()
ax = image_grid(samples, nrow=10)

# %% [markdown]
# ## Which latents are used?
#
# The KL term charges every latent for the information it carries. A latent that
# does not help reconstruction is pushed back onto the prior, KL ≈ 0, and is
# ignored by the decoder. Ranking latents by their average KL
# ({numref}`fig-vae-kl`) shows how many the model really uses; the traversal below
# follows that ranking.

# %% mystnb={"figure": {"caption": "Average KL divergence of each of the 50 latents from the prior, over 2,000 test digits, sorted. Latents near zero carry no information: the decoder ignores them.", "name": "fig-vae-kl"}, "image": {"alt": "bar chart of KL per latent, falling to zero after the first latents"}}
with torch.no_grad():
    kl_per_latent = model.kl_per_latent(test_images[:2000].to(device)).cpu()
order = torch.argsort(kl_per_latent, descending=True)
fig = chapter.plot_kl_per_latent(kl_per_latent, threshold=0.01)


# %% [markdown]
# ## Latent traversal
#
# Start from the code of one test digit and move one latent at a time from −3 to
# +3 while the others stay put. Each row is one latent, most informative first.
# The sliders switch between images decoded in advance, so they work in the book
# without a running Python kernel. The image on top combines every row's value at
# once; it is decoded live, so it follows the sliders only in a running notebook
# (in the book it stays at the starting code).


# %% tags=["hide-input"]
def decode_probabilities(codes):
    with torch.no_grad():
        return torch.sigmoid(model.decode(codes.to(device))).cpu()[:, 0]


base = model.encode(test_images[:1].to(device)).mean[0].detach().cpu()
labels = {int(i): f"z[{int(i)}]  KL {float(kl_per_latent[i]):.2f}" for i in order}
latent_traversal(
    decode_probabilities, base, order.tolist(), max_latents=8, labels=labels
)


# %% [markdown]
# ## A two-dimensional latent space
#
# With only two latents the whole code space fits on a page. We load (or train) a
# second model with $d=2$ and decode a grid of codes spaced by the prior's
# quantiles: digits morph smoothly into each other, and each region of the plane
# holds one kind of digit ({numref}`fig-vae-latent-2d`, left). On the right, the
# posterior means of test digits, coloured by their label, which the model never
# saw.

# %% mystnb={"figure": {"caption": "The 2-latent VAE. Left: images decoded from a 15 × 15 grid of codes at the prior's quantiles. Right: the posterior means of 5,000 test digits, coloured by their true label.", "name": "fig-vae-latent-2d"}, "image": {"alt": "a grid of morphing digits beside a scatter of coloured clusters"}}
model_2d = load_or_train(VAERecipe(latent_dim=2, epochs=40), MODE).model.to(device)


def decode_2d(codes):
    with torch.no_grad():
        return torch.sigmoid(model_2d.decode(codes.to(device))).cpu()


with torch.no_grad():
    posterior_2d = model_2d.encode(test_images.to(device))
means_2d, stds_2d = posterior_2d.mean.cpu(), posterior_2d.stddev.cpu()
fig = chapter.plot_latent_space(decode_2d, means_2d[:5000], test_labels[:5000])

# %% [markdown]
# ## The IWAE bound: how good is the model?
#
# The ELBO only bounds $\log p(x)$ from below, and the gap is the KL between the
# encoder's guess and the true posterior. Importance weighting tightens it
# {cite}`burda2016iwae`: with $k$ samples $z_i \sim q(z\mid x)$,
#
# $$
# \begin{aligned}
# \log p(x) \;\ge\; \mathcal L_k
# &= \mathbb E\left[\log \frac1k \sum_{i=1}^k \frac{p(x, z_i)}{q(z_i \mid x)}\right], \\
# \mathcal L_1 &= \text{ELBO}, \qquad
# \mathcal L_k \uparrow \log p(x) \text{ as } k\to\infty .
# \end{aligned}
# $$
#
# The same trained model is scored more tightly as $k$ grows. Papers report
# $-\mathcal L_{5000}$ on the 10,000 test images as the model's negative
# log-likelihood (NLL). {numref}`fig-vae-iwae` watches the bound tighten on a few
# hundred test images; the table after it gives the full measurement.

# %%
show_source(VAE.iwae_log_likelihood)

# %% mystnb={"figure": {"caption": "The negative IWAE bound of the 50-latent VAE against the number k of importance samples, on a few hundred binarized test digits: k = 1 is the negative ELBO; larger k gives a tighter (lower) estimate of the negative log-likelihood.", "name": "fig-vae-iwae"}, "image": {"alt": "a falling curve of the negative bound against k on a log axis"}}
ks = [1, 5, 50] if MODE == QUICK else [1, 5, 50, 500]
n_images = 20 if MODE == QUICK else 300
generator = torch.Generator().manual_seed(0)
scored = stochastic_binarize(test_images[:n_images], generator=generator).to(device)
torch.manual_seed(0)
bounds = [-float(model.iwae_log_likelihood(scored, k=k).mean()) for k in ks]
fig = chapter.plot_iwae_bounds(ks, bounds, n_images)

# %% [markdown]
# ## Training on the bound: a deeper model
#
# The bound $\mathcal L_k$ is more than a measuring stick: Burda et al.
# {cite}`burda2016iwae` train on it. Its gradient, with reparameterized samples,
# is a weighted sum of the single-sample gradients,
#
# $$
# \nabla \mathcal L_k = \mathbb E\left[\sum_{i=1}^k \tilde w_i \,\nabla \log w_i\right],
# \qquad w_i = \frac{p(x, z_i)}{q(z_i \mid x)}, \quad \tilde w_i = \frac{w_i}{\sum_j w_j},
# $$
#
# so a sample that explains the digit badly counts little. With $k = 1$ this is
# the VAE's gradient, and the encoder is punished for every code it proposes
# that the decoder cannot use; with $k = 5$ it may spread its guesses, and the
# decoder is fitted to what the best of them explain. The bound being tighter,
# the model it trains is judged more nearly by $\log p(x)$ itself.
#
# The second change is depth. Two layers of latents stand above the pixels: 50
# latents $h_2$ at the top, 100 latents $h_1$ below them, each drawn from a
# Gaussian whose mean and scale the layer above sets,
#
# $$
# \begin{aligned}
# p(x, h_1, h_2) &= p(h_2)\, p(h_1 \mid h_2)\, p(x \mid h_1), \\
# q(h_1, h_2 \mid x) &= q(h_1 \mid x)\, q(h_2 \mid h_1).
# \end{aligned}
# $$
#
# The prior over $h_1$ is no longer a fixed $\mathcal N(0, I)$ but a learned
# mixture of Gaussians, one for every $h_2$, which can follow the shape the
# encoder's codes take. Everything else is the recipe above: the same data,
# validation digits, optimizer and schedule, 400 passes. The networks are
# narrower than the plain VAE's (Burda et al.'s 200 and 100 tanh units), but the
# decoders run five times, so a pass takes longer; how long, the block under the
# table says.
#
# One training sample's log-weight runs up the inference network and back down
# the generative one:

# %%
show_source(IWAE.log_weights)

# %% [markdown]
# The loss is then one line on top of it, the log of the mean weight:
# `logsumexp(log_w, 0) - log k`. The page loads the shipped model and replays
# its history ({numref}`fig-iwae-training`).

# %% mystnb={"figure": {"caption": "Training history of the two-layer IWAE: the negative 5-sample bound it is trained on, and the negative ELBO of the same samples, on the training batches and on 2,000 validation digits, after each pass over the data. The bound lies below the ELBO: it is tighter.", "name": "fig-iwae-training"}, "image": {"alt": "two panels of falling training curves for the two-layer IWAE"}}
iwae_run = load_or_train(IWAERecipe(), MODE)
iwae = iwae_run.model.to(device)
replay_history(iwae_run.history, keys=["neg_iwae_bound_k5", "neg_elbo"])

# %% mystnb={"figure": {"caption": "Ten samples of each model, decoded from prior draws (pixel probabilities): the plain VAE's (top) and the two-layer IWAE's, whose top-layer draw passes through a drawn middle layer (bottom).", "name": "fig-iwae-samples"}, "image": {"alt": "two blocks of generated digits, one per model"}}
fig = compare_rows(
    {
        "VAE": model.sample(10, generator=torch.Generator().manual_seed(3)).cpu(),
        "two-layer IWAE": iwae.sample(
            10, generator=torch.Generator().manual_seed(3)
        ).cpu(),
    },
    nrow=10,
)

# %% [markdown]
# The recorded measurement of both models on all 10,000 test digits, next to
# Burda et al.'s {cite}`burda2016iwae` models of the same shapes on the same
# protocol (a test set binarized once, $k = 5000$):

# %%
result = read_results("vae")
display(chapter.nll_table(result))
print(chapter.nll_gap_sentence(result))
display(
    book.how_measured(
        "vae",
        keys=["test_nll_nats"],
        seeds=[0],
        details=chapter.training_details(),
    )
)

# %% [markdown]
# ## What fails
#
# The numbers above are good; the pictures have two faults any reader of
# {numref}`fig-vae-samples` notices. The samples are **blurry**, and some are not
# digits at all but **blends** of two. Both come from the model's assumptions, and
# both are what the later chapters' structure is for.
#
# **Blur.** The decoder gives every pixel its own coin, independent of the others
# once $z$ is fixed. The pictures above show each coin's probability, not a
# drawn image. Where a code does not pin down exactly where a stroke goes, the
# best the decoder can do with independent pixels is to spread the stroke's ink
# over every place it might be: a grey halo. Drawing the pixels does not sharpen
# it: it speckles it ({numref}`fig-vae-blur`, bottom row). Part of the grey is
# honest: we train on binarized digits, so a pixel whose grey value is 0.5 really
# is a coin flip, and the data's own grey values (top row) have soft edges too.
# The table after the figure measures how much of each picture is left to chance.

# %% mystnb={"figure": {"caption": "Why VAE samples look blurry. From the top: grey test digits (the data's own coin-flip probabilities); the VAE's reconstructions of them; images decoded from prior draws (pixel probabilities); and one draw of every pixel of those images, which is speckled rather than sharp.", "name": "fig-vae-blur"}, "image": {"alt": "four rows of digits: data, reconstructions, blurry samples, speckled drawn samples"}}
with torch.no_grad():
    sample_probabilities = model.sample(
        10, generator=torch.Generator().manual_seed(1)
    ).cpu()
drawn = torch.bernoulli(
    sample_probabilities, generator=torch.Generator().manual_seed(2)
)
fig = compare_rows(
    {
        "test digits (grey values)": test_images[:10],
        "their reconstructions": reconstructions[:10],
        "samples: pixel probabilities": sample_probabilities,
        "samples: every pixel drawn": drawn,
    },
    nrow=10,
)

# %%
with torch.no_grad():
    many_samples = model.sample(1000, generator=torch.Generator().manual_seed(3)).cpu()
    many_reconstructions = model.reconstruct(test_images[:1000].to(device)).cpu()
chapter.grey_pixel_table(
    {
        "test digits (grey values)": test_images[:1000],
        "reconstructions of them": many_reconstructions,
        "samples from the prior": many_samples,
    }
)

# %% [markdown]
# **Holes.** The prior promises that every code near the origin is as likely as
# the Gaussian says. The encoder does not keep that promise: it places the test
# digits' codes in tight clusters, one cloud per kind of digit, with gaps between
# them. The *aggregate posterior*
# $q(z) = \frac1N \sum_n q(z \mid x_n)$ says where the data's codes really are;
# where it is much smaller than $p(z)$, the decoder was hardly ever trained, and a
# prior draw that lands there decodes to a blurred or mixed digit.
# {numref}`fig-vae-holes` maps $q(z)/p(z)$ for the 2-latent model over all 10,000
# test digits and decodes prior draws from inside and outside its holes.

# %% mystnb={"figure": {"caption": "The holes of the 2-latent VAE. Left: log10 of the aggregate posterior of the 10,000 test digits over the prior; blue where the data's codes are denser than the prior expects, red where rarer; the black contour is q(z) = p(z)/10. Right: prior draws that fall in a hole (red crosses) decode to blurred or mixed digits; draws among the digits (white dots) decode to clearer ones.", "name": "fig-vae-holes"}, "image": {"alt": "a map of the 2-D latent space with red holes between blue clusters, beside decoded images from holes and from clusters"}}
fig = chapter.plot_holes(means_2d, stds_2d, decode_2d, hole_ratio=0.1)

# %%
fractions = chapter.hole_fractions(means_2d, stds_2d, ratios=(0.1, 0.01))
spread = chapter.posterior_std_summary(stds_2d)
display(
    book.table(
        [
            [f"q(z) below p(z) / {round(1 / r)}", book.pct(f)]
            for r, f in fractions.items()
        ],
        ["where a prior draw lands", "share of 4,000 prior draws"],
        caption="How often sampling the 2-latent VAE's prior lands in a hole",
        notes="The encoder's posterior standard deviations: "
        f"median {book.fmt(spread['median'], 2)}, "
        f"90th percentile {book.fmt(spread['p90'], 2)}, against the prior's 1.",
    )
)

# %% [markdown]
# The encoder's posteriors are narrow (the note under the table gives their
# widths), far narrower than the prior: the ELBO rewards precise codes with better
# reconstructions and charges only a few nats of KL for them, so nothing forces the
# clouds to fill the space between them. In 50 dimensions the holes cannot be
# drawn, and this page does not measure them there. Later chapters attack both
# faults with structure: a code made of parts that each draw their own piece of
# the picture, discrete choices of which kind of object to draw, and positions
# that say where.
#
# ## Summary
#
# - A VAE pairs a decoder $p_\theta(x \mid z)$ with an encoder $q_\phi(z \mid x)$
#   and trains both on the ELBO: reconstruction minus the KL of the encoder's
#   cloud from the prior.
# - The reparameterization trick, $z = \mu + \sigma \odot \varepsilon$, lets the
#   gradient reach the encoder through the sampling.
# - The KL term switches off latents that do not pay for themselves; only a part
#   of the 50 latents carries information.
# - The IWAE bound $\mathcal L_k$ tightens the ELBO towards $\log p(x)$; with
#   $k = 5000$ it is how VAEs are compared; the table above puts ours next to
#   Burda et al.'s.
# - Training on $\mathcal L_5$ instead of the ELBO, with a second layer of
#   latents, is Burda et al.'s stronger model; the table measures it against the
#   plain VAE on the same test digits.
# - Samples are blurry because pixels are independent given $z$, and some are
#   blends because the data's codes leave holes in the prior.
#
# The next chapters keep this skeleton and change what $z$ is: weighted by β
# (Chapter 2), discrete (Chapter 3), a class and a deformation of its prototype
# (Chapter 5), a list of objects with positions (Chapter 6, AIR), both at once
# (Chapter 7, DAIR), and objects assembled from parts (Chapter 8, stacked capsule
# autoencoders).
#
# ## Exercises
#
# 1. In the cell of {numref}`fig-vae-kl`, change the threshold from 0.01 to 0.5
#    nats. How many latents carry more than half a nat? Then traverse only those
#    (pass `max_latents` their number in the traversal cell): do the remaining
#    rows change the digit at all?
# 2. In the cell of {numref}`fig-vae-iwae`, add `k = 2000` to `ks`. How much does
#    the bound still move between 500 and 2,000 samples, and how does that compare
#    with the standard error in the table?
# 3. In the cell of {numref}`fig-vae-holes`, set `hole_ratio=0.01`. Are the draws
#    in these deeper holes worse digits than before? How does the share in the
#    table below change?
# 4. In the cell of {numref}`fig-vae-blur`, replace the prior draws by codes
#    drawn from the posterior of one test digit
#    (`model.encode(test_images[:1]).sample((10,))[:, 0]`, then `model.decode`).
#    Are the ten images sharper than prior samples? Why?
# 5. Set `TRAIN = True` and, in the cell of {numref}`fig-vae-latent-2d`, train the
#    2-latent model for 5 epochs instead of 40. Are its holes larger or smaller,
#    and is its held-out negative ELBO better or worse?
