import pytest

from localgw.engine.threads import default_threads


@pytest.mark.parametrize("cpus,decode", [(1, 1), (2, 2), (4, 4), (8, 4), (12, 5), (16, 7), (64, 16)])
def test_decode_threads_leave_room(cpus, decode):
    got_decode, got_batch = default_threads(cpus)
    assert got_decode == decode
    assert got_decode <= got_batch <= cpus
