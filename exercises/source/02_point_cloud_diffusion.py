# %% [markdown]
# # Exercises 02 · Point-cloud diffusion: the forward process, the posterior, and how to judge samples
#
# Four pieces of chapter 02. Replace each `raise NotImplementedError` with your code and run the
# check cell below it: the checker compares your function with the reference (diffusers'
# `DDPMScheduler` for the first, `minidiff3d` for the others) and says what differs.

# %%
import torch

from minidiff3d.exercises import check

# %% [markdown]
# ## 1. The forward process $q(x_t \mid x_0)$
#
# With $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$, a noisy sample is
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\varepsilon$ in one jump, for any $t$.
# Write `q_sample(x0 [B,N,3], noise [B,N,3], t [B], alphas_cumprod [T]) -> x_t [B,N,3]`, where each
# cloud has its own timestep. The check compares it with `DDPMScheduler.add_noise`.

# %%
def q_sample(x0, noise, t, alphas_cumprod):
    # BEGIN SOLUTION
    a = alphas_cumprod[t].view(-1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("q_sample", q_sample)

# %% [markdown]
# ## 2. The DDPM posterior mean
#
# Given $x_0$, the step back from $x_t$ is Gaussian, $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$, with
#
# $$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\,x_0 + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\,x_t,
#   \qquad \alpha_t = 1 - \beta_t.$$
#
# A DDPM sampler plugs its estimate of $x_0$ into this mean. Write
# `posterior_mean(x0, x_t, t [B], betas [T], alphas_cumprod [T]) -> [B,N,3]` for $t \ge 1$.

# %%
def posterior_mean(x0, x_t, t, betas, alphas_cumprod):
    # BEGIN SOLUTION
    beta = betas[t].view(-1, 1, 1)
    a_t, a_prev = alphas_cumprod[t].view(-1, 1, 1), alphas_cumprod[t - 1].view(-1, 1, 1)
    return (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("posterior_mean", posterior_mean)

# %% [markdown]
# ## 3. The Chamfer distance
#
# $\text{CD}(A, B) = \frac{1}{|A|}\sum_{a \in A} \min_{b \in B} \lVert a - b\rVert^2 + \frac{1}{|B|}\sum_{b \in B} \min_{a \in A} \lVert a - b\rVert^2$.
# Write `chamfer_distance(a [B,N,3], b [B,M,3]) -> [B]`. (For {(0,0,0), (1,0,0)} against
# {(0,0,0), (0,2,0)} it is 0.5 + 2 = 2.5.)

# %%
def chamfer_distance(a, b):
    # BEGIN SOLUTION
    squared = (a[:, :, None] - b[:, None]).square().sum(-1)  # [B,N,M]
    return squared.min(2).values.mean(1) + squared.min(1).values.mean(1)
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("chamfer_distance", chamfer_distance)

# %% [markdown]
# ## 4. 1-NNA
#
# Put the generated clouds $X$ and the reference clouds $Y$ together and classify each one by its
# nearest *other* cloud. 1-NNA is the accuracy of that classifier: about 0.5 when the two sets are
# indistinguishable, 1 when they are apart. Given distance matrices `d_xx [X,X]`, `d_xy [X,Y]`,
# `d_yy [Y,Y]`, write `one_nn_accuracy(d_xx, d_xy, d_yy) -> float`.

# %%
def one_nn_accuracy(d_xx, d_xy, d_yy):
    # BEGIN SOLUTION
    full = torch.cat([torch.cat([d_xx, d_xy], 1), torch.cat([d_xy.T, d_yy], 1)], 0).clone()
    full.fill_diagonal_(float("inf"))
    labels = torch.cat([torch.zeros(len(d_xx)), torch.ones(len(d_yy))])
    return (labels[full.argmin(1)] == labels).float().mean().item()
    # END SOLUTION

# %%
# NBVAL_CHECK_OUTPUT
check("one_nn_accuracy", one_nn_accuracy)
