"""The report's one page, twice: OUT/index.html (static, relative links) and OUT/README.md."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from suite.atomic import write_text
from suite.report.plots import Plot
from suite.report.render import html_table, markdown, table_files
from suite.report.tables import Table

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.4em; }
th, td { padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #ddd; white-space: nowrap; }
th.text, td.text { text-align: left; }
th[colspan] { text-align: center; }
thead tr:last-child th { border-bottom: 2px solid #444; }
tr.break td { border-top: 2px solid #888; }
div.scroll { overflow-x: auto; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; }
figure.small img { width: 320px; }
figcaption, .files, .note { font-size: 0.85em; color: #555; }
"""


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # relative paths, linked after the paragraphs
    small_plots: bool = False  # many figures (heat maps): shown as thumbnails


def write_page(out_dir: Path, title: str, sections: list[Section]) -> Path:
    """Write index.html and README.md; return the HTML page."""
    write_text(out_dir / "README.md", page_markdown(title, sections))
    return write_text(out_dir / "index.html", page_html(title, sections))


def page_html(title: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(text)}</p>" for text in section.paragraphs]
        parts += [f'<p class="files"><a href="{path}">{html.escape(path)}</a></p>' for path in section.files]
        for table in section.tables:
            parts.append(html_table(table))
            parts += [f'<p class="note">{html.escape(note)}</p>' for note in table.notes]
            links = " · ".join(f'<a href="{path}">{fmt}</a>' for fmt, path in table_files(table).items())
            parts.append(f'<p class="files">files: {links}</p>')
        parts += [figure_html(plot, section.small_plots) for plot in section.plots]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def figure_html(plot: Plot, small: bool) -> str:
    caption = html.escape(plot.caption)
    css_class = ' class="small"' if small else ""
    return (
        f'<figure{css_class}><a href="{plot.stem}.pdf">'
        f'<img src="{plot.stem}.png" alt="{caption}"></a>'
        f'<figcaption>{caption} (<a href="{plot.stem}.pdf">PDF</a>)</figcaption></figure>'
    )


def page_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts += section.paragraphs
        parts += [f"[{path}]({path})" for path in section.files]
        for table in section.tables:
            links = " · ".join(f"[{fmt}]({path})" for fmt, path in table_files(table).items())
            parts += [f"**{table.title}**", markdown(table), f"files: {links}"]
        parts += [f"![{plot.caption}]({plot.stem}.png) ([PDF]({plot.stem}.pdf))" for plot in section.plots]
    return "\n\n".join(parts) + "\n"
