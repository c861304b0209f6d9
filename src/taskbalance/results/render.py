"""Render a :class:`ResultsTable` as a rich terminal table, Markdown, CSV or LaTeX: every format carries the same
information (n, mean ± std per metric and for Δm, Δm's interval, the paired comparison, the notes)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from taskbalance.results.errors import ResultsError
from taskbalance.results.stats import Summary
from taskbalance.results.table import SIGNIFICANT, ResultsTable

TextFormat = Literal["markdown", "csv", "latex"]
FORMATS: tuple[str, ...] = ("rich", "markdown", "csv", "latex")
DELTA_HEADER = "Δm% ↑"
INTERVAL_HEADER = "Δm 95% CI"


def format_value(value: float) -> str:
    """Paper-style number: 2 decimals, or 4 when ``|value| < 1`` (e.g. RMSE 0.6111, mIoU 39.38)."""
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"


def format_delta(value: float) -> str:
    """Signed Δm with 2 decimals (``+0.35``, ``-2.93``); values that round to zero print as ``+0.00``."""
    return f"{round(value, 2) + 0.0:+.2f}"


def format_mean_std(summary: Summary, formatter: Callable[[float], str] = format_value) -> str:
    """``mean ± std`` (just the mean for one seed); the std uses the mean's decimals (3 significant digits when the
    mean has no fixed decimals)."""
    mean = formatter(summary.mean)
    if summary.std is None:
        return mean
    if "." not in mean or "e" in mean:
        return f"{mean} ± {summary.std:.3g}"
    return f"{mean} ± {summary.std:.{len(mean) - mean.index('.') - 1}f}"


def format_interval(summary: Summary | None) -> str:
    """``[low, high]`` with signs and 2 decimals, or ``—`` without an interval."""
    if summary is None or summary.low is None or summary.high is None:
        return "—"
    return f"[{format_delta(summary.low)}, {format_delta(summary.high)}]"


def format_paired(summary: Summary | None, significant: bool) -> str:
    """The paired difference: ``+0.50 [+0.10, +0.90] *`` (marker when ``significant``: Holm-adjusted p < 0.05),
    ``—`` when absent."""
    if summary is None:
        return "—"
    text = format_delta(summary.mean)
    if summary.low is not None:
        text += f" {format_interval(summary)}"
    return text + (f" {SIGNIFICANT}" if significant else "")


def _headers(table: ResultsTable) -> list[str]:
    headers = ["Method", "n"] + [f"{c.header} {c.arrow}" for c in table.columns] + [DELTA_HEADER, INTERVAL_HEADER]
    return headers + ([f"vs {table.reference}"] if table.reference else [])


def _cells(table: ResultsTable) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells = [row.name, str(row.n), *(format_mean_std(v) for v in row.values),
                 format_mean_std(row.delta_m, format_delta), format_interval(row.delta_m)]
        if table.reference:
            cells.append(
                "(reference)"
                if row.name == table.reference
                else format_paired(row.versus_reference, row.versus_significant)
            )
        rows.append(cells)
    return rows


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub Markdown table: first column left-aligned (names), the others centred."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + [":---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def csv_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text with a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(table: ResultsTable) -> str:
    """GitHub Markdown table with rounded values, the notes below it."""
    return markdown_table(_headers(table), _cells(table)) + "\n" + "\n".join(f"_{note}_" for note in table.notes) + "\n"


def _numbers(summary: Summary | None, interval: bool) -> list[str]:
    if summary is None:
        return ["", "", "", ""] if interval else ["", ""]
    cells = [repr(summary.mean), "" if summary.std is None else repr(summary.std)]
    if interval:
        cells += ["" if summary.low is None else repr(summary.low), "" if summary.high is None else repr(summary.high)]
    return cells


def to_csv(table: ResultsTable) -> str:
    """CSV with full-precision numbers: per metric its mean and std, Δm's mean, std and interval, the paired
    difference's mean, interval, p-value, Holm-adjusted p-value and whether that is below 0.05; the notes follow as
    ``#`` comment lines."""
    headers = ["Method", "n"]
    for column in table.columns:
        headers += [f"{column.header} {column.arrow} mean", f"{column.header} {column.arrow} std"]
    headers += [f"{DELTA_HEADER} {part}" for part in ("mean", "std", "CI low", "CI high")]
    if table.reference:
        headers += [f"vs {table.reference} {part}" for part in ("mean", "std", "CI low", "CI high", "p", "p Holm",
                                                                "significant (Holm)")]
    lines = []
    for row in table.rows:
        cells = [row.name, str(row.n)]
        for value in row.values:
            cells += _numbers(value, interval=False)
        cells += _numbers(row.delta_m, interval=True)
        if table.reference:
            versus = row.versus_reference
            cells += _numbers(versus, interval=True) + ["" if row.versus_p is None else repr(row.versus_p),
                                                        "" if row.versus_p_holm is None else repr(row.versus_p_holm),
                                                        "" if versus is None else str(row.versus_significant)]
        lines.append(cells)
    return csv_table(headers, lines) + "".join(f"# {note}\n" for note in table.notes)


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


_LATEX_SYMBOLS = {"±": r"$\pm$", "—": "--", "Δm": r"$\Delta_m$", "↑": r"$\uparrow$", "↓": r"$\downarrow$"}


def latex_text(text: str) -> str:
    """Escaped plain text with the tables' symbols (±, Δm, arrows, dashes) as LaTeX."""
    out = latex_escape(text)
    for symbol, latex in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, latex)
    return out


def to_latex(table: ResultsTable) -> str:
    """A ``tabular`` (booktabs rules) with ``$\\uparrow$``/``$\\downarrow$`` arrows and a rule under the baseline."""
    headers = ["Method", "$n$"] + [latex_text(f"{c.header} {c.arrow}") for c in table.columns]
    headers += [r"$\Delta_m\%$ $\uparrow$", r"$\Delta_m$ 95\% CI"]
    headers += [f"vs {latex_escape(table.reference)}"] if table.reference else []
    lines = [
        r"\begin{tabular}{l" + "c" * (len(headers) - 1) + "}",
        r"\toprule",
        " & ".join(headers) + r" \\",
        r"\midrule",
    ]
    for row, cells in zip(table.rows, _cells(table)):
        lines.append(" & ".join(latex_text(cell) for cell in cells) + r" \\")
        if row.is_baseline:
            lines.append(r"\midrule")
    lines.append(r"\bottomrule")
    lines += [
        rf"\multicolumn{{{len(headers)}}}{{p{{0.9\linewidth}}}}{{\footnotesize {latex_text(note)}}} \\"
        for note in table.notes
    ]
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


def _rich_table(table: ResultsTable, columns: Sequence[int], title: str | None, caption: str | None) -> Table:
    """The rich table of the given column indices (0 = Method); cells fold rather than being cut."""
    out = Table(title=title, caption=caption, caption_justify="left")
    headers, delta_index = _headers(table), 2 + len(table.columns)
    for i in columns:
        out.add_column(
            headers[i], justify="left" if i == 0 else "right", overflow="fold", min_width=_longest_word(table, i)
        )
    for row, texts in zip(table.rows, _cells(table)):
        cells = [escape(text) for text in texts]
        style = "green" if row.delta_m.mean > 0 else "red" if row.delta_m.mean < 0 else ""
        cells[delta_index] = f"[{style}]{cells[delta_index]}[/]" if style else cells[delta_index]
        out.add_row(*(cells[i] for i in columns), end_section=row.is_baseline)
    return out


def _longest_word(table: ResultsTable, column: int) -> int:
    """The longest word of a column's header and cells: the narrowest it can be without cutting a word."""
    return max(cell_len(word) for line in [_headers(table), *_cells(table)] for word in line[column].split() or [""])


def _natural_width(table: ResultsTable, columns: Sequence[int]) -> int:
    """The width the rich table of ``columns`` takes with no cell wrapped (plus borders and padding)."""
    return sum(max(cell_len(line[i]) for line in [_headers(table), *_cells(table)]) + 3 for i in columns) + 1


def to_rich(table: ResultsTable, title: str | None = None, width: int | None = None) -> RenderableType:
    """A rich table; Δm is green when positive and red when negative. When ``width`` (the console's) is too narrow
    for every column unwrapped, the table is split in two: the metrics, then Δm, its interval and the paired
    comparison, each headed by the arm names; cells wrap at spaces and no column is narrower than its longest word,
    so nothing is cut."""
    caption = escape("\n".join(table.notes))
    every = list(range(len(_headers(table))))
    whole = _rich_table(table, every, title, caption)
    if width is None or _natural_width(table, every) <= width:
        return whole
    split = 2 + len(table.columns)
    return Group(_rich_table(table, every[:split], title, None),
                 _rich_table(table, [0, 1, *every[split:]], None, caption))


def render_text(table: ResultsTable, fmt: TextFormat) -> str:
    """The table as ``markdown``, ``csv`` or ``latex`` text."""
    renderers = {"markdown": to_markdown, "csv": to_csv, "latex": to_latex}
    if fmt not in renderers:
        raise ResultsError(f"unknown table format {fmt!r}; valid text formats: {', '.join(renderers)}")
    return renderers[fmt](table)
