"""From paired rounds to a verdict per case, for `sepbench ab`.

A round is one block under A and one under B, adjacent in time and in random order. Its log ratio
log(t_B / t_A) cancels whatever slowed or sped up the machine across both blocks. But a worker
process has a speed of its own for a case, beyond its version's: where its code and data landed can
move it by a few per cent for as long as it lives, even in an A/A comparison of one interpreter with
itself. So each side runs several workers, and a pair of them (one A, one B) is the unit. A pair's
figure is the median of its rounds' log ratios: a burst of steal time on a shared VM lands on one
block and drags a mean, not a median (on the committed comparisons the median, held against the mean
on the same rounds, narrowed the intervals by 10–25 % and flagged no A/A case either). The estimate is
the mean of the pairs' medians (a geometric ratio B / A), and the interval and p-value are the
one-sample t-test on them: each pair's median is one draw of its pair, whatever the rounds' noise.
Cases are flagged at a 5 % false discovery rate over all cases (Benjamini–Hochberg). `mdc` is the
interval's half-width as a ratio: a true change that large would put the interval's edge at 1, so it is
found about half the time (not at the 80 % power the words "minimum detectable change" suggest).
`detectable` is the change found with 80 % power by one test at 5 %: the half-width stretched by
(t_0.975 + t_0.80) / t_0.975 over the case's pairs. That is the power where most cases changed, when
Benjamini–Hochberg's threshold nears 5 %; a case that changed alone must reach about 5 % / (cases) instead,
and `lone_detectable` gives the change found with 80 % power then (the noncentral t over the case's
pairs, against the thresholds BH sets with every other case unchanged, `lone_thresholds`). `flag_share`
predicts the share of cases an injected change of a given size is flagged in, by simulating the whole
BH procedure from each case's own standard error.

Protocol 2 (`ABHeader.protocol`) times each visit's rounds half with A first and half with B first: the
second block of a round reads slower (about 1 % on the project's VMs), and a pair's median then sits
between its two orders, which cancels the effect by design. Modelling it instead (a pair's figure as the
mean of its two orders' medians, `by_order`) widened the intervals, on the random-order files of
protocol 1 and on balanced ones alike: a median of two rounds resists a burst no better than a mean.
Its in-run control (`ABControl`: two workers of one side in A's and
B's positions) gives, on this machine and now, the false-flag rate, a side bias with its interval and
the size of the changes it reads; where that bias interval excludes 1, a case is flagged only if it
stands out of the interval too ("within control" otherwise).
The intervals assume the pairs are independent draws; with one pair of workers replaced per case the
A/A p-values should be uniform, which `summarize` checks (Kolmogorov–Smirnov).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from sepbench.ab.network import NETWORK

if TYPE_CHECKING:
    from sepbench.records import ABCaseRecord, ABHeader
    from sepbench.store import ABFile

CONFIDENCE = 0.95
FDR = 0.05


@dataclass(frozen=True)
class Paired:
    """B / A for one case from its rounds: ratio, interval, p-value, the interval's half-width."""

    rounds: int
    ratio: float
    low: float
    high: float
    p: float
    mdc: float  # exp(half-width) − 1: a true change this large puts the interval's edge at 1
    log_sd: float  # spread of the instance pairs' median log ratios (of the rounds', without instances)

    @property
    def half_width(self) -> float:
        return float(np.log(self.high / self.low) / 2)


Floats = list[float] | np.ndarray


def _unit_figures(a_s: Floats, b_s: Floats, instances: list[int] | None, order: str | None = None) -> np.ndarray:
    """Median log ratio of each instance pair (each round is its own unit when there are no instances).
    With `order` (who went first, per round), a pair that has rounds in both orders gets the mean of the
    two orders' medians: the position effect cancels inside it."""
    d = np.log(np.asarray(b_s, dtype=float)) - np.log(np.asarray(a_s, dtype=float))
    if instances is None:
        return d
    keys = np.asarray(instances)
    first = np.array(list(order)) if order else None
    figures = []
    for k in dict.fromkeys(instances):
        mine = keys == k
        if first is not None and {"A", "B"} <= set(first[mine]):
            figures.append((np.median(d[mine & (first == "A")]) + np.median(d[mine & (first == "B")])) / 2)
        else:
            figures.append(np.median(d[mine]))
    return np.array(figures)


def position_effect(a_s: Floats, b_s: Floats, order: str) -> float:
    """How much slower the second block of a round reads than the first, as log ratio: half the gap
    between the median log(B/A) with A first (B second) and with B first. NaN without both orders."""
    d = np.log(np.asarray(b_s, dtype=float)) - np.log(np.asarray(a_s, dtype=float))
    first = np.array(list(order))
    if not {"A", "B"} <= set(first):
        return float("nan")
    return float((np.median(d[first == "A"]) - np.median(d[first == "B"])) / 2)


def paired(a_s: Floats, b_s: Floats, instances: list[int] | None = None,
           confidence: float = CONFIDENCE, order: str | None = None, tau: float = 0.0) -> Paired:
    """B / A from the per-round log ratios log(b/a), the median within each instance pair (of each order,
    given `order`), then a one-sample t-test against 0 over the instance pairs, its standard error with
    the between-run component `tau` added in quadrature (`between.for_ab`; 0: the t-test as it is)."""
    m = _unit_figures(a_s, b_s, instances, order)
    mean = float(m.mean())
    if len(m) < 2:
        return Paired(len(a_s), float(np.exp(mean)), np.nan, np.nan, np.nan, np.nan, np.nan)
    sd = float(m.std(ddof=1))
    if sd == 0 and tau == 0:
        return Paired(len(a_s), float(np.exp(mean)), float(np.exp(mean)), float(np.exp(mean)),
                      0.0 if mean else 1.0, 0.0, 0.0)
    df = len(m) - 1
    se = float(np.hypot(sd / np.sqrt(len(m)), tau))
    half = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return Paired(len(a_s), float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half)), p,
                  float(np.expm1(half)), sd)


def detectable(mdc: pd.Series | np.ndarray, units: pd.Series | np.ndarray, power: float = 0.8,
               confidence: float = CONFIDENCE) -> np.ndarray:
    """The true change (a fraction of A) that a case's test finds with `power`, from its half-width `mdc`
    over `units` pairs: the estimate must clear the critical t, and does so `power` of the time when the
    change is (t_crit + t_power) standard errors (the normal approximation of the noncentral t). At the
    comparison's FDR this holds where many cases changed; a lone change faces a stricter threshold."""
    df = np.maximum(np.asarray(units, dtype=float) - 1, 1)
    critical = stats.t.ppf(0.5 + confidence / 2, df)
    return np.expm1(np.log1p(np.asarray(mdc, dtype=float)) * (1 + stats.t.ppf(power, df) / critical))


def lone_thresholds(m: int, fdr: float = FDR, sims: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The p-values at which Benjamini–Hochberg flags one changed case among `m − 1` unchanged ones, with
    their probabilities (over draws of the unchanged cases' uniform p-values). The case is flagged at step
    k when its p ≤ fdr·k/m and at least k − 1 of the others are ≤ fdr·k/m too: so it must reach
    fdr·K/m for the largest such K, fdr/m most of the time."""
    if m <= 1:
        return np.array([fdr]), np.array([1.0])
    nulls = np.sort(np.random.default_rng(seed).uniform(size=(sims, m - 1)), axis=1)
    k = np.arange(2, m + 1)
    ok = nulls[:, k - 2] <= fdr * k / m
    steps = np.where(ok.any(axis=1), k[np.where(ok, k, 0).argmax(axis=1)], 1)
    values, counts = np.unique(steps, return_counts=True)
    return fdr * values / m, counts / sims


def _lone_power(change: float, se: float, df: float, thresholds: np.ndarray, weights: np.ndarray) -> float:
    """The chance that a slowdown of `change` (log ratio) in one case, of standard error `se` over `df`
    degrees of freedom, is flagged (as slower) by BH among unchanged cases (`lone_thresholds`)."""
    critical = stats.t.isf(thresholds / 2, df)
    return float(np.sum(weights * stats.nct.sf(critical, df, change / se)))


def df_and_se(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each case's degrees of freedom (its pairs, or rounds without pairs, less one) and the standard error
    of its log ratio, read back from its t interval."""
    df = np.maximum(table["instances"].where(table["instances"] > 0, table["rounds"]).to_numpy(float) - 1, 1)
    half = np.log(table["high"].to_numpy(float) / table["low"].to_numpy(float)) / 2
    return df, half / stats.t.ppf(0.5 + CONFIDENCE / 2, df)


def lone_detectable(table: pd.DataFrame, power: float = 0.8, fdr: float = FDR) -> np.ndarray:
    """Per case, the change (a fraction of A) found with `power` when it is the only case that changed: the
    test the comparison makes, Benjamini–Hochberg over all its compared cases, not one test at 5 %.
    From each case's own interval and pairs (the noncentral t); NaN where a case has no interval. The
    change is a multiple of the case's standard error that depends on its degrees of freedom alone, so it
    is solved once per distinct count of pairs."""
    df, se = df_and_se(table)
    thresholds, weights = lone_thresholds(int(table["p"].notna().sum()), fdr)
    usable = np.isfinite(se) & (se > 0)
    multiple = {}
    for d in np.unique(df[usable]):
        top = 100.0
        while _lone_power(top, 1.0, d, thresholds, weights) < power and top < 1e4:
            top *= 2
        multiple[d] = optimize.brentq(lambda c, d=d: _lone_power(c, 1.0, d, thresholds, weights) - power, 0.0, top,
                                      xtol=1e-6)
    out = np.full(len(table), np.nan)
    out[usable] = np.expm1(se[usable] * np.array([multiple[d] for d in df[usable]]))
    return out


def _shrunk_log_se(se: np.ndarray, df: np.ndarray, sims: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of each case's true log standard error, given its estimate over `df` degrees of freedom. An
    estimate over a few pairs is noisy (log se² scatters by trigamma(df/2) around log σ² plus a known
    bias), so the cases whose se came out small by chance would each promise a flag: each is drawn from
    its posterior under a normal spread of log σ² over the cases, estimated from them (empirical Bayes,
    as limma shrinks variances)."""
    noise = special.polygamma(1, df / 2)  # variance of log(se² / σ²)
    bias = special.digamma(df / 2) - np.log(df / 2)  # its mean
    observed = np.log(se ** 2) - bias
    spread = max(float(np.var(observed) - np.mean(noise)), 1e-12)
    weight = spread / (spread + noise)
    mean = weight * observed + (1 - weight) * float(np.mean(observed))
    draws = rng.normal(mean, np.sqrt(weight * noise), size=(sims, len(se)))
    return draws / 2


def flag_share(table: pd.DataFrame, change: float, fdr: float = FDR, sims: int = 2000, seed: int = 0) -> float:
    """The share of compared cases that Benjamini–Hochberg would flag as slower if every one of them were
    slower by `change` (a fraction of A): simulated from each case's own standard error and pairs (and what
    that error could be, given the pairs it came from). What an injected change should find."""
    compared = table[table["p"].notna() & (table["high"] > table["low"])]
    if compared.empty:
        return float("nan")
    df, se = df_and_se(compared)
    rng = np.random.default_rng(seed)
    sigma = np.exp(_shrunk_log_se(se, df, sims, rng))
    t = stats.nct.rvs(df, np.log1p(change) / sigma, random_state=rng)
    p = 2 * stats.t.sf(np.abs(t), df)
    q = stats.false_discovery_control(p, axis=1)
    return float(((q < fdr) & (t > 0)).mean())


def half_width(a_s: list[float], b_s: list[float], instances: list[int] | None = None,
               confidence: float = CONFIDENCE, order: str | None = None, tau: float = 0.0) -> float:
    """The log interval's half-width so far (inf below 3 units), the between-run component `tau` in it:
    the stopping rule's yardstick."""
    m = _unit_figures(a_s, b_s, instances, order)
    if len(m) < 3:
        return float("inf")
    return float(stats.t.ppf(0.5 + confidence / 2, len(m) - 1) * np.hypot(m.std(ddof=1) / np.sqrt(len(m)), tau))


FLAGS = ("B slower", "B faster")
WITHIN_CONTROL = "within control"  # flagged at the FDR, but no larger than what the control faked


@dataclass(frozen=True)
class Control:
    """What the in-run control (one side's workers against each other) says about this machine, now."""

    cases: int  # control cases with an estimate
    flagged: int  # of them flagged at the comparison's false discovery rate: each one a false flag
    below_05: int  # of them with p < 0.05 (about 5 % expected)
    bias: float  # median control ratio: a side or position bias left in the protocol (1 when none)
    bias_low: float  # its 95 % interval (order statistics)
    bias_high: float
    position: float  # the second block of a round against the first, as a ratio
    bound: float  # the control's |log ratio| at its 95th percentile: the largest change it read, most cases
    ks_p: float  # Kolmogorov–Smirnov p-value of the control's p-values against uniform

    @property
    def fake_change(self) -> float:
        """`bound` as a change in per cent of A (e.g. 1.2 for ±1.2 %)."""
        return float(100 * np.expm1(self.bound))


def median_interval(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The distribution-free interval of a median (order statistics), NaN below 6 values."""
    if len(x) < 6:
        return float("nan"), float("nan")
    ci = stats.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def control_summary(records: list[ABCaseRecord], fdr: float = FDR, tau: float = 0.0) -> Control | None:
    """The control's cases as a comparison of their own (with the comparison's between-run component
    `tau`): flags at the same FDR, bias, position effect, and the bound on what it faked. None when the
    file has no control."""
    units = [c for r in records if r.status == "ok" and (c := r.control) is not None and len(c.a_s)]
    ests = [paired(c.a_s, c.b_s, c.instance, tau=tau) for c in units]
    ests = [e for e in ests if np.isfinite(e.p)]
    if not ests:
        return None
    logs = np.log([e.ratio for e in ests])
    ps = np.array([e.p for e in ests])
    low, high = median_interval(logs)
    position = np.array([position_effect(c.a_s, c.b_s, c.order) for c in units])
    position = position[np.isfinite(position)]
    q = stats.false_discovery_control(ps)
    return Control(
        cases=len(ests), flagged=int((q < fdr).sum()), below_05=int((ps < 0.05).sum()),
        bias=float(np.exp(np.median(logs))), bias_low=float(np.exp(low)), bias_high=float(np.exp(high)),
        position=float(np.exp(np.median(position))) if len(position) else float("nan"),
        bound=float(np.quantile(np.abs(logs), 0.95, method="higher")),
        ks_p=float(stats.kstest(ps, "uniform").pvalue) if len(ps) >= 5 else float("nan"))


def _p_beyond(table: pd.DataFrame, low: float, high: float, confidence: float = CONFIDENCE) -> np.ndarray:
    """Each case's p-value against the nearest edge of [low, high] (log ratios) instead of against 0:
    the t statistic rebuilt from the case's own interval and its pairs (1 inside the range)."""
    df = np.maximum(table["instances"].to_numpy(dtype=float) - 1, 1)
    est = np.log(table["ratio"].to_numpy(dtype=float))
    se = (np.log(table["high"].to_numpy(dtype=float)) - np.log(table["low"].to_numpy(dtype=float))) / (
        2 * stats.t.ppf(0.5 + confidence / 2, df))
    null = np.clip(est, low, high)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, (est - null) / se, 0.0)
    p = np.where(est == null, 1.0, 2 * stats.t.sf(np.abs(t), df))
    return np.clip(np.where(np.isfinite(p), p, 1.0), 0.0, 1.0)  # a degenerate interval stands out of nothing


def verdicts(table: pd.DataFrame, fdr: float = FDR, control: Control | None = None) -> pd.DataFrame:
    """Add q-values (Benjamini–Hochberg over the cases with a p-value) and a verdict per case. Where the
    control reads a bias (its interval excludes 1), a flagged case is tested again against the control's
    interval instead of against 1, and is "within control" unless it still stands out at the same false
    discovery rate: the machine, with no change at all, reads that much."""
    table = table.copy()
    has_p = table["p"].notna()
    table["q"] = np.nan
    if has_p.any():
        table.loc[has_p, "q"] = stats.false_discovery_control(table.loc[has_p, "p"].to_numpy())
    flagged = (table["q"] < fdr).to_numpy()
    faked = np.zeros(len(table), dtype=bool)
    if control is not None and has_p.any() and not control.bias_low <= 1 <= control.bias_high:
        beyond = np.ones(len(table))
        beyond[has_p.to_numpy()] = stats.false_discovery_control(
            _p_beyond(table[has_p], np.log(control.bias_low), np.log(control.bias_high)))
        faked = flagged & (beyond >= fdr)
    direction = np.where(table["ratio"] > 1, "B slower", "B faster")
    table["verdict"] = np.where(~has_p, "not compared", np.where(
        ~flagged, "within noise", np.where(faked, WITHIN_CONTROL, direction)))
    return table


class RunningFlags:
    """The flags so far while a comparison runs, for its progress bar: each finished case's p-value taken
    once, as it arrives, and Benjamini–Hochberg over them all (the control's withholding waits for the file)."""

    def __init__(self) -> None:
        self.p: list[float] = []

    def add(self, r: ABCaseRecord) -> int:
        if r.status == "ok" and r.a_s:
            self.p.append(paired(r.a_s, r.b_s, r.instance or None).p)
        if not self.p:
            return 0
        return int((stats.false_discovery_control(np.asarray(self.p)) < FDR).sum())


@dataclass(frozen=True)
class Summary:
    """One comparison in a few numbers: cases, flags, median ratio and median half-width (`median_mdc`),
    the flags the control withheld, and whether the p-values look uniform (`ks_p`; meaningful for an A/A)."""

    cases: int
    compared: int
    flagged: int
    b_slower: int
    b_faster: int
    withheld: int
    median_ratio: float
    median_flagged: float
    median_mdc: float
    median_d80: float  # the change found with 80 % power by the median case where most cases changed
    median_d80_alone: float  # ... where it is the only case that changed (BH over all the compared cases)
    median_rounds: float
    ks_p: float
    position: float  # the second block of a round against the first, median over the cases


def summarize(table: pd.DataFrame) -> Summary:
    """`Summary` of a comparison's case table (`comparison`)."""
    compared = table[table["p"].notna()]
    flagged = compared[compared["verdict"].isin(FLAGS)]
    some = len(compared) > 0
    return Summary(
        cases=len(table), compared=len(compared), flagged=len(flagged),
        b_slower=int((compared["verdict"] == "B slower").sum()),
        b_faster=int((compared["verdict"] == "B faster").sum()),
        withheld=int((compared["verdict"] == WITHIN_CONTROL).sum()),
        median_ratio=float(compared["ratio"].median()) if some else np.nan,
        median_flagged=float(flagged["ratio"].median()) if len(flagged) else np.nan,
        median_mdc=float(compared["mdc"].median()) if some else np.nan,
        median_d80=float(compared["d80"].median()) if some and "d80" in compared else np.nan,
        median_d80_alone=float(compared["d80_alone"].median()) if some and "d80_alone" in compared else np.nan,
        median_rounds=float(compared["rounds"].median()) if some else np.nan,
        ks_p=float(stats.kstest(compared["p"], "uniform").pvalue) if len(compared) >= 5 else np.nan,
        position=float(np.exp(compared["position"].median()))
        if "position" in compared and compared["position"].notna().any() else np.nan)


def _what(r: ABCaseRecord) -> dict:
    """What a line compared, in the table's terms: a grid's case, or a network's site (its kind as the
    variant, its first layer's name as the label, its shapes as the geometry)."""
    if r.case is not None:
        return {"variant": r.case.variant, "label": r.case.label(), "geometry": r.case.geometry(),
                "mode": r.case.mode, "c_in": r.case.c_in, "size": r.case.size, "calls": 1, "layers": None}
    site = r.site
    assert site is not None  # a record holds one of the two
    shown = site.layers[0] if site.layers else site.name
    return {"variant": site.site_kind, "label": shown, "layers": ", ".join(site.layers) or site.name,
            "geometry": f"{'×'.join(map(str, site.in_shape[1:]))} → {'×'.join(map(str, site.out_shape[1:]))}",
            "mode": None, "c_in": site.in_shape[1], "size": site.in_shape[-1], "calls": site.calls}


def case_table(records: list[ABCaseRecord], by_order: bool = False, control: Control | None = None,
               tau: float = 0.0) -> pd.DataFrame:
    """One row per case of a comparison file: what was compared, the paired estimate (the between-run
    component `tau` in its interval), the status. `by_order`: each pair's figure the mean of its two
    orders' medians (a model of the position effect, kept to show what it costs; no protocol reads it)."""
    rows = []
    for r in records:
        order = r.order if by_order and r.order else None
        est = (paired(r.a_s, r.b_s, r.instance or None, order=order, tau=tau)
               if r.status == "ok" and len(r.a_s) else None)
        rows.append({
            "case_id": r.case_id, **_what(r), "status": r.status, "reason": r.reason,
            "rounds": est.rounds if est else 0, "instances": len(set(r.instance)) if r.instance else 0,
            "a_s": float(np.median(r.a_s)) if r.a_s else np.nan,
            "b_s": float(np.median(r.b_s)) if r.b_s else np.nan,
            "ratio": est.ratio if est else np.nan, "low": est.low if est else np.nan,
            "high": est.high if est else np.nan, "p": est.p if est else np.nan, "mdc": est.mdc if est else np.nan,
            "log_sd": est.log_sd if est else np.nan, "seconds": r.seconds,
            "position": position_effect(r.a_s, r.b_s, r.order) if est and r.order else np.nan,
        })
    columns = ["case_id", "variant", "label", "geometry", "mode", "c_in", "size", "calls", "layers", "status", "reason",
               "rounds", "instances", "a_s", "b_s", "ratio", "low", "high", "p", "mdc", "log_sd", "seconds",
               "position"]
    table = pd.DataFrame(rows, columns=columns)
    table["d80"] = detectable(table["mdc"], table["instances"].where(table["instances"] > 0, table["rounds"]))
    table["d80_alone"] = lone_detectable(table) if len(table) else np.nan
    return verdicts(table, control=control)


def gate(table: pd.DataFrame, fail_above: float, fdr: float = FDR) -> pd.DataFrame:
    """The cases slower under B by more than `fail_above` (a fraction of A) at the false discovery rate:
    each case's p-value taken against log(1 + fail_above) rather than against 0 (the t statistic rebuilt
    from its interval), Benjamini–Hochberg over every compared case, and kept where q < fdr and the
    estimate lies above the threshold. Slowest first."""
    compared = table[table["p"].notna()]
    if compared.empty:
        return compared
    p = _p_beyond(compared, -np.inf, float(np.log1p(fail_above)))
    q = stats.false_discovery_control(p)
    over = compared[(q < fdr) & (compared["ratio"].to_numpy() > 1 + fail_above)]
    return over.sort_values("ratio", ascending=False)


@dataclass(frozen=True)
class NetworkVerdict:
    """A network compared site by site: the whole network's B / A with its interval and verdict, and the
    sites ordered by what they carry of the change (share of A's network time × their change)."""

    ratio: float
    low: float
    high: float
    verdict: str
    sites: pd.DataFrame  # the site rows with `share` and `carries` (share × (ratio − 1)), largest |carries| first
    share_timed: float  # the sites' summed share: what part of the network's time is in its convs


def network_verdict(table: pd.DataFrame) -> NetworkVerdict | None:
    """The network's row and its sites, from a network comparison's case table; None when the whole
    network was not compared (yet)."""
    whole = table[table["case_id"] == f"site={NETWORK}"]
    sites = table[table["case_id"] != f"site={NETWORK}"].copy()
    if whole.empty or not np.isfinite(whole["ratio"].iloc[0]):
        return None
    row = whole.iloc[0]
    sites["share"] = sites["a_s"] * sites["calls"] / row["a_s"]
    sites["carries"] = sites["share"] * (sites["ratio"] - 1)
    sites = sites.reindex(sites["carries"].abs().sort_values(ascending=False).index)
    return NetworkVerdict(float(row["ratio"]), float(row["low"]), float(row["high"]), str(row["verdict"]), sites,
                          float(sites["share"].sum()))


def comparison(records: list[ABCaseRecord], protocol: int, tau: float = 0.0) -> tuple[pd.DataFrame, Control | None]:
    """A comparison file's case table and its control (protocol 2 on), with the between-run component
    `tau` in every interval."""
    control = control_summary(records, tau=tau) if protocol >= 2 else None
    return case_table(records, control=control, tau=tau), control


def header_tau(header: ABHeader | None) -> float:
    """The between-run component a comparison file was measured with (0 in files from before it)."""
    return float((header.between_run or {}).get("tau", 0.0)) if header is not None else 0.0


def of_file(ab: ABFile) -> tuple[pd.DataFrame, Control | None]:
    """`comparison` of a file as its header says: its protocol and its between-run component."""
    assert ab.header is not None  # `store.read_ab` refuses a file without one
    return comparison(ab.records, ab.header.protocol, header_tau(ab.header))


@dataclass(frozen=True)
class CompileTimes:
    """What compiling cost each side, over the compiled cases of a comparison: the median of each case's
    compilation in a side's first worker (cold where the side's cache was empty) and in its later workers
    (from the side's cache), how many first compilations were cold, and the median over cases of B's first
    compilation over A's."""

    cases: int
    a_first: float
    b_first: float
    a_cached: float | None
    b_cached: float | None
    a_cold: int  # cases whose first compilation under A found no graph in the cache
    b_cold: int
    ratio: float  # median over cases of B first / A first


def compile_times(records: list[ABCaseRecord]) -> CompileTimes | None:
    """None where no case of the comparison was compiled."""
    both = [r for r in records if r.compile_a_s and r.compile_b_s]
    if not both:
        return None

    def each(r: ABCaseRecord, side: str) -> list[float]:
        return (r.compile_a_s if side == "A" else r.compile_b_s) or []

    def first(side: str) -> list[float]:
        return [each(r, side)[0] for r in both]

    def later(side: str) -> float | None:
        rest = [x for r in both for x in each(r, side)[1:]]
        return float(np.median(rest)) if rest else None

    def cold(side: str) -> int:
        return sum(1 for r in both if (r.compile_cache or {}).get(side, ["?"])[0] == "cold")

    return CompileTimes(
        cases=len(both), a_first=float(np.median(first("A"))), b_first=float(np.median(first("B"))),
        a_cached=later("A"), b_cached=later("B"), a_cold=cold("A"), b_cold=cold("B"),
        ratio=float(np.median([b / a for a, b in zip(first("A"), first("B"), strict=True) if a > 0])),
    )
