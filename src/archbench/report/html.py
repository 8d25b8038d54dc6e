"""The HTML report: owns turning the outline into one self-contained file (no server, no network).

Figures are embedded as data URIs; a few lines of inline JavaScript sort tables by column. Every string
from a record is escaped here, and a Content-Security-Policy allows only our own script (by hash), inline
styles and data: images, so even a missed escape could not run a script or fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from typing import Any

from archbench.report.document import Block, Outline
from archbench.report.tables import Table
from archbench.util.escape import visible


def escape(text: object) -> str:
    """HTML text or attribute value: control characters made visible (escape.py), then entities."""
    return html.escape(visible(text))


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#111;
background:#fff;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:1.2rem 1.5rem 4rem}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:2px solid #111;
padding-bottom:.2rem}h3{font-size:1rem}
.subtitle{color:#444;margin:0 0 1rem}
.banner{border:3px solid #111;padding:.6rem .9rem;margin:.6rem 0;font-weight:600}
.banner.error{background:#ffe9e6;border-color:#a00}.banner.warning{background:#fff6d6;border-color:#8a6d00}
.banner.info{background:#eef4ff}.banner.success{background:#e9f6ec;border-color:#1e6b34;font-weight:500}
.banner.success::before{content:"\\2713  ";font-weight:700}
nav{font-size:.9rem;margin:1rem 0}nav a{margin-right:.9rem}
.scroll{overflow-x:auto;max-width:100%;margin:.4rem 0 .2rem;
background:linear-gradient(90deg,#fff 30%,rgba(255,255,255,0)) left/2rem 100% no-repeat local,
linear-gradient(270deg,#fff 30%,rgba(255,255,255,0)) right/2rem 100% no-repeat local,
linear-gradient(90deg,rgba(0,0,0,.18),rgba(0,0,0,0)) left/.6rem 100% no-repeat scroll,
linear-gradient(270deg,rgba(0,0,0,.18),rgba(0,0,0,0)) right/.6rem 100% no-repeat scroll}
table{border-collapse:collapse;font-size:.82rem}
th,td{padding:.25rem .55rem;border-bottom:1px solid #ccc;text-align:left;vertical-align:top;
white-space:nowrap}
td.long{white-space:normal;overflow-wrap:anywhere;min-width:14rem;max-width:36rem}
thead th{border-top:2px solid #111;border-bottom:1.5px solid #111;background:#f4f4f4;cursor:pointer;
white-space:nowrap;user-select:none}
tbody tr:last-child td{border-bottom:2px solid #111}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.tcaption{font-weight:600;margin-top:1.2rem}.note{color:#444;font-size:.82rem;max-width:60rem}
figure{margin:1.4rem 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85rem;color:#333;max-width:60rem}
@media print{thead th{background:none}.banner{background:none!important}nav{display:none}
.scroll{overflow:visible;background:none}th,td{white-space:normal;overflow-wrap:anywhere}}
"""

# Sorts any table.sortable by the clicked column: numbers by value, text by locale; blanks last.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (r1, r2) {
        var a = r1.cells[col] ? r1.cells[col].getAttribute("data-sort") : "";
        var b = r2.cells[col] ? r2.cells[col].getAttribute("data-sort") : "";
        if (a === "" || b === "") { return (a === "") - (b === ""); }
        var x = Number(a), y = Number(b);
        var cmp = (!isNaN(x) && !isNaN(y)) ? x - y : a.localeCompare(b, undefined, {numeric: true});
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def to_html(t: Table, table_id: str) -> str:
    """A sortable HTML table: each cell carries its raw value in data-sort."""
    esc = escape
    out = [f'<div class="scroll"><table class="sortable" id="{esc(table_id)}">']
    out.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    numeric = [t.numeric(i) for i in range(len(t.columns))]
    for row in t.rows:
        cells = []
        for i, c in enumerate(row):
            raw = c.value if isinstance(c.value, int | float) and not isinstance(c.value, bool) else c.text
            attrs = f' data-sort="{esc(_sort_key(raw))}"'
            if c.title:
                attrs += f' title="{esc(c.title)}"'
            if numeric[i]:
                attrs += ' class="num"'
            elif len(c.text) > 40:
                attrs += ' class="long"'
            cells.append(f"<td{attrs}>{esc(c.text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _sort_key(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return str(v)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


def _block(b: Block) -> str:
    if b.kind == "heading":
        return f'<h{b.level} id="{escape(b.anchor)}">{escape(b.text)}</h{b.level}>'
    if b.kind == "text":
        return f"<p>{escape(b.text)}</p>"
    if b.kind == "banner":
        role = {"error": "alert", "success": "status"}.get(b.severity, "note")
        return f'<div class="banner {escape(b.severity)}" role="{role}">{escape(b.text)}</div>'
    if b.kind == "list":
        items = "".join(f"<li>{escape(i)}</li>" for i in b.items)
        return f'<p class="tcaption">{escape(b.text)}</p><ul class="note">{items}</ul>'
    if b.kind == "table" and b.table is not None:
        t = b.table
        parts = [f'<p class="tcaption" id="{escape(b.anchor)}">{escape(t.title)}</p>']
        if not t.rows:
            parts.append('<p class="note">(none)</p>')
        else:
            parts.append(to_html(t, f"t-{t.name}"))
        if t.note:
            parts.append(f'<p class="note">{escape(t.note)}</p>')
        return "\n".join(parts)
    if b.kind == "figure" and b.figure is not None:
        f = b.figure
        data = base64.b64encode(f.png).decode("ascii")
        return (
            f'<figure id="{escape(b.anchor)}">'
            f'<img src="data:image/png;base64,{data}" alt="{escape(f.title)}">'
            f"<figcaption><b>{escape(f.title)}.</b> {escape(f.caption)}</figcaption></figure>"
        )
    return ""


def render_html(outline: Outline) -> str:
    nav = " ".join(
        f'<a href="#{escape(b.anchor)}">{escape(b.text)}</a>'
        for b in outline.blocks
        if b.kind == "heading" and b.level == 2
    )
    lead = 0  # banners go above the navigation: the first screen must show them
    while lead < len(outline.blocks) and outline.blocks[lead].kind == "banner":
        lead += 1
    banners = "\n".join(_block(b) for b in outline.blocks[:lead])
    body = "\n".join(_block(b) for b in outline.blocks[lead:])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{escape(_csp())}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="archbench report">
<title>{escape(outline.title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{escape(outline.title)}</h1>
<p class="subtitle">{escape(outline.subtitle)}</p>
{banners}
<nav>{nav}</nav>
{body}
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""
