"""The plan as a picture: graphviz's DOT language, rendered by its ``dot`` program.

``Pipeline.print_graph("plan.svg")`` (or ``.png``, ``.pdf``) and a pipeline's notebook
display (``_repr_svg_``) use it. After a run, each stage's box carries its figures (items
in and out, busy share, workers) and the bottleneck is filled in colour. ``dot`` is a
program of the graphviz package of the system (``apt install graphviz``), not a Python
dependency; without it, rendering says what to install.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

from olympipe._graph import Plan, describe

if TYPE_CHECKING:
    from olympipe.stats import RunStats, StageStats

FORMATS = (".svg", ".png", ".pdf")
INSTALL_HINT = (
    "rendering the plan needs graphviz's dot program: install graphviz"
    " (apt install graphviz, dnf install graphviz, brew install graphviz, conda install graphviz)"
)
_BOTTLENECK = "#f4a261"


def dot_source(plan: Plan, stats: RunStats | None = None) -> str:
    """The plan in DOT: a box per stage (its figures when ``stats`` is given), an ellipse
    per source, a point per result."""
    rows: dict[str, StageStats] = {r.name: r for r in stats.rows} if stats is not None else {}
    lines = ["digraph olympipe {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];']
    for node in plan.nodes:
        text = describe(node)
        if node.is_source:
            lines.append(f'  n{node.id} [shape=ellipse, label="{_escape(text)}"];')
            continue
        label = plan.labels.get(node.id, node.spec.name)
        row = rows.get(label)
        attrs = ["shape=box", 'style="rounded"']
        if row is not None:
            text += (
                f"\\n{row.items_in:,} in, {row.items_out:,} out, busy {row.busy_pct:.0f} %,"
                f" {row.workers} worker{'s' if row.workers != 1 else ''}"
            )
            if stats is not None and label == stats.bottleneck:
                attrs = ["shape=box", 'style="rounded,filled"', f'fillcolor="{_BOTTLENECK}"']
                text += "\\nbottleneck"
        lines.append(f'  n{node.id} [{", ".join(attrs)}, label="{_escape(text, keep_newlines=True)}"];')
    for node in plan.nodes:
        for slot, consumers in enumerate(plan.consumers[node.id]):
            tail = f' [label="{slot}"]' if node.spec.output_slots > 1 else ""
            for consumer in consumers:
                if consumer.node is not None:
                    lines.append(f"  n{node.id} -> n{consumer.node.id}{tail};")
                else:
                    lines.append(f'  r{consumer.sink} [shape=plaintext, label="result {consumer.sink}"];')
                    lines.append(f"  n{node.id} -> r{consumer.sink}{tail};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot: str, fmt: str) -> bytes:
    """``dot`` rendered by graphviz's program as ``fmt`` (``svg``, ``png``, ``pdf``)."""
    program = shutil.which("dot")
    if program is None:
        raise ImportError(INSTALL_HINT)
    done = subprocess.run(
        [program, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"graphviz's dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _escape(text: str, keep_newlines: bool = False) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return escaped.replace("\\\\n", "\\n") if keep_newlines else escaped
