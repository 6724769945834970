"""Exec argument semantics (Docker Desktop's join + POSIX split) and exec policy."""

from __future__ import annotations

from typing import Any

import pytest

from dockext.argv import (
    ENV_DENY,
    ENV_DOCKER_ALLOW,
    docker_argv,
    host_binary,
    joined,
    sanitize_env,
    split_command_line,
)
from dockext.errors import ExecRefused

# ---------------------------------------------------------------------------------------------------------
# split_command_line / joined
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "args", "expected"),
    [
        ("info", ["--format", '"{{json .}}"'], ["info", "--format", "{{json .}}"]),
        ("./hello.sh", ["John Doe"], ["./hello.sh", "John", "Doe"]),
        ("tailscale up", [], ["tailscale", "up"]),
        ("stop", ['$(docker ps -qf "network=x")'], ["stop", "$(docker", "ps", "-qf", "network=x)"]),
        (
            "ls",
            ["*", "~", "`id`", "$HOME", "a;b", "a|b", "a>b"],
            ["ls", "*", "~", "`id`", "$HOME", "a;b", "a|b", "a>b"],
        ),
        ("echo", ["'single quoted'"], ["echo", "single quoted"]),
        ("echo", [r"a\ b", r"c\"d"], ["echo", "a b", 'c"d']),
        ("echo", ["#not-a-comment"], ["echo", "#not-a-comment"]),
        ("ps", [], ["ps"]),
        ("", [], []),
    ],
)
def test_split_command_line_like_docker_desktop(cmd: str, args: list[str], expected: list[str]) -> None:
    assert split_command_line(cmd, args) == expected


def test_split_command_line_coder_extension_arg() -> None:
    # marcelo-ochoa/coder-docker-extension passes a whole "sh -c" script as one quoted argument.
    arg = '"sed -i s/Light/Dark/g f || echo \'{\\"workbench\\": 1}\' > file"'
    assert split_command_line("exec", ["-d", "ctr", "/bin/sh", "-c", arg]) == [
        "exec",
        "-d",
        "ctr",
        "/bin/sh",
        "-c",
        "sed -i s/Light/Dark/g f || echo '{\"workbench\": 1}' > file",
    ]


def test_unbalanced_quote_is_refused() -> None:
    with pytest.raises(ExecRefused) as err:
        split_command_line("echo", ['"oops'])
    assert str(err.value) == 'cannot parse the command line echo "oops: No closing quotation'


def test_nul_is_refused() -> None:
    with pytest.raises(ExecRefused, match="NUL"):
        split_command_line("echo", ["a\x00b"])


def test_joined() -> None:
    assert joined("stop", ['$(docker ps -qf "network=x")']) == 'stop $(docker ps -qf "network=x")'
    assert joined("ps", []) == "ps"


@pytest.mark.parametrize("args", [["ok", 1], "not-a-list", [None]])
def test_non_string_args_are_refused(args: Any) -> None:
    with pytest.raises(ExecRefused):
        joined("echo", args)


def test_non_string_cmd_is_refused() -> None:
    with pytest.raises(ExecRefused):
        joined(None, [])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# docker_argv
# ---------------------------------------------------------------------------------------------------------


def test_docker_argv_passes_subcommands() -> None:
    assert docker_argv(["ps", "-a", "--format", "{{json .}}"]) == ["ps", "-a", "--format", "{{json .}}"]
    # Flags after the subcommand belong to it (docker's SetInterspersed(false)).
    assert docker_argv(["run", "-H", "x"]) == ["run", "-H", "x"]


def test_docker_argv_refuses_empty() -> None:
    with pytest.raises(ExecRefused, match="no docker command given"):
        docker_argv([])


@pytest.mark.parametrize("first", ["-H", "--host=tcp://evil:2375", "--context", "--config", "-D", "-"])
def test_docker_argv_refuses_global_flags(first: str) -> None:
    with pytest.raises(ExecRefused) as err:
        docker_argv([first, "ps"])
    assert repr(first) in str(err.value)
    assert err.value.http_status == 403


# ---------------------------------------------------------------------------------------------------------
# host_binary
# ---------------------------------------------------------------------------------------------------------


def test_host_binary_accepts_declared_name() -> None:
    assert host_binary("kubectl", ["kubectl", "hello.sh"]) == "kubectl"
    assert host_binary("hello.sh", iter(["kubectl", "hello.sh"])) == "hello.sh"


@pytest.mark.parametrize("name", ["", "/bin/sh", "../x", "bin/../x", "a/b", "x\x00", ".", "..", "..\\x"])
def test_host_binary_refuses_paths(name: str) -> None:
    with pytest.raises(ExecRefused):
        host_binary(name, ["x", "a", ".", ".."])


def test_host_binary_refuses_undeclared_and_lists_declared() -> None:
    with pytest.raises(ExecRefused) as err:
        host_binary("sh", ["kubectl", "helm"])
    assert "helm, kubectl" in str(err.value)
    with pytest.raises(ExecRefused, match="declares: none"):
        host_binary("sh", [])


def test_host_binary_is_exact() -> None:
    with pytest.raises(ExecRefused):
        host_binary("Kubectl", ["kubectl"])
    with pytest.raises(ExecRefused):
        host_binary("kubectl ", ["kubectl"])


# ---------------------------------------------------------------------------------------------------------
# sanitize_env
# ---------------------------------------------------------------------------------------------------------


def test_sanitize_env_none_and_empty() -> None:
    assert sanitize_env(None) == {}
    assert sanitize_env({}) == {}


def test_sanitize_env_values() -> None:
    assert sanitize_env({"A": "x", "B": 1, "C": 2.5, "D": 3.0, "E": None, "F": True, "_G": ""}) == {
        "A": "x",
        "B": "1",
        "C": "2.5",
        "D": "3",
        "F": "true",
        "_G": "",
    }


@pytest.mark.parametrize("value", [["a"], {"a": 1}, b"x", "a\x00b"])
def test_sanitize_env_refuses_bad_values(value: Any) -> None:
    with pytest.raises(ExecRefused, match="NAME"):
        sanitize_env({"NAME": value})


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A=B", "BASH_FUNC_x%%", "É", "A\x00"])
def test_sanitize_env_refuses_bad_names(name: str) -> None:
    with pytest.raises(ExecRefused, match="name"):
        sanitize_env({name: "x"})


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "ld_preload",
        "DYLD_INSERT_LIBRARIES",
        "PATH",
        "Path",
        "HOME",
        "XDG_CONFIG_HOME",
        "BASH_ENV",
        "ENV",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_GLOBAL",
        "SHELLOPTS",
        "PS4",
        "IFS",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CUSTOM_HEADERS",
        "GCONV_PATH",
        "JAVA_TOOL_OPTIONS",
    ],
)
def test_sanitize_env_refuses_dangerous_names(name: str) -> None:
    with pytest.raises(ExecRefused) as err:
        sanitize_env({"OK": "1", name: "x"})
    assert name in str(err.value)


@pytest.mark.parametrize(
    "name",
    [
        "DOCKER_API_VERSION",
        "DOCKER_BUILDKIT",
        "DOCKER_CLI_HINTS",
        "DOCKER_DEFAULT_PLATFORM",
        "DOCKER_HIDE_LEGACY_COMMANDS",
        "DOCKER_SCAN_SUGGEST",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PROFILES",
        "KUBECONFIG",
        "MY_VAR",
        "LANG",
        "ENVIRONMENT",
        "HOMEPAGE",
        "LDX",
    ],
)
def test_sanitize_env_allows_harmless_names(name: str) -> None:
    assert sanitize_env({name: "v"}) == {name: "v"}


def test_deny_list_is_documented() -> None:
    assert all(reason for reason in ENV_DENY.values())
    assert all(name.startswith("DOCKER_") for name in ENV_DOCKER_ALLOW)


def test_sanitize_env_refuses_non_mapping() -> None:
    with pytest.raises(ExecRefused):
        sanitize_env(["A=1"])  # type: ignore[arg-type]
