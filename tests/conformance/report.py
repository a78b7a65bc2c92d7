"""Turn a conformance run's JUnit XML into the case table of docs/CONFORMANCE.md.

    python3 -m pytest tests/conformance --junitxml=/tmp/conformance.xml
    python3 -m tests.conformance.report /tmp/conformance.xml --update docs/CONFORMANCE.md

Without ``--update`` the table is printed. With it, the text between the
``<!-- cases:start -->`` and ``<!-- cases:end -->`` markers is replaced.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

DUTS = ("linux", "netvisor")
START, END = "<!-- cases:start -->", "<!-- cases:end -->"


def _split(name: str) -> tuple[str, str | None]:
    """``test_x[linux-v4]`` -> (``test_x[v4]``, ``linux``)."""
    m = re.fullmatch(r"(.*?)\[(.*)\]", name)
    if not m:
        return name, None
    parts = m.group(2).split("-")
    dut = next((p for p in parts if p in DUTS), None)
    rest = "-".join(p for p in parts if p != dut)
    return (f"{m.group(1)}[{rest}]" if rest else m.group(1)), dut


def _status(case: ET.Element) -> str:
    for child in case:
        if child.tag in ("failure", "error"):
            return "**FAIL**"
        if child.tag == "skipped":
            msg = (child.get("message") or "").replace("|", "/").replace("\n", " ")
            kind = "xfail" if child.get("type") == "pytest.xfail" or "xfail" in msg.lower() else "skip"
            msg = re.sub(r"^(expected failure|xfail)[: ]*", "", msg, flags=re.IGNORECASE).strip()
            return f"{kind}\0{msg}"
    return "pass"


def table(xml_path: str) -> str:
    rows: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1].removeprefix("test_")
        name, dut = _split(case.get("name", ""))
        if dut is None:
            continue
        rows[(module, name)][dut] = _status(case)
    counts = {d: sum(1 for r in rows.values() if r.get(d) == "pass") for d in DUTS}
    notes: dict[str, int] = {}

    def cell(status: str | None) -> str:
        # Reasons become numbered notes under the table (they repeat a lot).
        if status is None:
            return "-"
        if "\0" not in status:
            return status
        kind, msg = status.split("\0", 1)
        if not msg:
            return kind
        n = notes.setdefault(msg, len(notes) + 1)
        return f"{kind} [{n}]"

    out = [f"{len(rows)} cases; passing: linux {counts['linux']}, netvisor {counts['netvisor']}.",
           "", "| area | case | linux | netvisor |", "|---|---|---|---|"]
    for (module, name), st in sorted(rows.items()):
        out.append(f"| {module} | `{name}` | {cell(st.get('linux'))} | {cell(st.get('netvisor'))} |")
    if notes:
        out.append("")
        out += [f"[{n}] {msg}  " for msg, n in notes.items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("junit_xml")
    ap.add_argument("--update", metavar="MARKDOWN", help="replace the table in this file")
    args = ap.parse_args(argv)
    text = table(args.junit_xml)
    if not args.update:
        sys.stdout.write(text)
        return 0
    doc = Path(args.update)
    body = doc.read_text()
    if START not in body or END not in body:
        sys.stderr.write(f"{doc}: markers {START} / {END} not found\n")
        return 1
    head, rest = body.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{text}{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
