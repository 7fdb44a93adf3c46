"""The host-side exceptions of kernel-agent, one tree, caught by meaning.

Problems caused by the *code in a cell* never raise on the host: they are
reported in the :class:`~kernel_agent.CellResult`. These exceptions are for
the host's own problems::

    KernelAgentError
    ├── SandboxError
    │   ├── SandboxUnavailableError   no sandbox can be created here (and why)
    │   └── SandboxPolicyError        the policy asks for something impossible
    │       └── PythonEnvironmentError  the policy's python_env cannot be given to a kernel
    ├── KernelStartError              the kernel did not come up
    ├── JupyterServerError            a Jupyter Server or gateway could not be used as asked:
    │                                 ServerURLError, ServerUnreachableError, ServerAuthError,
    │                                 ServerHTTPError, KernelNotFoundError, KernelSpecNotFoundError
    │                                 (kernel_agent.runtime.remote.errors, where they are raised)
    ├── SessionClosedError            the session was closed (or never started)
    ├── SessionOptionError            options that cannot go together (a pool and a server, ...)
    ├── CellRunningError              a cell still runs in the background: wait for it or cancel it first
    ├── PoolError                     a kernel pool cannot serve the request (closed, or
    │                                 a workspace or policy its kernels cannot have)
    ├── WorkspaceError                the workspace cannot be used
    ├── UnsafePathError               a path inside a sandbox-writable tree is a link,
    │                                 a special file or otherwise unsafe for the host
    ├── ToolDefinitionError           a tool cannot be built from what was given
    │   └── OpenApiError              an OpenAPI document is invalid or unsupported (says where: a JSON pointer)
    ├── McpServerError                an MCP server could not be started or listed
    ├── PackageError                  a package a kernel asked for (or a recording installed)
    │   │                             cannot be installed
    │   ├── PackageNotAllowedError    the package policy does not allow it (or there is none)
    │   └── PackageInstallError       the request is malformed, or pip failed, timed out,
    │                                 or gave something other than the wheel asked for
    ├── RecordingError                a notebook or journal cannot be written or read
    │   ├── RecordLocationError       the record would be written where a sandbox can write
    │   └── UnusableRecordError       a notebook, journal or side file given to read is malformed,
    │                                 too large, too deep, or has a field of the wrong type
    ├── ModelError                    a language model could not be asked
    │   ├── ModelConfigError          unknown provider, bad model spec, missing API key
    │   ├── ModelUnreachableError     the provider's server cannot be reached
    │   ├── ModelResponseError        the provider refused or failed (after its retries)
    │   └── ReplyCacheError           a reply cache file is malformed, too large or of the wrong shape
    ├── ExperimentError               an experiment cannot run as asked: a changed spec in its
    │   │                             directory, a corrupt journal, names unfit for paths
    │   └── ExperimentSpecError       a spec file (TOML or Python) cannot be made an experiment
    └── SkillError                    a skill cannot be stored, found or used
        ├── SkillNotFoundError        no skill (or no version) of that name or hash in the library
        ├── SkillLibraryError         the library's directory, index or a version file is unusable
        │                             (a link, another owner, corrupt or hostile content)
        └── SkillRefusedError         a skill was refused (bad name, too large, failed its checks)

    UnconfinedWarning (a Warning)     a session runs with less confinement than
                                      the default (never silently)
"""

from __future__ import annotations


class KernelAgentError(Exception):
    """Base class of every exception kernel-agent raises on the host."""


class SandboxError(KernelAgentError):
    """The OS sandbox could not be set up as the policy asks."""


class SandboxUnavailableError(SandboxError):
    """No sandbox can be created on this machine; the message says why and how to fix it."""


class SandboxPolicyError(SandboxError):
    """The sandbox policy is inconsistent or names paths that cannot be used."""


class PythonEnvironmentError(SandboxPolicyError):
    """The policy's ``python_env`` is not absolute, missing, of another Python version, or sandbox-writable."""


class KernelStartError(KernelAgentError):
    """The kernel process did not start or did not answer in time."""


class SessionClosedError(KernelAgentError):
    """The session is closed (or was never started); start a new one."""


class SessionOptionError(KernelAgentError, ValueError):
    """Session options that cannot go together, or one that does not fit where the kernel runs."""


class CellRunningError(KernelAgentError):
    """A cell of the session still runs in the background (Session.start_cell): wait for it or cancel it first."""


class PoolError(KernelAgentError):
    """A KernelPool cannot serve the request: closed, not started, or a workspace or policy its kernels lack."""


class WorkspaceError(KernelAgentError):
    """The workspace directory is missing, not a directory, or not usable."""


class ToolDefinitionError(KernelAgentError):
    """A tool cannot be built from the given function, schema or server (the message says which part)."""


class OpenApiError(ToolDefinitionError):
    """An OpenAPI document cannot become tools: unreadable, invalid, unsupported, or too large or deep.

    ``pointer`` is the JSON pointer of the problem in the document ("" for the whole document);
    the message starts with it.
    """

    def __init__(self, message: str, *, pointer: str = "") -> None:
        super().__init__(f"{pointer or '(document)'}: {message}")
        self.pointer = pointer
        self.reason = message


class McpServerError(KernelAgentError):
    """An MCP server could not be started, reached or asked for its tools."""


class PackageError(KernelAgentError):
    """A package a kernel asked for, or one a recording installed, cannot be installed (the message says why)."""


class PackageNotAllowedError(PackageError):
    """The package policy (of the session, or of whoever replays or resumes a recording) does not allow it."""


class PackageInstallError(PackageError):
    """The request is malformed, or pip failed, timed out, or gave something other than the wheel asked for."""


class RecordingError(KernelAgentError):
    """A session notebook or journal cannot be written, or one given to read is unusable (the message says why)."""


class RecordLocationError(RecordingError):
    """The notebook, journal or side files would live where a sandboxed kernel can write.

    A record the audited code can reach proves nothing; record elsewhere, or
    pass ``allow_reachable_record=True`` (the audit then says so).
    """


class UnsafePathError(KernelAgentError):
    """A name inside a directory the sandbox can write is a link, a special file or not what the host made."""


class ModelError(KernelAgentError):
    """A language model could not be asked for its next step (the message says why)."""


class ModelConfigError(ModelError):
    """The model spec names an unknown provider, is malformed, or its API key is missing."""


class MissingApiKeyError(ModelConfigError):
    """The provider's API key is not set: nothing was sent (an experiment's reply cache may still answer)."""


class ModelUnreachableError(ModelError):
    """The provider's server could not be reached (wrong base URL, no network, server down)."""


class ModelResponseError(ModelError):
    """The provider answered with an error (rate limit, overload, bad request) after its own retries."""


class UnconfinedWarning(UserWarning):
    """A session runs with weaker confinement than the default (no sandbox, or a limit not enforced)."""


class UnusableRecordError(RecordingError):
    """A notebook, journal or side file given to kernel-agent to read cannot be used.

    Not strict JSON (NaN, infinities, duplicated keys), too large, nested too
    deeply, a number past the bounds, a field of the wrong type, or a side-file
    reference that is not a sha256 name; the message names the file and the field.
    """


class SkillError(KernelAgentError):
    """A skill cannot be stored, found or used (the message says why)."""


class SkillNotFoundError(SkillError, KeyError):
    """The library has no skill of that name, or no version of it with that hash."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SkillLibraryError(SkillError):
    """The library cannot be used: its directory is a link or another user's, or its index or a version file
    is corrupt or hostile (the message names the file); nothing in it was changed."""


class SkillRefusedError(SkillError, ValueError):
    """A skill was refused: a name that is not an identifier, a size past the bounds, or (from a session)
    a proposal that failed its checks or its approval; the message says why."""


class ReplyCacheError(ModelError):
    """A file of an experiment's reply cache cannot be used: not strict JSON, too large, or a field of the wrong type.

    A :class:`ModelError`, so the run that met it stops with the reason (its
    row says it) and the file is left as it was.
    """


class ExperimentError(KernelAgentError):
    """An experiment cannot run as asked (the message says why and what to do).

    Its directory holds a different spec (pass ``start_over=True`` to set the old
    runs aside), its journal is corrupt, or a task or configuration name cannot
    be a directory name.
    """


class ExperimentSpecError(ExperimentError):
    """A spec file cannot be made an experiment: TOML that does not parse, a key unknown or of the wrong type,
    a check that cannot be built, a Python file that fails or defines no ``experiment`` (the message names the
    file and where in it)."""
