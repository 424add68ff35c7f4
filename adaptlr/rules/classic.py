"""The classic update rules, each ONE pure elementwise function in scalar style.

Conventions (see ``docs/CONTRACTS.md``): arguments are one element of each column (``p``, ``g``, then the
state tensors), then the per-step scalars, then the flags (Python bools fixed per call); an optimizer binds them
by name (:class:`adaptlr.optim.Phase`). A rule returns a tuple: the new values of the columns it writes, in the
order its phase declares, then any terms to be summed.
An absent optional state (``max_exp_avg_sq`` without amsgrad) arrives as ``0.0`` and must be returned as is.
The per-step scalars (bias corrections, step sizes) are computed once per step in the optimizer classes.
"""

from __future__ import annotations

from ._elementwise import elementwise
from ._math import abs, maximum, sqrt

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "decayed",
    "gradient",
    "moments",
    "nadam",
    "radam",
    "rmsprop",
    "sgd",
]


@elementwise
def gradient(p, g, weight_decay, maximize, coupled_decay):
    r"""The gradient the rules see: :math:`\pm g + \lambda p` (sign flipped for ``maximize``, L2 decay)."""
    if maximize:
        g = -g
    if coupled_decay:
        g = g + weight_decay * p
    return g


@elementwise
def decayed(p, g, weight_decay, decay_factor, maximize, coupled_decay, decoupled_decay):
    r"""The gradient and parameter after weight decay: L2 (``coupled``) or ``p (1 - lr wd)`` (``decoupled``)."""
    g = gradient(p, g, weight_decay, maximize, coupled_decay)
    if decoupled_decay:
        p = p * decay_factor
    return p, g


@elementwise
def moments(g, exp_avg, exp_avg_sq, beta1, beta2):
    r"""Adam's moments: m_t = b1 m_{t-1} + (1 - b1) g_t and v_t = b2 v_{t-1} + (1 - b2) g_t^2."""
    exp_avg = exp_avg + (g - exp_avg) * (1 - beta1)
    exp_avg_sq = exp_avg_sq * beta2 + g * g * (1 - beta2)
    return exp_avg, exp_avg_sq


@elementwise
def sgd(p, g, buf, lr, weight_decay, momentum, dampening, maximize, coupled_decay, use_momentum, nesterov, first):
    r"""SGD with momentum (Sutskever et al., 2013, as in torch.optim.SGD).

    b_t = mu b_{t-1} + (1 - tau) g_t  (b_1 = g_1)      d_t = g_t + mu b_t (nesterov) or b_t
    p_t = p_{t-1} - lr d_t
    """
    g = gradient(p, g, weight_decay, maximize, coupled_decay)
    if use_momentum:
        if first:
            buf = g
        else:
            buf = buf * momentum + g * (1 - dampening)
        if nesterov:
            g = g + buf * momentum
        else:
            g = buf
    p = p - lr * g
    return p, buf


@elementwise
def adagrad(p, g, state_sum, clr, eps, weight_decay, maximize, coupled_decay):
    r"""AdaGrad (Duchi et al., 2011, as in torch.optim.Adagrad).

    s_t = s_{t-1} + g_t^2      p_t = p_{t-1} - clr_t g_t / (sqrt(s_t) + eps),  clr_t = lr / (1 + (t-1) lr_decay)
    """
    g = gradient(p, g, weight_decay, maximize, coupled_decay)
    state_sum = state_sum + g * g
    p = p - clr * g / (sqrt(state_sum) + eps)
    return p, state_sum


@elementwise
def rmsprop(
    p,
    g,
    square_avg,
    grad_avg,
    buf,
    lr,
    alpha,
    eps,
    momentum,
    weight_decay,
    maximize,
    coupled_decay,
    centered,
    use_momentum,
):
    r"""RMSprop (Hinton, 2012; centered: Graves, 2013), as in torch.optim.RMSprop.

    v_t = a v_{t-1} + (1 - a) g_t^2       m_t = a m_{t-1} + (1 - a) g_t (centered)
    d_t = sqrt(v_t - m_t^2) + eps (centered) or sqrt(v_t) + eps
    b_t = mu b_{t-1} + g_t / d_t,  p_t = p_{t-1} - lr b_t   (momentum)   or   p_t = p_{t-1} - lr g_t / d_t
    """
    g = gradient(p, g, weight_decay, maximize, coupled_decay)
    square_avg = square_avg * alpha + g * g * (1 - alpha)
    if centered:
        grad_avg = grad_avg + (g - grad_avg) * (1 - alpha)
        avg = sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = sqrt(square_avg) + eps
    if use_momentum:
        buf = buf * momentum + g / avg
        p = p - lr * buf
    else:
        p = p - lr * g / avg
    return p, square_avg, grad_avg, buf


@elementwise
def adadelta(p, g, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize, coupled_decay):
    r"""Adadelta (Zeiler, 2012), as in torch.optim.Adadelta.

    v_t = rho v_{t-1} + (1 - rho) g_t^2     x_t = sqrt(u_{t-1} + eps) / sqrt(v_t + eps) g_t
    u_t = rho u_{t-1} + (1 - rho) x_t^2     p_t = p_{t-1} - lr x_t
    """
    g = gradient(p, g, weight_decay, maximize, coupled_decay)
    square_avg = square_avg * rho + g * g * (1 - rho)
    delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
    acc_delta = acc_delta * rho + delta * delta * (1 - rho)
    p = p - lr * delta
    return p, square_avg, acc_delta


@elementwise
def adam(
    p,
    g,
    exp_avg,
    exp_avg_sq,
    max_exp_avg_sq,
    step_size,
    beta1,
    beta2,
    eps,
    bc2_sqrt,
    weight_decay,
    decay_factor,
    maximize,
    coupled_decay,
    decoupled_decay,
    amsgrad,
):
    r"""Adam (Kingma & Ba, 2015, Algorithm 1), AMSGrad (Reddi et al., 2018) and AdamW (Loshchilov & Hutter, 2019).

    m_t = b1 m_{t-1} + (1 - b1) g_t        v_t = b2 v_{t-1} + (1 - b2) g_t^2      v^max_t = max(v^max_{t-1}, v_t)
    p_t = p_{t-1} (1 - lr wd) - lr / (1 - b1^t) * m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)
    with ``step_size = lr / (1 - b1^t)``, ``bc2_sqrt = sqrt(1 - b2^t)``, ``decay_factor = 1 - lr wd``.
    """
    p, g = decayed(p, g, weight_decay, decay_factor, maximize, coupled_decay, decoupled_decay)
    exp_avg, exp_avg_sq = moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    if amsgrad:
        max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq)
        denom = sqrt(max_exp_avg_sq) / bc2_sqrt + eps
    else:
        denom = sqrt(exp_avg_sq) / bc2_sqrt + eps
    p = p - step_size * exp_avg / denom
    return p, exp_avg, exp_avg_sq, max_exp_avg_sq


@elementwise
def adamax(p, g, exp_avg, exp_inf, clr, beta1, beta2, eps, weight_decay, maximize, coupled_decay):
    r"""Adamax (Kingma & Ba, 2015, Algorithm 2), as in torch.optim.Adamax.

    m_t = b1 m_{t-1} + (1 - b1) g_t     u_t = max(b2 u_{t-1}, |g_t| + eps)     p_t = p_{t-1} - lr / (1 - b1^t) m_t / u_t
    """
    g = gradient(p, g, weight_decay, maximize, coupled_decay)
    exp_avg = exp_avg + (g - exp_avg) * (1 - beta1)
    exp_inf = maximum(exp_inf * beta2, abs(g) + eps)
    p = p - clr * exp_avg / exp_inf
    return p, exp_avg, exp_inf


@elementwise
def nadam(
    p,
    g,
    exp_avg,
    exp_avg_sq,
    grad_coef,
    avg_coef,
    beta1,
    beta2,
    eps,
    bc2,
    weight_decay,
    decay_factor,
    maximize,
    coupled_decay,
    decoupled_decay,
):
    r"""NAdam (Dozat, 2016), as in torch.optim.NAdam.

    mu_t = b1 (1 - 0.5 * 0.96^(t psi))        m_t, v_t as in Adam          d_t = sqrt(v_t / (1 - b2^t)) + eps
    p_t = p_{t-1} - lr (1 - mu_t) / (1 - prod_{i<=t} mu_i) g_t / d_t - lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i) m_t / d_t
    ``grad_coef`` and ``avg_coef`` are the two (negative) coefficients.
    """
    p, g = decayed(p, g, weight_decay, decay_factor, maximize, coupled_decay, decoupled_decay)
    exp_avg, exp_avg_sq = moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    denom = sqrt(exp_avg_sq / bc2) + eps
    p = p + grad_coef * g / denom
    p = p + avg_coef * exp_avg / denom
    return p, exp_avg, exp_avg_sq


@elementwise
def radam(
    p,
    g,
    exp_avg,
    exp_avg_sq,
    step_size,
    rect_scale,
    beta1,
    beta2,
    eps,
    weight_decay,
    decay_factor,
    maximize,
    coupled_decay,
    decoupled_decay,
    rectify,
):
    r"""RAdam (Liu et al., 2020), as in torch.optim.RAdam.

    rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    if rho_t > 5:  r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))
    p_t = p_{t-1} - lr m_t / (1 - b1^t) * r_t sqrt(1 - b2^t) / (sqrt(v_t) + eps)   else   p_{t-1} - lr m_t / (1 - b1^t)
    ``step_size = lr / (1 - b1^t)``, ``rect_scale = r_t sqrt(1 - b2^t)``.
    """
    p, g = decayed(p, g, weight_decay, decay_factor, maximize, coupled_decay, decoupled_decay)
    exp_avg, exp_avg_sq = moments(g, exp_avg, exp_avg_sq, beta1, beta2)
    if rectify:
        p = p - step_size * exp_avg * rect_scale / (sqrt(exp_avg_sq) + eps)
    else:
        p = p - step_size * exp_avg
    return p, exp_avg, exp_avg_sq
