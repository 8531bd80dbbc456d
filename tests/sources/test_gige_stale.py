"""The GigE source's rule for buffers aravis hands back older than frames it already delivered
(AravisProject/aravis#396): they go back to the pool unreported, since each was delivered or counted already; a wrap
of the 16-bit ids or a restarted numbering is new frames. Plain buffers stand in for aravis' here, which only the
frame id and the pool are read of; tests/integration/cameras/test_gige.py runs the source on aravis' fake camera."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_ad.sources.gige import STALE_IDS, GigeSource


@dataclass
class Buffer:
    frame_id: int

    def get_frame_id(self) -> int:
        return self.frame_id


@dataclass
class Pool:
    pushed: list[int] = field(default_factory=list)

    def push_buffer(self, buffer: Buffer) -> None:
        self.pushed.append(buffer.frame_id)


def fresh(ids: list[int], last_id: int | None) -> tuple[list[int], list[int]]:
    pool = Pool()
    kept = GigeSource._fresh([Buffer(i) for i in ids], last_id, pool)
    return [b.frame_id for b in kept], pool.pushed


def test_buffers_older_than_a_delivered_frame_go_back_unreported() -> None:
    assert fresh([8, 9, 12, 13], last_id=10) == ([12, 13], [8, 9])
    assert fresh([10], last_id=10) == ([], [10])  # the delivered frame itself, again
    assert fresh([12, 11, 13], last_id=10) == ([12, 13], [11])  # behind one popped before it


def test_new_frames_are_kept_whatever_their_ids() -> None:
    assert fresh([11, 12], last_id=10) == ([11, 12], [])
    assert fresh([5, 6], last_id=None) == ([5, 6], [])  # the first pop after connecting
    assert fresh([1, 2], last_id=65535) == ([1, 2], [])  # the 16-bit ids wrapped
    assert fresh([1], last_id=1 + STALE_IDS) == ([1], [])  # the camera restarted its numbering
