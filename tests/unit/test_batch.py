"""The llama_batch the engine refills every step: one stream's token and prompt pieces alike."""

from localgw.engine.batch import Batch


def test_single_tokens_and_pieces_fill_the_batch_in_order():
    batch = Batch(8)
    try:
        assert batch.add([7], 41, seq=2, want_logits=True) == 0  # a stream's next token
        assert batch.add([1, 2, 3], 10, seq=0, want_logits=True) == 3  # a prompt piece
        assert batch.add([9], 5, seq=3, want_logits=False) == 4
        n = batch.n
        assert n == 5 and batch.room == 3
        assert list(batch.token[:n]) == [7, 1, 2, 3, 9]
        assert list(batch.pos[:n]) == [41, 10, 11, 12, 5]
        assert list(batch.logits[:n]) == [1, 0, 0, 1, 0]
        assert [batch._batch.seq_id[i][0] for i in range(n)] == [2, 0, 0, 0, 3]
        assert list(batch.n_seq_id[:n]) == [1] * n
        batch.clear()
        assert batch.add([4], 0, seq=1, want_logits=False) == 0 and batch.logits[0] == 0
    finally:
        batch.close()
