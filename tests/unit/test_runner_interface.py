"""LlamaRunner has every member of the interface its callers use (engine.types.Runner)."""

import inspect

from localgw.engine.runner import LlamaRunner
from localgw.engine.types import Runner


def protocol_members(proto) -> set[str]:
    names = set(proto.__annotations__)
    names |= {n for n, v in vars(proto).items() if not n.startswith("_")
              and (callable(v) or isinstance(v, property))}
    return names


def test_the_runner_has_every_member_the_protocol_declares():
    init = inspect.getsource(LlamaRunner.__init__)
    missing = {n for n in protocol_members(Runner)
               if not hasattr(LlamaRunner, n) and f"self.{n} =" not in init}
    assert not missing, missing
    assert {"n_ctx", "submit", "broken", "cache", "abort_all"} <= protocol_members(Runner)
