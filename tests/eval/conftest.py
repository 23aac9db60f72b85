import pytest


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each test starts and ends with no Accelerate singleton state (Accelerator() is global)."""
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
