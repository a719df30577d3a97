"""Pure parts of the --netns devnet: subnets, addresses, hosts of processes, faults."""

from __future__ import annotations

import pytest

from node.devnet import netns
from node.devnet.netns import Fault

pytestmark = pytest.mark.unit

IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
7: cs1a2bbr    inet 10.77.1.1/24 scope global cs1a2bbr\\       valid_lft forever
9: eth0    inet 10.77.3.1/24 brd 10.77.3.255 scope global eth0
10: eth1    inet 10.177.9.1/24 scope global eth1
"""


def test_taken_subnets_reads_only_10_77() -> None:
    assert netns.taken_subnets(IP_ADDR) == {1, 3}


def test_new_plan_takes_the_first_free_subnet() -> None:
    plan = netns.new_plan(["producer", "mirror1", "catalog"], {1, 2})
    assert plan.subnet == "10.77.3"
    assert plan.hosts == {"producer": "10.77.3.10", "mirror1": "10.77.3.11", "catalog": "10.77.3.12"}
    assert len(plan.id) == 4


def test_new_plan_refuses_when_every_subnet_is_taken() -> None:
    with pytest.raises(netns.NetnsError, match="no free"):
        netns.new_plan(["producer"], set(range(1, 255)))


def test_names_fit_linux_interface_names() -> None:
    plan = netns.new_plan(netns.hosts([f"mirror{i}" for i in range(1, 9)], front=True), set())
    for host in plan.hosts:
        assert len(netns.root_tap(plan, host)) <= 15
    assert len(netns.bridge(plan)) <= 15


@pytest.mark.parametrize(
    ("process", "host"),
    [
        ("links", None),
        ("catalog", "catalog"),
        ("camera-cam3", "producer"),
        ("producer", "producer"),
        ("kubo-mirror2", "mirror2"),
        ("cluster-producer", "producer"),
        ("mirror1", "mirror1"),
        ("chain", "chain"),
        ("anchor", "chain"),
        ("gateway2", "front"),
        ("nginx", "front"),
    ],
)
def test_host_of(process: str, host: str | None) -> None:
    assert netns.host_of(process, ["mirror1", "mirror2"], ["gateway1", "gateway2"]) == host


def test_host_of_unknown_process() -> None:
    with pytest.raises(ValueError, match="no host"):
        netns.host_of("mystery", [], [])


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        (Fault(), "healthy"),
        (Fault(down=True), "cut off"),
        (Fault(delay_ms=200), "delay 200 ms"),
        (Fault(delay_ms=20, loss_pct=5), "delay 20 ms, loss 5 %"),
    ],
)
def test_fault_describe(fault: Fault, text: str) -> None:
    assert fault.describe() == text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"delay_ms": -1}, "delay"), ({"delay_ms": 10001}, "delay"), ({"loss_pct": 101}, "loss")],
)
def test_fault_refuses_bad_values(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Fault(**kwargs)


def test_link_settings_apply_faults_to_their_host_only() -> None:
    plan = netns.new_plan(["producer", "mirror1"], set())
    links = netns.link_settings(plan, {"mirror1": Fault(loss_pct=5)})
    assert links["producer"].loss_pct == 0 and not links["producer"].down
    assert links["mirror1"].loss_pct == 5
    assert links["mirror1"].netns == netns.namespace(plan, "mirror1")
    assert links["mirror1"].ns_tap == netns.HOST_TAP
