"""The black-and-white figure vocabulary every figure shares: owns which marker, line style, grey and hatch
tells the i-th series apart; draws nothing.

Series are told apart by marker, line style, fill and hatch, never by colour alone, so a figure reads the
same printed in black and white. The report's figures (report/figures) and the stages' figures (maps,
profile, explanations) both take their styles from here.
"""

from __future__ import annotations

from typing import Any

MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">", "h", "p")
LINESTYLES = ("-", "--", ":", "-.")
GREYS = ("0.15", "0.85", "0.5", "white", "0.3", "0.7")  # alternating dark and light: neighbours differ
HATCHES = ("", "//", "..", "xx", "\\\\", "--", "++", "oo")


def series_style(i: int) -> dict[str, Any]:
    """Style of the i-th line or point series (rank order), the same in every figure."""
    return {
        "color": "black",
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[(i // 3) % len(LINESTYLES)],
        "markerfacecolor": "white" if (i // len(MARKERS)) % 2 else "black",
        "markeredgecolor": "black",
    }


def bar_style(i: int) -> dict[str, Any]:
    """Style of the i-th bar series of a grouped bar chart: a grey fill, a hatch once the greys repeat."""
    return {
        "color": GREYS[i % len(GREYS)],
        "hatch": HATCHES[(i // len(GREYS)) % len(HATCHES)] or None,
        "edgecolor": "black",
        "linewidth": 0.6,
    }
