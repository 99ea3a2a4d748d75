"""The API server's side of pods/log and pods/exec: which agent, which container."""

import pytest
from multidict import MultiDict

from meshnet.api.errors import StatusError
from meshnet.control.apiserver.podproxy import _agent_address, _container


class Registry:
    """The two lookups podproxy makes, over a dict (the real Registry needs a store)."""

    def __init__(self, nodes):
        self.nodes = nodes

    async def get(self, info, namespace, name):
        if name not in self.nodes:
            raise StatusError(404, "NotFound", f'nodes "{name}" not found')
        return self.nodes[name]


class Request:
    def __init__(self, **query):
        self.query = MultiDict(query)


def pod(node=None, containers=("app",)):
    return {"metadata": {"name": "web"},
            "spec": {**({"nodeName": node} if node else {}),
                     "containers": [{"name": c} for c in containers]}}


NODE = {"status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                 {"type": "InternalIP", "address": "192.168.1.5"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10350}}}}

ADDRESS = [
    ("InternalIP and the advertised port", {"n1": NODE}, pod("n1"), ("192.168.1.5", 10350)),
    ("no advertised port: kubelet's 10250", {"n1": {"status": {"addresses": [
        {"type": "InternalIP", "address": "10.0.0.1"}]}}}, pod("n1"), ("10.0.0.1", 10250)),
]


@pytest.mark.parametrize("desc,nodes,obj,expected", ADDRESS, ids=[c[0] for c in ADDRESS])
async def test_agent_address(desc, nodes, obj, expected):
    assert await _agent_address(Registry(nodes), obj) == expected


ADDRESS_ERRORS = [
    ("unscheduled pod", {}, pod(None), 400, "pod web does not have a host assigned"),
    ("node without InternalIP", {"n1": {"status": {}}}, pod("n1"), 400,
     "node n1 has no InternalIP address"),
    ("node gone", {}, pod("n1"), 404, 'nodes "n1" not found'),
]


@pytest.mark.parametrize("desc,nodes,obj,code,message", ADDRESS_ERRORS,
                         ids=[c[0] for c in ADDRESS_ERRORS])
async def test_agent_address_errors(desc, nodes, obj, code, message):
    with pytest.raises(StatusError) as info:
        await _agent_address(Registry(nodes), obj)
    assert info.value.code == code and message in info.value.message


CONTAINER = [
    ("the only container by default", pod(), {}, "app"),
    ("the named one", pod(containers=("a", "b")), {"container": "b"}, "b"),
]


@pytest.mark.parametrize("desc,obj,query,expected", CONTAINER, ids=[c[0] for c in CONTAINER])
def test_container(desc, obj, query, expected):
    assert _container(obj, Request(**query)) == expected


@pytest.mark.parametrize("obj,query,message", [
    (pod(containers=("a", "b")), {}, "a container name must be specified for pod web, "
                                     "choose one of: [a b]"),
    (pod(), {"container": "nope"}, "container nope is not valid for pod web"),
])
def test_container_errors(obj, query, message):
    with pytest.raises(StatusError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _container(obj, Request(**query))
