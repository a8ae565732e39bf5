"""OUT/report.tex: every table of the report (its tables/NAME.tex, \\input as it is) and every figure in one
LaTeX article that compiles with pdflatex and the booktabs and graphicx packages alone. It shows the tables
set as a paper sets them; paste a tables/NAME.tex into a table float of your own."""
from __future__ import annotations

from pathlib import Path

from suite.atomic import write_text
from suite.report.page import Section
from suite.report.render import latex_escape, table_files

PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage[margin=2cm]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
\setlength{\parindent}{0pt}
\sloppy
"""
DOCUMENT = "report.tex"


def write_document(out_dir: Path, title: str, sections: list[Section]) -> Path:
    return write_text(out_dir / DOCUMENT, document(title, sections))


def document(title: str, sections: list[Section]) -> str:
    parts = [PREAMBLE, rf"\title{{{latex_escape(title)}}}", r"\date{}", r"\begin{document}", r"\maketitle"]
    for section in sections:
        parts.append(rf"\section*{{{latex_escape(section.title)}}}")
        parts += [latex_escape(text) + "\n" for text in section.paragraphs]
        parts += [rf"\texttt{{{latex_escape(path)}}}\par" for path in section.files]  # beside the .tex
        parts += [table_block(table) for table in section.tables]
        if not section.small_plots:  # heat maps, one per run, stay on the web page
            parts += [figure_block(plot.stem, plot.caption) for plot in section.plots]
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


def table_block(table) -> str:
    """The title, the table and its notes in one minipage: a page break never parts them."""
    notes = "".join(rf"{{\footnotesize {latex_escape(note)}\par}}" + "\n" for note in table.notes)
    return "\n".join([
        r"\par\noindent\begin{minipage}{\linewidth}\centering",
        rf"{{\small\textbf{{{latex_escape(table.title)}}}}}\\[4pt]",
        rf"\resizebox{{\ifdim\width>\linewidth\linewidth\else\width\fi}}{{!}}{{\input{{{table_files(table)['tex']}}}}}\par",
        r"\raggedright", notes, r"\end{minipage}\par\medskip", "",
    ])


def figure_block(stem: str, caption: str) -> str:
    """A float: LaTeX places it at the top or bottom of a page, or a page of its own, instead of leaving
    the rest of a page blank where it does not fit."""
    return "\n".join([
        r"\begin{figure}[tbp]\centering",
        rf"\includegraphics[width=\linewidth,height=0.42\textheight,keepaspectratio]{{{stem}.pdf}}\\",
        rf"{{\small {latex_escape(caption)}}}", r"\end{figure}", "",
    ])
