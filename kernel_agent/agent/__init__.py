"""The agent loop: a model writes cells in a sandboxed, recorded kernel until it answers."""

from kernel_agent.agent.images import ImageLimits
from kernel_agent.agent.loop import Agent, AgentEvent
from kernel_agent.agent.result import AgentResult, Execution, Pricing, Step, StopReason

__all__ = ["Agent", "AgentEvent", "AgentResult", "Execution", "ImageLimits", "Pricing", "Step", "StopReason"]
