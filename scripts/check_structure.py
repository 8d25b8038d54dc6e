"""Structure limits for src/archbench, checked in `make lint` (what ruff and import-linter cannot express).

At most 12 modules at the top of the package, no source file over 500 lines, no function over 80 lines.
Prints one line per breach and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_TOP_MODULES = 12
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def breaches(package: Path) -> list[str]:
    out: list[str] = []
    top = sorted(p.name for p in package.glob("*.py"))
    if len(top) > MAX_TOP_MODULES:
        out.append(f"{package}: {len(top)} top-level modules (limit {MAX_TOP_MODULES}): {', '.join(top)}")
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > MAX_FILE_LINES:
            out.append(f"{path}: {n} lines (limit {MAX_FILE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(
                        f"{path}:{node.lineno}: {node.name} is {length} lines (limit {MAX_FUNCTION_LINES})"
                    )
    return out


def main() -> int:
    package = Path(sys.argv[1] if len(sys.argv) > 1 else "src/archbench")
    found = breaches(package)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
