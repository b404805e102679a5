"""agent.wiring.LateStart: the late components wait for the POS API (or the cap), load their
modules once and off the loop, and are built together, in order, once."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from agent.wiring import LateBuilder, LateComponent, LateStart


class Part:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.ran = asyncio.Event()
        log.append(name)

    async def run(self) -> None:
        self.ran.set()
        await asyncio.Event().wait()


def _stage(
    log: list[str], gate: asyncio.Event, cap_s: float = 5.0, modules: tuple[str, ...] = ()
) -> LateStart:
    return LateStart(
        [
            LateBuilder("display", modules, lambda: Part("display", log)),
            LateBuilder("sync", (), lambda: Part("sync", log)),
        ],
        gate,
        cap_s,
    )


async def test_nothing_is_built_before_the_pos_api_serves_then_all_in_order_once() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    stage = _stage(log, gate)
    late = [LateComponent(name, stage) for name in stage.names]
    tasks = [asyncio.create_task(c.run()) for c in reversed(late)]  # order of the tasks is not the build's
    await asyncio.sleep(0.05)
    assert log == [] and all(c.built is None for c in late)
    gate.set()
    for component in late:
        for _ in range(100):
            if component.built is not None:
                break
            await asyncio.sleep(0.01)
        built = component.built
        assert isinstance(built, Part)
        await asyncio.wait_for(built.ran.wait(), 5)
    assert log == ["display", "sync"]  # built once, in the listed order
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_late_components_start_after_the_cap_when_the_pos_api_never_listens() -> None:
    log: list[str] = []
    stage = _stage(log, asyncio.Event(), cap_s=0.05)
    component = await asyncio.wait_for(stage.component("sync"), 5)
    assert isinstance(component, Part) and log == ["display", "sync"]


async def test_modules_load_on_a_worker_thread_and_the_loop_keeps_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "late_start_probe.py").write_text(
        "import threading, time\nTHREAD = threading.current_thread().name\ntime.sleep(0.3)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "late_start_probe", raising=False)
    gate = asyncio.Event()
    gate.set()
    stage = _stage([], gate, modules=("late_start_probe",))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    await asyncio.wait_for(stage.component("display"), 5)
    ticker.cancel()
    assert threading.current_thread().name != sys.modules["late_start_probe"].THREAD
    assert ticks >= 10  # the loop ran while the module's 0.3 s import was under way
    monkeypatch.delitem(sys.modules, "late_start_probe")


def test_a_builder_that_makes_another_component_is_refused() -> None:
    stage = LateStart([LateBuilder("display", (), lambda: Part("sync", []))], asyncio.Event())
    with pytest.raises(RuntimeError, match="'display' built as 'sync'"):
        stage.build()
