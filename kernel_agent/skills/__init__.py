"""Skills: functions an agent wrote and the host kept, importable read-only by later sessions.

:class:`SkillLibrary` is the store on the host (a directory of versioned,
content-addressed skills with an index); the session side makes its skills
importable in kernels (``from skills import NAME``).
"""

from kernel_agent.skills.checks import SkillPolicy
from kernel_agent.skills.library import SkillLibrary, default_library_dir
from kernel_agent.skills.pins import pins_from_notebook
from kernel_agent.skills.source import SkillsSource
from kernel_agent.skills.versions import Provenance, Skill, SkillVersion, VersionInfo

__all__ = ["Provenance", "Skill", "SkillLibrary", "SkillPolicy", "SkillVersion", "SkillsSource", "VersionInfo",
           "default_library_dir", "pins_from_notebook"]
