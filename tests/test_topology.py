"""Communication topologies: named shapes, custom matrices, direction, schedules, and the
discussion kind seeing only what its topology lets through."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sociolab.scenarios.topology import Topology
from tests.conftest import cli, tables, write_yaml


def edges(t: Topology, n: int, r: int = 0) -> set[tuple[int, int]]:
    return {(i, j) for i in range(n) for j in range(n) if i != j and t.reaches(i, j, r, n)}


@pytest.mark.parametrize("shape, directed, expected", [
    ("complete", True, {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)}),
    ("chain", True, {(0, 1), (1, 2)}),
    ("chain", False, {(0, 1), (1, 0), (1, 2), (2, 1)}),
    ("ring", True, {(0, 1), (1, 2), (2, 0)}),
    ("star", True, {(0, 1), (0, 2), (1, 0), (2, 0)}),
    ("none", True, set()),
])
def test_named_shapes(shape, directed, expected):
    assert edges(Topology(shape=shape, directed=directed), 3) == expected


def test_star_hub_and_custom_matrix_rows_are_senders():
    assert edges(Topology(shape="star", hub=3), 3) == {(2, 0), (2, 1), (0, 2), (1, 2)}
    t = Topology(matrix=[[0, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert t.shape == "custom"
    assert edges(t, 3) == {(0, 1), (2, 0)}
    assert edges(Topology(matrix=[[0, 1, 0], [0, 0, 0], [1, 0, 0]], directed=False), 3) == \
        {(0, 1), (1, 0), (2, 0), (0, 2)}
    assert t.reaches(1, 1, 0, 3)                     # an agent always sees itself


def test_schedule_changes_the_graph_from_its_round_on():
    t = Topology(shape="none", schedule=[{"from_round": 2, "shape": "chain"}, {"from_round": 4, "shape": "complete"}])
    assert edges(t, 3, 1) == set()
    assert edges(t, 3, 2) == edges(t, 3, 3) == {(0, 1), (1, 2)}
    assert len(edges(t, 3, 9)) == 6
    assert not t.is_complete()


@pytest.mark.parametrize("data, words", [
    ({"shape": "custom"}, "needs a matrix"),
    ({"shape": "ring", "matrix": [[0]]}, "takes no matrix"),
    ({"matrix": [[0, 2], [1, 0]]}, "0 or 1"),
    ({"schedule": [{"from_round": 3}, {"from_round": 1}]}, "increasing order"),
    ({"shape": "grid"}, "shape"),
])
def test_bad_topologies_say_what_to_fix(data, words):
    with pytest.raises(ValidationError, match=words):
        Topology.model_validate(data)


def test_check_against_the_roster():
    Topology(matrix=[[0, 1], [1, 0]]).check(2)
    with pytest.raises(ValueError, match="must be 3 x 3"):
        Topology(matrix=[[0, 1], [1, 0]]).check(3)
    with pytest.raises(ValueError, match="schedule\\[0\\].*hub 5"):
        Topology(schedule=[{"from_round": 1, "shape": "star", "hub": 5}]).check(3)


DISCUSSION = """
name: topo
kind: discussion
seed: 5
agents:
  roster: warroom
  only: [llama, kimi, qwen]
params:
  seed_message: "@all Plan a small web app together."
  rounds: 3
  stagger_ms: 0
  {topology}
sim: {{stand_ins: true}}
"""


def test_discussion_in_a_chain_sees_only_its_predecessor(tmp_path):
    """A directed chain 1 -> 2 -> 3: agent 1 sees no peer, agent 3 only agent 2; the context
    sizes stored with each message say exactly how many peer lines each call got."""
    runs = {}
    for name, topology in {"complete": "", "chain": "topology: {shape: chain}"}.items():
        path = write_yaml(tmp_path, DISCUSSION.format(topology=topology), f"{name}.yaml")
        done = cli("run", str(path), "--db", str(tmp_path / f"{name}.duckdb"), "--quiet")
        assert done.returncode == 0, done.stderr
        runs[name] = tables(tmp_path / f"{name}.duckdb", {"sizes": """
            SELECT a.position, m.round, m.context_size FROM messages m JOIN agents a USING (run_id)
            WHERE a.agent_id = m.sender ORDER BY a.position, m.round"""})["sizes"]
    # stagger 0: every call of round r sees the seed and the earlier rounds' messages it can hear;
    # system prompt + seed = 2, then own replies (assistant) and heard peers (user).
    chain = {(pos, r): size for pos, r, size in runs["chain"]}
    complete = {(pos, r): size for pos, r, size in runs["complete"]}
    for r in range(1, 3):
        assert chain[(1, r)] == 2 + r                # only its own earlier replies
        assert chain[(2, r)] == 2 + 2 * r            # + agent 1's
        assert chain[(3, r)] == 2 + 2 * r            # + agent 2's, not agent 1's
        assert complete[(3, r)] == 2 + 3 * r


def test_discussion_topology_errors_name_the_file_line(tmp_path):
    path = write_yaml(tmp_path, DISCUSSION.format(topology="topology: {matrix: [[0, 1], [1, 0]]}"))
    done = cli("run", str(path), "--db", str(tmp_path / "x.duckdb"), "--quiet")
    assert done.returncode == 2
    assert "must be 3 x 3" in done.stderr and "scenario.yaml" in done.stderr
    assert "Traceback" not in done.stderr


def test_complete_topology_keeps_the_config_hash_of_older_runs():
    """The default topology is not in the dump, so discussion runs stored before topologies keep
    their configuration hash (and a rerun resumes them)."""
    from sociolab.scenarios.discussion import DiscussionParams

    assert "topology" not in DiscussionParams(seed_message="x").model_dump(mode="json")
    assert "topology" in DiscussionParams(seed_message="x", topology={"shape": "ring"}).model_dump(mode="json")
