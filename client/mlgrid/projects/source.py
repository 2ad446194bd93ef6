"""Where a project comes from: a local folder, or a git repository cloned into a temporary folder."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile

import grpc

from mlgrid.projects.spec import ExecutionException

GIT_URI_PREFIXES = ("https://", "http://", "ssh://", "git://", "git@", "file://")


@dataclasses.dataclass(frozen=True)
class ProjectSource:
    directory: str  # the project folder, after #subdir
    source_name: str  # mlflow.source.name: the git URI as given, or the local folder
    git_commit: str | None = None
    git_repo_url: str | None = None
    clone: str | None = None  # a temporary clone, removed by cleanup()

    def cleanup(self) -> None:
        if self.clone:
            shutil.rmtree(self.clone, ignore_errors=True)


def is_git_uri(uri: str) -> bool:
    return uri.startswith(GIT_URI_PREFIXES)


def _git(args: list[str], cwd: str | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # fail rather than wait for credentials
    try:
        result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise ExecutionException("running a git project needs git on PATH", grpc.StatusCode.FAILED_PRECONDITION) from None
    if result.returncode != 0:
        raise ExecutionException(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _local_git_info(directory: str) -> tuple[str | None, str | None]:
    """(commit, origin URL) of the git checkout holding `directory`, as far as known."""
    try:
        commit = _git(["rev-parse", "HEAD"], cwd=directory)
    except ExecutionException:
        return None, None
    try:
        return commit, _git(["remote", "get-url", "origin"], cwd=directory)
    except ExecutionException:
        return commit, None


def _subdirectory(root: str, subdir: str, uri: str) -> str:
    directory = os.path.realpath(os.path.join(root, subdir))
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, directory]) != real_root or not os.path.isdir(directory):
        raise ExecutionException(f"{uri}: {subdir!r} is not a folder of the project", grpc.StatusCode.NOT_FOUND)
    return directory


def fetch_project(uri: str, version: str | None = None) -> ProjectSource:
    """The project at `uri` (`folder`, or a git URI, either with `#subdir`); `version` checks out a git commit, branch or tag."""
    base, _, subdir = uri.partition("#")
    if not is_git_uri(base):
        if version:
            raise ExecutionException(f"--version needs a git URI ({', '.join(GIT_URI_PREFIXES)}...), not the folder {base!r}")
        if not os.path.isdir(base):
            raise ExecutionException(f"no project folder at {base!r}", grpc.StatusCode.NOT_FOUND)
        directory = _subdirectory(base, subdir, uri)
        commit, repo_url = _local_git_info(directory)
        return ProjectSource(directory, directory, commit, repo_url)
    clone = tempfile.mkdtemp(prefix="mlgrid-project-")
    try:
        _git(["clone", "--quiet", base, clone])
        if version:
            _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", version], cwd=clone)
        commit = _git(["rev-parse", "HEAD"], cwd=clone)
        return ProjectSource(_subdirectory(clone, subdir, uri), uri, commit, base, clone)
    except ExecutionException:
        shutil.rmtree(clone, ignore_errors=True)
        raise
