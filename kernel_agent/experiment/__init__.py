"""Experiments: tasks x configurations x repeats, each run recorded, the results a table with their uncertainty."""

from kernel_agent.experiment.cache import ReplyCache
from kernel_agent.experiment.results import COLUMNS, ExperimentResults
from kernel_agent.experiment.runner import Experiment
from kernel_agent.experiment.spec import Configuration, Task

__all__ = ["COLUMNS", "Configuration", "Experiment", "ExperimentResults", "ReplyCache", "Task"]
