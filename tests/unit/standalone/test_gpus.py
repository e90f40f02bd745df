"""What the agent reads of its GPUs and what a session is told of its own."""

from __future__ import annotations

from workers.standalone.gpus import Declared, parse, session_environ, this_machine


def test_nvidia_smi_lines_are_devices_in_gib_and_a_line_not_understood_is_passed_over() -> None:
    listed = "0, GPU-1, NVIDIA L4, 23034\n1, GPU-2, NVIDIA L4, not-a-number\nnoise\n"
    [device] = parse(listed)
    assert (device.index, device.uuid, device.model, device.memory_gib) == (
        0, "GPU-1", "NVIDIA L4", 22.49)  # fmt: skip


def test_declared_devices_are_identical_and_numbered_from_zero() -> None:
    machine = this_machine("h1", Declared(3, 24.0, "NVIDIA L4"))
    assert [(d.index, d.uuid, d.memory_gib) for d in machine.devices] == [
        (0, "h1-gpu-0", 24.0), (1, "h1-gpu-1", 24.0), (2, "h1-gpu-2", 24.0)]  # fmt: skip
    assert machine.cpus > 0


def test_a_session_is_told_its_devices_and_the_gib_of_a_share() -> None:
    assert session_environ((), None) == {}
    assert session_environ((2, 3), None) == {"CUDA_VISIBLE_DEVICES": "2,3",
                                             "NVIDIA_VISIBLE_DEVICES": "2,3"}  # fmt: skip
    assert session_environ((1,), 20.0)["MODELFLEET_GPU_MEMORY_GIB"] == "20"
