"""The host's own Python, run for a kernel's request (pip, matplotlib's font cache): never the kernel's code.

A kernel writes its workspace, and an analyst often starts the host in that
very directory (``kernel-agent run --workspace .``). ``python -m pip`` and
``python -c`` put the working directory first on ``sys.path``: a ``pip`` or
``matplotlib`` package the kernel planted there would run on the host, as
root, at the next ``%pip install`` or font-cache build. pip must also not be
handed the host's secrets: it gets a minimal environment, not the host's.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from kernel_agent import SandboxPolicy, Session
from kernel_agent.errors import PythonEnvironmentError
from kernel_agent.packages import PackagePolicy
from kernel_agent.sandbox import scientific
from tests.packages.wheels import build_wheel

from .support import SECRET_ENV_NAME, SECRET_ENV_VALUE, SECRET_FILE_TEXT, HostSecrets, module_loop

pytestmark = module_loop


def planting(package: str, marker: Path) -> str:
    """Kernel code: a package ``package`` in the kernel's working directory that writes ``marker`` when imported."""
    body = f"open({str(marker)!r}, 'w').write('the kernel ran code on the host')\n"
    return textwrap.dedent(f"""
        import os
        os.makedirs({package!r}, exist_ok=True)
        for name in ('__init__.py', '__main__.py'):
            with open(os.path.join({package!r}, name), 'w') as f:
                f.write({body!r})
        print(sorted(os.listdir({package!r})))
    """)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("attack-wheels")
    build_wheel(directory, "tinypkg", "1.0", "VALUE = 'one'\n")
    return directory


@pytest.fixture(scope="module")
def host_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host directory no kernel can see: where planted code would leave its marker."""
    return tmp_path_factory.mktemp("host-only")


@pytest.fixture(scope="module")
def secret_in_host_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(SECRET_ENV_NAME, SECRET_ENV_VALUE)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def installing(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, host_only: Path,
                     secret_in_host_env: None) -> AsyncIterator[Session]:
    """A session whose host pip records its environment (a wrapper around the real pip) before it runs."""
    wrapper = host_only / "pip-wrapper.py"
    wrapper.write_text(textwrap.dedent(f"""
        import json, os, runpy, sys
        with open({str(host_only / 'pip-env.json')!r}, 'w') as f:
            json.dump(dict(os.environ), f)
        sys.argv[0] = 'pip'
        runpy.run_module('pip', run_name='__main__', alter_sys=True)
    """))
    workspace = tmp_path_factory.mktemp("installing") / "workspace"
    workspace.mkdir()
    policy = PackagePolicy(allow=["tinypkg"], no_index=True, find_links=[str(wheelhouse)], isolated=True,
                           pip=[sys.executable, "-I", str(wrapper)])
    async with Session(workspace, package_policy=policy, default_timeout=120) as session:
        yield session


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def default_pip(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> AsyncIterator[Session]:
    """A session whose host runs pip the default way (this Python's ``-m pip``)."""
    workspace = tmp_path_factory.mktemp("default-pip") / "workspace"
    workspace.mkdir()
    policy = PackagePolicy(allow=["tinypkg"], no_index=True, find_links=[str(wheelhouse)], isolated=True)
    async with Session(workspace, package_policy=policy, default_timeout=120) as session:
        yield session


async def test_a_pip_package_the_kernel_plants_in_the_hosts_working_directory_never_runs(
        default_pip: Session, host_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the host runs in the workspace; the kernel plants pip/__main__.py there, then asks for a package."""
    workspace = default_pip.local_workspace
    assert workspace is not None
    monkeypatch.chdir(workspace)  # `kernel-agent run --workspace .`
    marker = host_only / "pip-was-hijacked"
    planted = await default_pip.execute(planting("pip", marker))
    assert planted.ok and "__main__.py" in planted.stdout, planted.error
    result = await default_pip.execute("%pip install tinypkg\nimport tinypkg\nprint(tinypkg.VALUE)")
    assert not marker.exists(), "the host ran a pip package the kernel wrote"
    assert result.ok, result.error
    assert result.stdout.splitlines()[-1] == "one"


async def test_pip_gets_a_minimal_environment_without_the_hosts_secrets(installing: Session, host_only: Path) -> None:
    """Attack: ask for a package while the host holds an API key; pip (and anything it starts) must not see it."""
    import json

    result = await installing.execute("%pip install tinypkg\nimport tinypkg\nprint(tinypkg.VALUE)")
    assert result.ok, result.error
    env = json.loads((host_only / "pip-env.json").read_text())
    assert SECRET_ENV_NAME not in env
    assert SECRET_ENV_VALUE not in json.dumps(env)
    assert "PATH" in env and "HOME" in env  # what pip needs to run is still there


async def test_a_matplotlib_the_kernel_plants_in_the_hosts_working_directory_never_runs_on_the_host(
        default_pip: Session, host_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: plant matplotlib/ in the workspace the host runs in; the host's next font-cache build imports it."""
    workspace = default_pip.local_workspace
    assert workspace is not None
    marker = host_only / "matplotlib-was-hijacked"
    planted = await default_pip.execute(planting("matplotlib", marker))
    assert planted.ok, planted.error
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no font cache yet: the host builds one
    monkeypatch.setattr(scientific, "_built", {})
    font_cache = scientific.host_font_cache()
    assert not marker.exists(), "the host imported a matplotlib the kernel wrote"
    assert font_cache is not None and font_cache.is_relative_to(tmp_path / "cache")


async def test_a_font_cache_the_kernel_replaced_by_a_link_is_never_bound_into_a_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_secrets: HostSecrets) -> None:
    """Attack: the host keeps its caches in the workspace (XDG_CACHE_HOME); the kernel swaps the font cache for a
    link to a host file; the next host process would bind it (as root) into every kernel's /tmp/matplotlib."""
    workspace, other = tmp_path / "workspace", tmp_path / "other"
    workspace.mkdir()
    other.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(workspace / ".cache"))
    monkeypatch.setattr(scientific, "_built", {})
    assert scientific.host_font_cache() is not None  # built by an earlier host process, for another workspace
    async with Session(workspace, default_timeout=60) as session:
        swapped = await session.execute(textwrap.dedent(f"""
            import glob, os
            [built] = glob.glob('.cache/kernel-agent/matplotlib-*/fontlist-*.json')
            os.rename('.cache', '.cache-moved')
            os.makedirs(os.path.dirname(built))
            os.symlink({str(host_secrets.secret_file)!r}, built)
            print(built)
        """))
        assert swapped.ok, swapped.error
    monkeypatch.setattr(scientific, "_built", {})  # a new host process
    async with Session(other, default_timeout=60) as victim:
        read = await victim.execute(
            "import glob\nprint([open(p).read()[:200] for p in glob.glob('/tmp/matplotlib/fontlist-*.json')])")
    assert read.ok, read.error
    assert SECRET_FILE_TEXT not in read.stdout


@pytest.mark.filterwarnings("ignore::kernel_agent.errors.UnconfinedWarning")  # python_env is a loosening
async def test_a_python_env_whose_package_links_into_the_workspace_is_refused(tmp_path: Path) -> None:
    """Attack surface: a host-prepared environment with a package linked in from the workspace (a developer's
    `ln -s`). In the sandbox the link resolves to the writable workspace: the kernel would write the code that
    `import linked` runs in later kernels. The environment is refused before any kernel starts."""
    workspace, env = tmp_path / "workspace", tmp_path / "env"
    workspace.mkdir()
    env.mkdir()
    (workspace / "linked").mkdir()
    (env / "linked").symlink_to(workspace / "linked")
    with pytest.raises(PythonEnvironmentError, match="a link among its packages"):
        async with Session(workspace, policy=SandboxPolicy(python_env=env)):
            pass


async def test_the_host_builds_no_font_cache_where_the_kernel_can_plant_links(
        tmp_path: Path, host_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the host's cache directory is in the workspace; the kernel makes .cache/kernel-agent a link to a
    host directory, and the host's next launch (a restart) would create directories and files there, as root."""
    workspace, target = tmp_path / "workspace", host_only / "font-cache-target"
    workspace.mkdir()
    target.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(workspace / ".cache"))
    monkeypatch.setattr(scientific, "_built", {})
    async with Session(workspace, default_timeout=60) as session:
        planted = await session.execute(textwrap.dedent(f"""
            import os
            if os.path.exists('.cache'):
                os.rename('.cache', '.cache-moved')
            os.makedirs('.cache')
            os.symlink({str(target)!r}, '.cache/kernel-agent')
        """))
        assert planted.ok, planted.error
        monkeypatch.setattr(scientific, "_built", {})  # as a new host process would
        await session.restart()
        assert (await session.execute("1 + 1")).result == "2"
    assert list(target.iterdir()) == [], "the host wrote through a link the kernel planted"


async def test_an_enormous_wheel_from_the_package_source_is_stopped_at_max_wheel_bytes(
        tmp_path: Path, workspace: Path) -> None:
    """Attack: the package source serves an allowed name as a wheel far larger than any real one (here 3 MB
    against a 1 MiB limit; a hostile index could serve an endless one): pip is stopped at the limit, the host's
    disk does not fill, nothing is installed, and the kernel gets a named error."""
    house = tmp_path / "house"
    house.mkdir()
    build_wheel(house, "hugepkg", "1.0", f"BLOB = {os.urandom(3 * 1024 * 1024).hex()!r}\n")
    policy = PackagePolicy(allow=["hugepkg"], no_index=True, find_links=[str(house)], isolated=True,
                           max_wheel_bytes=1024**2)
    async with Session(workspace, package_policy=policy, default_timeout=120) as session:
        result = await session.execute("%pip install hugepkg")
        assert session.packages_dir is not None
        assert list(session.packages_dir.iterdir()) == []
    assert result.error is not None and result.error.ename == "PackageInstallError"
    assert "max_wheel_bytes" in result.error.evalue
