"""The results: table rows (figure, value, target, PASS/MISS), the named JSON figures of issues #12 and #23, each
phase's detailed results, and every phase's slowest answer against its deadline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.infra.metrics import Phase

Row = tuple[str, str, str, str]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    deadlines: dict[str, dict[str, Any]] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missed

    def section(self, title: str) -> None:
        self.rows.append((f"[{title}]", "", "", ""))

    def row(self, metric: str, value: str, target: str = "-", passed: bool | None = None) -> None:
        verdict = "" if passed is None else ("PASS" if passed else "MISS")
        if passed is False:
            self.missed.append(metric.strip())
        self.rows.append((metric, value, target, verdict))

    def figure(self, key: str, value: Any) -> Any:
        """A named figure of the issues' ``--json`` list (floats rounded to 4 significant places)."""
        if isinstance(value, float) and math.isfinite(value):
            value = float(f"{value:.4g}")
        self.figures[key] = value
        return value

    def deadline(self, name: str, phase: Phase) -> None:
        """Record the slowest answer of ``phase`` against the Provider timeout it ran under, and how long the bench's
        own process stood still meanwhile."""
        self.record_deadline(name, phase.deadline or 0.0, phase.latencies)
        d = self.deadlines[name]
        stalls = phase.client_stalls
        d["clientLoopLagMaxS"] = round(max(d.get("clientLoopLagMaxS", 0.0), stalls.loop_lag), 4)
        d["clientGcPauseMaxS"] = round(max(d.get("clientGcPauseMaxS", 0.0), stalls.gc_pause), 4)

    def record_deadline(self, name: str, deadline: float, latencies: list[float]) -> None:
        d = self.deadlines.setdefault(
            name, {"deadlineS": deadline, "maxAnswerS": 0.0, "answers": 0, "answersAfterDeadline": 0}
        )
        d["maxAnswerS"] = round(max(d["maxAnswerS"], max(latencies, default=0.0)), 4)
        d["answers"] += len(latencies)
        d["answersAfterDeadline"] += sum(1 for x in latencies if x > deadline)

    def deadline_rows(self) -> None:
        self.section("deadline: every answer before the Provider timeout (bench client's own stalls in brackets)")
        total = 0
        for name, d in self.deadlines.items():
            total += d["answersAfterDeadline"]
            value = f"{d['maxAnswerS'] * 1000:,.0f} ms (timeout {d['deadlineS']:g} s), {d['answersAfterDeadline']} late"
            if "clientLoopLagMaxS" in d:
                value += (
                    f" [client loop lag {d['clientLoopLagMaxS'] * 1000:,.0f} ms,"
                    f" GC {d['clientGcPauseMaxS'] * 1000:,.0f} ms]"
                )
            self.row(f"  {name}: slowest of {d['answers']:,} answers", value, "0 late", d["answersAfterDeadline"] == 0)
        self.figure("answers_after_deadline", total)
        self.figure(
            "max_answer_vs_deadline",
            {name: {"max_s": d["maxAnswerS"], "deadline_s": d["deadlineS"]} for name, d in self.deadlines.items()},
        )

    def format(self) -> str:
        header: Row = ("metric", "value", "target", "result")
        body = [r for r in self.rows if not _is_section(r)]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(4)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        for r in self.rows:
            if _is_section(r):
                lines.append(r[0])
            else:
                lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return "\n".join(lines)


def _is_section(row: Row) -> bool:
    return row[0].startswith("[") and not any(row[1:])
