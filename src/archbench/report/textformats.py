"""The Markdown and LaTeX reports: owns rendering tables and the outline as report.md and report.tex.

Both reference the figure files written beside them (figures/*.png) instead of embedding them. LaTeX
tables use booktabs; report.tex is a complete document (pdflatex), and tables/*.tex hold each table alone
for pasting into a paper.
"""

from __future__ import annotations

import html

from archbench.report.document import Block, Outline
from archbench.report.tables import Table
from archbench.util.escape import visible


def md_escape(text: str) -> str:
    """Markdown table cell: control characters made visible, HTML-escaped (renderers pass raw HTML
    through), pipes and markup escaped."""
    s = html.escape(visible(text), quote=False).translate(_MD_TABLE)
    return " ".join(s.split())


_MD_TABLE = str.maketrans({ch: "\\" + ch for ch in ("\\", "`", "*", "[", "]", "|")})


def to_markdown(t: Table) -> str:
    if not t.rows:
        return "_none_\n"
    lines = ["| " + " | ".join(md_escape(c) for c in t.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    for row in t.rows:
        lines.append("| " + " | ".join(md_escape(c.text) for c in row) + " |")
    return "\n".join(lines) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "·": r"\textperiodcentered{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "−": "-",
}


LONG_TABLE_ROWS = 35


_TEX_TABLE = str.maketrans(_TEX)


def tex_escape(text: str) -> str:
    """LaTeX text: control characters made visible (their backslash is then escaped), specials escaped."""
    return visible(text).translate(_TEX_TABLE)


def to_latex(t: Table, placement: str = "htbp") -> str:
    """A booktabs table (needs booktabs and graphicx; longtable for long ones); wide tables scale to fit."""
    keep = [i for i, c in enumerate(t.columns) if c not in t.tex_skip]
    align = "".join("r" if t.numeric(i) else "l" for i in keep)
    header = " & ".join(tex_escape(t.columns[i]) for i in keep) + r" \\"
    body = [" & ".join(tex_escape(row[i].text) for i in keep) + r" \\" for row in t.rows]
    note = [r"\par\smallskip{\footnotesize " + tex_escape(t.note) + "}"] if t.note else []
    label = r"\label{tab:" + t.name.replace("_", "-") + "}"
    if len(t.rows) > LONG_TABLE_ROWS:  # breaks across pages; too long to scale onto one
        return (
            "\n".join(
                [r"{\footnotesize", r"\begin{longtable}{" + align + "}"]
                + [
                    r"\caption{" + tex_escape(t.title) + "}" + label + r" \\",
                    r"\toprule",
                    header,
                    r"\midrule",
                ]
                + [r"\endhead"]
                + body
                + [r"\bottomrule", r"\end{longtable}}"]
                + note
            )
            + "\n"
        )
    lines = [
        r"\begin{table}[" + placement + "]",
        r"\centering",
        r"\caption{" + tex_escape(t.title) + "}" + label,
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{" + align + "}",
        r"\toprule",
        header,
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}}",
        *note,
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _md_text(text: str) -> str:
    return md_escape(text)


def _md_block(b: Block) -> str:
    if b.kind == "heading":
        return "#" * b.level + " " + _md_text(b.text) + "\n"
    if b.kind == "text":
        return _md_text(b.text) + "\n"
    if b.kind == "banner":
        label = {"error": "WARNING", "warning": "CAUTION", "success": "✓ VERIFIED"}.get(b.severity, "NOTE")
        return f"> **{label}:** {_md_text(b.text)}\n"
    if b.kind == "list":
        return f"**{_md_text(b.text)}**\n\n" + "".join(f"- {_md_text(i)}\n" for i in b.items)
    if b.kind == "table" and b.table is not None:
        t = b.table
        out = f"**{_md_text(t.title)}**\n\n" + to_markdown(t)
        return out + (f"\n_{_md_text(t.note)}_\n" if t.note else "")
    if b.kind == "figure" and b.figure is not None:
        f = b.figure
        return (
            f"![{_md_text(f.title)}](figures/{f.name}.png)\n\n_{_md_text(f.title)}._ {_md_text(f.caption)}\n"
        )
    return ""


def render_markdown(outline: Outline) -> str:
    parts = [f"# {_md_text(outline.title)}\n", _md_text(outline.subtitle) + "\n"]
    parts += [_md_block(b) for b in outline.blocks]
    return "\n".join(parts)


def _tex_block(b: Block) -> str:
    if b.kind == "heading":
        cmd = {2: "section", 3: "subsection"}.get(b.level, "subsubsection")
        return f"\\{cmd}{{{tex_escape(b.text)}}}\n"
    if b.kind == "text":
        return tex_escape(b.text) + "\n"
    if b.kind == "banner":
        return f"\\fbox{{\\parbox{{0.95\\linewidth}}{{\\textbf{{{tex_escape(b.text)}}}}}}}\n"
    if b.kind == "list":
        items = "".join(f"\\item {tex_escape(i)}\n" for i in b.items)
        return f"\\paragraph{{{tex_escape(b.text)}}}\n\\begin{{itemize}}\n{items}\\end{{itemize}}\n"
    if b.kind == "table" and b.table is not None:
        return "" if not b.table.rows else to_latex(b.table, placement="H")
    if b.kind == "figure" and b.figure is not None:
        f = b.figure
        return (
            "\\begin{figure}[H]\n\\centering\n"
            f"\\includegraphics[width=\\linewidth,height=0.8\\textheight,keepaspectratio]{{figures/{f.name}.png}}\n"
            f"\\caption{{\\textbf{{{tex_escape(f.title)}.}} {tex_escape(f.caption)}}}\n"
            f"\\label{{fig:{f.name.replace('_', '-')}}}\n\\end{{figure}}\n"
        )
    return ""


def render_latex(outline: Outline) -> str:
    head = (
        "\\documentclass[10pt]{article}\n"
        "\\usepackage[utf8]{inputenc}\n\\usepackage[T1]{fontenc}\n\\usepackage{textcomp}\n"
        "\\usepackage[margin=2cm,landscape]{geometry}\n"
        "\\usepackage{booktabs}\n\\usepackage{longtable}\n\\usepackage{graphicx}\n\\usepackage{float}\n"
        f"\\title{{{tex_escape(outline.title)}}}\n\\date{{{tex_escape(outline.subtitle)}}}\n\\author{{}}\n"
        "\\begin{document}\n\\maketitle\n"
    )
    body = "\n".join(_tex_block(b) for b in outline.blocks)
    return head + body + "\n\\clearpage\n\\end{document}\n"
