"""The offline demo: a scripted model analyses a sizeable dataset through built-in example tools."""

from __future__ import annotations

from pathlib import Path

from kernel_agent.demo.tools import DEMO_TOOLS

DEMO_TASK = (
    "Which product category brought in the most revenue (in EUR) in the first quarter of 2026, which country "
    "bought the most of it, and how did that category's revenue move from January to March?"
)
DEMO_SCRIPT = Path(__file__).with_name("q1_revenue.py")

__all__ = ["DEMO_SCRIPT", "DEMO_TASK", "DEMO_TOOLS"]
