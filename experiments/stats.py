"""Small-sample statistics for the experiments: Student-t intervals, with no SciPy.

`mean_ci(values)` is the mean and the half-width of its two-sided 95% t-interval; paired
differences are the same on per-pair differences. The t quantile comes from the regularised
incomplete beta function (a continued fraction, as in Numerical Recipes' betacf) inverted by
bisection, exact to about 1e-10.
"""

import math
import statistics


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a, b, x):
    """Return the regularised incomplete beta function I_x(a, b), x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p, df):
    """Return the p-quantile of Student's t with df > 0 degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f'p must lie in (0, 1), got {p}')
    if df <= 0:
        raise ValueError(f'degrees of freedom must be positive, got {df}')
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mean_ci(values, level=0.95):
    """Return (mean, half-width of the two-sided t-interval, n) of the finite values.

    The half-width is NaN with fewer than two values; the mean is NaN with none.
    """
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(values)
    if not n:
        return math.nan, math.nan, 0
    mean = statistics.fmean(values)
    if n < 2:
        return mean, math.nan, n
    half = t_quantile(0.5 + level / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, half, n


def paired_ci(first, second, level=0.95):
    """Mean and t-interval half-width of first[k] - second[k] over keys present in both.

    first, second: {pair key: value}. Returns (mean, half-width, n).
    """
    keys = sorted(set(first) & set(second))
    diffs = [first[k] - second[k] for k in keys
             if first[k] is not None and second[k] is not None
             and math.isfinite(first[k]) and math.isfinite(second[k])]
    return mean_ci(diffs, level)
