"""A `Table` as Markdown, LaTeX (booktabs), HTML and CSV."""
from __future__ import annotations

import html
import re
from pathlib import Path

from suite.atomic import write_text
from suite.report.tables import Table

TABLES_DIR = "tables"
TABLE_FORMATS = ("md", "csv", "tex")
LATEX_SPECIAL = {
    **{char: "\\" + char for char in "&%$#_{}"},
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
}
LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "–": "--", "×": r"$\times$",
                 "†": r"\textsuperscript{\dag}"}


def table_files(table: Table) -> dict[str, str]:
    """Format → the table's file, relative to the report directory."""
    return {fmt: f"{TABLES_DIR}/{table.name}.{fmt}" for fmt in TABLE_FORMATS}


def write_table(table: Table, out_dir: Path) -> None:
    """tables/NAME.md, .csv and .tex under `out_dir`."""
    files = table_files(table)
    write_text(out_dir / files["md"], f"### {table.title}\n\n{markdown(table)}")
    write_text(out_dir / files["tex"], latex(table))
    write_text(out_dir / files["csv"], table.data.to_csv(index=False))


def marked(rows: list[list[str]], bold: frozenset[tuple[int, int]], mark) -> list[list[str]]:
    """The rows with `mark(text)` applied to the best cells."""
    return [
        [mark(text) if (i, j) in bold and text else text for j, text in enumerate(row)]
        for i, row in enumerate(rows)
    ]


def flat_header(table: Table) -> list[str]:
    """Group and column names in one row ('B0-10steps Avg')."""
    groups = [name for name, span in table.groups for _ in range(span)] or [""] * len(table.header)
    return [f"{group} {name}".strip() for group, name in zip(groups, table.header)]


def markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"

    align = ["---"] * table.text_columns + ["--:"] * (len(table.header) - table.text_columns)
    body = [line(row) for row in marked(table.rows, table.bold, lambda text: f"**{text}**")]
    notes = "".join(f"\n{note}\n" for note in table.notes)
    return "\n".join([line(flat_header(table)), "|" + "|".join(align) + "|", *body]) + "\n" + notes


def latex_escape(text: str) -> str:
    escaped = "".join(LATEX_SPECIAL.get(char, char) for char in text)
    escaped = re.sub(r"(?<![\w.])-(?=\d)", r"$-$", escaped)
    return "".join(LATEX_SYMBOLS.get(char, char) for char in escaped)


def latex(table: Table) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); best cells in bold."""
    def line(cells: list[str]) -> str:
        return " & ".join(cells) + r" \\"

    escaped = [[latex_escape(text) for text in row] for row in table.rows]
    rows = marked(escaped, table.bold, lambda text: rf"\textbf{{{text}}}")
    lines = [f"% {latex_escape(table.title)}", r"% requires \usepackage{booktabs}",
             r"\begin{tabular}{" + "l" * table.text_columns + "r" * (len(table.header) - table.text_columns) + "}",
             r"\toprule"]
    if table.groups:
        lines.append(line([rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(name)}}}" for name, span in table.groups]))
        lines.append(" ".join(rf"\cmidrule(lr){{{start}-{start + span - 1}}}"
                              for name, span, start in _spans(table.groups) if name))
    lines += [line([latex_escape(name) for name in table.header]), r"\midrule"]
    for index, row in enumerate(rows):
        if index in table.breaks:
            lines.append(r"\midrule")
        lines.append(line(row))
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% {latex_escape(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _spans(groups: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """(name, span, first column, 1-based) per header group."""
    starts, start = [], 1
    for name, span in groups:
        starts.append((name, span, start))
        start += span
    return starts


def html_table(table: Table) -> str:
    def cell_class(col: int) -> str:
        return ' class="text"' if col < table.text_columns else ""

    group_row = "".join(f'<th colspan="{span}">{html.escape(name)}</th>' for name, span in table.groups)
    header_row = "".join(f"<th{cell_class(col)}>{html.escape(name)}</th>" for col, name in enumerate(table.header))
    escaped = [[html.escape(text) for text in row] for row in table.rows]
    body = [
        ('<tr class="break">' if index in table.breaks else "<tr>")
        + "".join(f"<td{cell_class(col)}>{text}</td>" for col, text in enumerate(row)) + "</tr>"
        for index, row in enumerate(marked(escaped, table.bold, lambda text: f"<strong>{text}</strong>"))
    ]
    head = [f"<tr>{group_row}</tr>"] if table.groups else []
    return "\n".join([
        '<div class="scroll"><table>', f"<caption>{html.escape(table.title)}</caption>",
        "<thead>", *head, f"<tr>{header_row}</tr>", "</thead>", "<tbody>", *body, "</tbody>", "</table></div>",
    ]) + "\n"
