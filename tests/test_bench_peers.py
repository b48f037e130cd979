"""The peers benchmark's answer check, on a few hosts: spyglass, parallel-ssh over a real sshd and
Ansible must find the same hosts and paths, and a difference must be caught."""

from __future__ import annotations

import pytest

from bench import sshd
from bench.cgroup import CgroupError, hierarchy
from bench.peers import AnswerMismatch, Options, check_answers, missing_tools, run
from bench.peers_runner import Sample
from tests.support.paths import short_tmp


def _skip_unless_runnable() -> list[str]:
    try:
        hierarchy()
    except CgroupError as err:
        pytest.skip(f"the benchmark meters CPU per cgroup: {err}")
    if why := sshd.missing():
        pytest.skip(why)
    missing = missing_tools(["pssh", "ansible"])
    if "pssh" in missing:
        pytest.skip(missing["pssh"])
    return [t for t in ("spyglass", "pssh", "ansible") if t not in missing]


def test_every_tool_finds_the_same_hosts_and_paths() -> None:
    tools = _skip_unless_runnable()
    result = run(Options(n=5, rounds=1, tools=tools, honest_n=2), short_tmp("sgp"), print)
    assert "mismatch" not in result, result["mismatch"]
    samples = result["samples"]
    for search in ("name", "content"):
        rows = {tool: runs[0] for (tool, s), runs in samples.items() if s == search}
        assert set(rows) >= {"spyglass cold", "spyglass warm", "parallel-ssh"}
        assert "spyglass cold, 1 agent/process" in rows
        reference = rows["spyglass cold"].found
        assert reference, "the search must find something on five lab hosts"
        assert rows["parallel-ssh"].found == reference
        for sample in rows.values():
            assert sample.client_cpu > 0 and sample.rss > 0
        assert rows["parallel-ssh"].endpoint_cpu > 0  # sshd's tree was metered
        assert rows["spyglass cold"].endpoint_cpu > 0  # the agents' cgroup was metered


def _sample(found: set[tuple[str, str]], answered: int = 2) -> Sample:
    return Sample(1.0, 0.1, 0.1, 1, found, answered)


def test_a_different_answer_is_caught() -> None:
    hosts = {"agents": ["lab-001", "lab-002"], "agents-1": ["lab-001"]}
    same = {("lab-002", "/srv/www/uploads/.cache.php")}
    check_answers(
        {
            ("spyglass cold", "name"): [_sample(same)],
            ("parallel-ssh", "name"): [_sample(same)],
            ("spyglass cold, 1 agent/process", "name"): [_sample(set(), answered=1)],
        },
        hosts,
    )
    extra = same | {("lab-001", "/srv/www/x.php")}
    with pytest.raises(AnswerMismatch, match="only parallel-ssh"):
        check_answers(
            {
                ("spyglass cold", "name"): [_sample(same)],
                ("ansible", "name"): [],
                ("parallel-ssh", "name"): [_sample(extra)],
            },
            hosts,
        )
    with pytest.raises(AnswerMismatch, match="1 of 2 hosts answered"):
        check_answers(
            {
                ("spyglass cold", "name"): [_sample(same)],
                ("parallel-ssh", "name"): [_sample(same, 1)],
            },
            hosts,
        )
    with pytest.raises(AnswerMismatch, match="found nothing"):
        check_answers({("spyglass cold", "name"): [_sample(set())]}, hosts)
