"""The doctor's reports as JSON-ready dicts, Markdown and rich renderables, built from the same rows and lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from taskbalance.doctor import rules
from taskbalance.doctor.rules import Diagnosis
from taskbalance.doctor.signals import Proportion
from taskbalance.doctor.validate import StudyCheck

TASK_HEADER = ("task", "norm share", "contribution share", "mean cos(g_i, d)", "mean weight", "at risk")
PAIR_HEADER = ("pair", "mean cos", "negative steps", "95% Wilson", "conflicts")
SEED_HEADER = ("seed", "at risk (doctor)", "below single-task (study)", "recommended", "rank by Δm",
               "Δm rec. / uniform", "stable from step")


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _p(p: Proportion) -> str:
    if not p.n:
        return "n/a (nothing to count)"
    return f"{p.k}/{p.n} = {p.value:.2f} (95% Wilson [{p.low:.2f}, {p.high:.2f}])"


def _list(tasks: Sequence[str] | None) -> str:
    return "n/a" if tasks is None else (", ".join(tasks) or "none")


def task_rows(d: Diagnosis) -> list[list[str]]:
    """One row per task: shares, cosine with the update, mean weight, at risk."""
    s = d.signals
    return [[t, f"{s.norm_share[t]:.3f}", f"{s.contribution_share[t]:.3f}", _f(s.cos_to_update[t]),
             _f(s.mean_weight[t]), "yes" if t in d.at_risk else ""] for t in s.tasks]


def pair_rows(d: Diagnosis) -> list[list[str]]:
    """One row per task pair: mean cosine, negative steps, their interval, whether it conflicts."""
    conflicting = {p.key for p in rules.conflicting_pairs(d.signals)}
    return [[f"{p.a} / {p.b}", f"{p.mean_cos:+.3f}", f"{p.negative.k}/{p.negative.n}",
             f"[{p.negative.low:.2f}, {p.negative.high:.2f}]", "yes" if p.key in conflicting else ""]
            for p in d.signals.pairs]


def summary_lines(d: Diagnosis, run: Path, steps: int | None, descriptions: Mapping[str, str]) -> list[str]:
    """The recommendation, its reason and the headline numbers, one line each."""
    s, rec = d.signals, d.recommendation
    used = f"the first {steps} steps" if steps is not None else "all steps"
    trend = "widening" if s.norm_ratio_late > s.norm_ratio_early else "narrowing"
    line = rules.AT_RISK_FRACTION_OF_EQUAL / len(s.tasks)
    at_risk = ", ".join(f"{t} ({s.contribution_share[t]:.3f})" for t in d.at_risk) or "none"
    return [
        f"Run {run}: {s.records} diagnostics records on {s.source}, steps {s.first_step}-{s.last_step} ({used}).",
        f"Recommendation: {rec.method} [{rec.verdict}]: {descriptions.get(rec.method, '')}",
        f"Why: {rec.reason}.",
        "Alternatives: " + (", ".join(rec.alternatives) or "none"),
        f"Norm imbalance: largest {s.largest}, smallest {s.smallest}; max/min norm ratio median {s.norm_ratio:.3g}, "
        f"first third {s.norm_ratio_early:.3g} -> last third {s.norm_ratio_late:.3g} ({trend}).",
        f"Conflict: steps with a negative pairwise cosine: {_p(s.any_negative)}.",
        f"Tasks at risk (contribution share below {line:.3g}): {at_risk}.",
    ]


def diagnosis_dict(d: Diagnosis, run: Path, steps: int | None, descriptions: Mapping[str, str]) -> dict[str, Any]:
    """A JSON-ready report of one run."""
    s, rec = d.signals, d.recommendation
    return {
        "kind": "run", "run": str(run), "steps_option": steps,
        "records": s.records, "source": s.source, "first_step": s.first_step, "last_step": s.last_step,
        "recommendation": {"method": rec.method, "verdict": rec.verdict, "reason": rec.reason,
                           "alternatives": list(rec.alternatives), "triggers": rec.triggers,
                           "description": descriptions.get(rec.method)},
        "at_risk": list(d.at_risk),
        "tasks": {t: {"norm_share": s.norm_share[t], "contribution_share": s.contribution_share[t],
                      "cos_to_update": s.cos_to_update[t], "mean_weight": s.mean_weight[t]} for t in s.tasks},
        "norm_ratio": {"median": s.norm_ratio, "first_third": s.norm_ratio_early, "last_third": s.norm_ratio_late,
                       "largest": s.largest, "smallest": s.smallest},
        "conflict": {"any_negative": asdict(s.any_negative),
                     "pairs": {p.key: {"mean_cos": p.mean_cos, "negative": asdict(p.negative)} for p in s.pairs},
                     "conflicting": [p.key for p in rules.conflicting_pairs(s)]},
        "thresholds": thresholds(),
    }


def thresholds() -> dict[str, float]:
    """The rule's constants (sources in :mod:`taskbalance.doctor.rules` and docs/doctor.md)."""
    return {"NORM_RATIO_MARKED": rules.NORM_RATIO_MARKED, "AT_RISK_FRACTION_OF_EQUAL": rules.AT_RISK_FRACTION_OF_EQUAL,
            "CONFLICT_COS": rules.CONFLICT_COS, "CONFLICT_STEP_FRACTION": rules.CONFLICT_STEP_FRACTION}


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _rich_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    return table


def diagnosis_markdown(d: Diagnosis, run: Path, steps: int | None, descriptions: Mapping[str, str],
                       figure: str | None = None) -> str:
    """``doctor.md`` of one run."""
    lines = summary_lines(d, run, steps, descriptions)
    parts = [f"# taskbalance doctor: {run.name}", "", lines[0], "", f"**{lines[1]}**", "", lines[2], "", lines[3], "",
             "## Norm imbalance and tasks at risk", "", _md_table(TASK_HEADER, task_rows(d)), "", lines[4], "",
             lines[6], "", "## Conflict", "", _md_table(PAIR_HEADER, pair_rows(d)), "", lines[5], ""]
    if figure:
        parts += [f"![norm shares and cosines over training]({figure})", ""]
    parts += [
        "Thresholds (sources in docs/doctor.md): " + ", ".join(f"{k} = {v:g}" for k, v in thresholds().items()),
        "",
    ]
    return "\n".join(parts)


def diagnosis_rich(d: Diagnosis, run: Path, steps: int | None, descriptions: Mapping[str, str]) -> RenderableType:
    """The console report of one run."""
    lines = summary_lines(d, run, steps, descriptions)
    text = [Text(line) for line in lines]
    text[1].stylize("bold")
    return Group(
        *text[:4],
        _rich_table("Norm imbalance and tasks at risk", TASK_HEADER, task_rows(d)),
        text[4],
        text[6],
        _rich_table("Conflict", PAIR_HEADER, pair_rows(d)),
        text[5],
    )


def seed_rows(check: StudyCheck) -> list[list[str]]:
    """One row per seed: predicted vs measured, the recommendation's rank, when it settled."""
    rows = []
    for c in check.seeds:
        o = c.outcome
        rank = f"{o.rank} of {len(o.delta_m)}" if o.rank is not None else "not in study"
        recommended, uniform = o.recommended_arm, o.uniform_arm  # None: the study did not run that arm
        deltas = "n/a"
        if recommended is not None and uniform is not None and recommended in o.delta_m and uniform in o.delta_m:
            deltas = f"{o.delta_m[recommended]:+.2f} / {o.delta_m[uniform]:+.2f}"
        rows.append([str(c.seed), _list(c.diagnosis.at_risk), _list(o.below_single_task),
                     c.diagnosis.recommendation.method, rank, deltas, f"{c.stable_from} of {c.last_step}"])
    return rows


def study_lines(check: StudyCheck, steps: int | None) -> list[str]:
    """The agreement over seeds, one line each."""
    used = f"its first {steps} steps" if steps is not None else "all its steps"
    best = {c.outcome.best_arm for c in check.seeds if c.outcome.best_arm}
    return [
        f"Study {check.root}: {len(check.seeds)} seed(s); each seed's uniform run diagnosed on {used}, compared with "
        "the study's test results (Δm per seed against the same seed's single-task runs).",
        f"Tasks at risk vs tasks below single-task, per (seed, task): agreement {_p(check.task_agreement)}; "
        f"precision {_p(check.precision)}; recall {_p(check.recall)}.",
        f"Recommended arm beats uniform (Δm, per seed): {_p(check.beats_uniform)}; "
        f"is the best arm: {_p(check.best)}; best arm(s) measured: {', '.join(sorted(best)) or 'n/a'}.",
        "Recommendation (on all steps) stable from step "
        + ", ".join(
            f"{c.stable_from} of {c.last_step} (seed {c.seed}, {c.diagnosis.recommendation.method})"
            for c in check.seeds
        )
        + ": from there on, --steps N gives the same method.",
        "Intervals: 95% Wilson score; (seed, task) decisions of one seed are not independent, so that interval is "
        "optimistic.",
        *check.notes,
    ]


def study_dict(check: StudyCheck, steps: int | None, descriptions: Mapping[str, str]) -> dict[str, Any]:
    """A JSON-ready report of the doctor against one study."""
    return {
        "kind": "study", "study": str(check.root), "steps_option": steps,
        "task_agreement": asdict(check.task_agreement), "precision": asdict(check.precision),
        "recall": asdict(check.recall), "beats_uniform": asdict(check.beats_uniform), "best": asdict(check.best),
        "interval": "95% Wilson score", "notes": list(check.notes),
        "seeds": [{"seed": c.seed, "run": str(c.run), "at_risk": list(c.diagnosis.at_risk),
                   "below_single_task": c.outcome.below_single_task, "improvements": c.outcome.improvements,
                   "recommendation": c.diagnosis.recommendation.method, "verdict": c.diagnosis.recommendation.verdict,
                   "rank": c.outcome.rank, "arms": len(c.outcome.delta_m), "delta_m": c.outcome.delta_m,
                   "stable_from": c.stable_from, "last_step": c.last_step,
                   "diagnosis": diagnosis_dict(c.diagnosis, c.run, steps, descriptions)} for c in check.seeds],
    }


def study_markdown(check: StudyCheck, steps: int | None) -> str:
    """``doctor.md`` of a study."""
    lines = study_lines(check, steps)
    return "\n".join([f"# taskbalance doctor: study {check.root.name}", "", lines[0], "",
                      _md_table(SEED_HEADER, seed_rows(check)), "", *[f"- {line}" for line in lines[1:]], ""])


def study_rich(check: StudyCheck, steps: int | None) -> RenderableType:
    """The console report of the doctor against one study."""
    lines = study_lines(check, steps)
    return Group(Text(lines[0]), _rich_table("Doctor vs study, per seed", SEED_HEADER, seed_rows(check)),
                 *map(Text, lines[1:]))
