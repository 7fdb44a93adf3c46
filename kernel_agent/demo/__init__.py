"""The offline demos: a scripted model works through a task with built-in example tools.

* the default demo analyses a sizeable dataset of orders (plain Python in the kernel);
* the analysis demo (``kernel-agent demo --analysis``) loads sensor data as pandas DataFrames through a tool,
  plots it, and the model reads the plot it was sent to find a drifting sensor (needs the ``analysis`` extra).
"""

from __future__ import annotations

from pathlib import Path

from kernel_agent.demo.analysis_tools import ANALYSIS_TOOLS
from kernel_agent.demo.tools import DEMO_TOOLS

DEMO_TASK = (
    "Which product category brought in the most revenue (in EUR) in the first quarter of 2026, which country "
    "bought the most of it, and how did that category's revenue move from January to March?"
)
DEMO_SCRIPT = Path(__file__).with_name("q1_revenue.py")

ANALYSIS_TASK = (
    "One of our four weather stations may have a faulty sensor in 2026. Find which one, from when its readings "
    "go wrong, and by how much it is off at the end of the year."
)
ANALYSIS_SCRIPT = Path(__file__).with_name("sensor_drift.py")

__all__ = ["ANALYSIS_SCRIPT", "ANALYSIS_TASK", "ANALYSIS_TOOLS", "DEMO_SCRIPT", "DEMO_TASK", "DEMO_TOOLS"]
