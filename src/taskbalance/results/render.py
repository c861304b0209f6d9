"""Render a :class:`ResultsTable` as a rich terminal table, Markdown, CSV or LaTeX."""

from __future__ import annotations

import csv
import io
from typing import Iterable, Literal, Sequence

from rich.table import Table

from taskbalance.results.errors import ResultsError
from taskbalance.results.table import ResultsTable

TextFormat = Literal["markdown", "csv", "latex"]
FORMATS: tuple[str, ...] = ("rich", "markdown", "csv", "latex")
DELTA_HEADER = "Δm% ↑"


def format_value(value: float) -> str:
    """Paper-style number: 2 decimals, or 4 when ``|value| < 1`` (e.g. RMSE 0.6111, mIoU 39.38)."""
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"


def format_delta(value: float) -> str:
    """Signed Δm with 2 decimals (``+0.35``, ``-2.93``); values that round to zero print as ``+0.00``."""
    return f"{round(value, 2) + 0.0:+.2f}"


def _headers(table: ResultsTable) -> list[str]:
    return ["Method"] + [f"{c.header} {c.arrow}" for c in table.columns] + [DELTA_HEADER]


def _cells(table: ResultsTable) -> list[list[str]]:
    return [[row.name] + [format_value(v) for v in row.values] + [format_delta(row.delta_m)] for row in table.rows]


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
    """GitHub Markdown table with rounded values."""
    return markdown_table(_headers(table), _cells(table))


def to_csv(table: ResultsTable) -> str:
    """CSV with full-precision values (for further processing) and the same headers as the other formats."""
    return csv_table(_headers(table), ([row.name, *(repr(v) for v in row.values), repr(row.delta_m)] for row in table.rows))


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(table: ResultsTable) -> str:
    """A ``tabular`` (booktabs rules) with ``$\\uparrow$``/``$\\downarrow$`` arrows and a rule under the baseline."""
    arrows = {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}
    headers = ["Method"] + [f"{latex_escape(c.header)} {arrows[c.arrow]}" for c in table.columns]
    headers.append(r"$\Delta_m\%$ $\uparrow$")
    lines = [r"\begin{tabular}{l" + "c" * (len(headers) - 1) + "}", r"\toprule", " & ".join(headers) + r" \\", r"\midrule"]
    for row, cells in zip(table.rows, _cells(table)):
        lines.append(" & ".join([latex_escape(cells[0]), *cells[1:]]) + r" \\")
        if row.is_baseline:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_rich(table: ResultsTable, title: str | None = None) -> Table:
    """A rich :class:`~rich.table.Table`; Δm is green when positive and red when negative."""
    out = Table(title=title)
    for i, header in enumerate(_headers(table)):
        out.add_column(header, justify="left" if i == 0 else "right")
    for row, cells in zip(table.rows, _cells(table)):
        style = "green" if row.delta_m > 0 else "red" if row.delta_m < 0 else ""
        cells[-1] = f"[{style}]{cells[-1]}[/]" if style else cells[-1]
        out.add_row(*cells, end_section=row.is_baseline)
    return out


def render_text(table: ResultsTable, fmt: TextFormat) -> str:
    """The table as ``markdown``, ``csv`` or ``latex`` text."""
    renderers = {"markdown": to_markdown, "csv": to_csv, "latex": to_latex}
    if fmt not in renderers:
        raise ResultsError(f"unknown table format {fmt!r}; valid text formats: {', '.join(renderers)}")
    return renderers[fmt](table)
