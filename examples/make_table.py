"""The summary table of the paper reproductions, regenerated from the examples' outputs.

    python examples/run_all.py --out examples/results          # full mode, every example
    python examples/make_table.py --from examples/results      # writes examples/README.md

Each example states its claims (``CLAIMS``, a list of :class:`_verdict.Claim`) before it
computes anything and writes their numbers and verdicts to ``OUT/NAME/summary.json``; this
script joins the two, one row per claim: the claim, its statistic and control, the value and
the control with their intervals, the verdict, the seeds and the time. A note per claim
(``NOTES`` in the example, written after the results) says why a claim that was not
reproduced may not hold at this scale.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
EXAMPLES = ("lorch_momentum", "lipton_paths", "li_landscape", "gradvis_hessian",
            "horoi_jump_retrain")  # fmt: skip
HEADER = """# Paper reproductions

Each example in this folder tests a claim of one of the papers weightspace's methods come
from, on the embedded data, over several seeds, against a control chosen before the runs. The
verdicts are what the runs found: "reproduced", "not reproduced" or "inconclusive" (the
interval straddles the boundary). The rules are stated in each example's docstring and
applied by `examples/_verdict.py`; intervals are 95 % bootstrap intervals of the mean over
seeds. "Control, same rule" applies the claim's rule to the control: where the control passes
too, the statistic does not tell the claim from what the control would show anyway.
Regenerate with `python examples/run_all.py --out examples/results` (full mode) and
`python examples/make_table.py --from examples/results`.

"""


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the module's top level only: its main() is not run
    return module


def interval(entry: dict | None) -> str:
    if entry is None:
        return "—"
    return f"{entry['mean']:.3g} [{entry['low']:.3g}, {entry['high']:.3g}]"


def rows(results: Path) -> list[str]:
    out = []
    for name in EXAMPLES:
        path = results / name / "summary.json"
        if not path.is_file():
            raise SystemExit(f"--from: {path} is missing; run the example in full mode first")
        summary = json.loads(path.read_text())
        module = load_example(name)
        notes = getattr(module, "NOTES", {})
        for claim in module.CLAIMS:
            got = summary["claims"][claim.key]
            note = notes.get(claim.key, "")
            cells = [
                f"`{name}` {claim.key}",
                claim.paper,
                claim.statistic,
                claim.control,
                interval(got["value"]),
                interval(got["control"]),
                f"**{got['verdict']}**" + (f" — {note}" if note else ""),
                summary.get("control_verdicts", {}).get(claim.key, "—"),
                str(summary.get("seeds", "?")),
                f"{summary.get('seconds', float('nan')):.0f}",
            ]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="src", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE / "README.md")
    args = parser.parse_args()
    head = ["example", "claim (paper)", "statistic", "control", "value [95 %]",
            "control [95 %]", "verdict", "control, same rule", "seeds", "s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows(args.src)]
    args.out.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
