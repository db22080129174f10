"""An unlearning run with the stopping rule, checkpointed and resumed, hands back the curve and
the utility floor of the uninterrupted run: the checks before the checkpoint are saved with it
(``Monitor.progress`` in the checkpoint's meta) and a resumed step checks only where the
uninterrupted run did."""

import numpy as np
import pytest

from imu_jax.unlearning.config import UnlearnConfig
from imu_jax.unlearning.loop import unlearn
from imu_jax.unlearning.monitor import Monitor
from imu_jax.unlearning.run_checkpoint import RunCheckpointer
from imu_jax.unlearning.stopping import StopRule

import tiny_models


@pytest.fixture(scope="module")
def setting():
    model, params, state, data = tiny_models.trained_classifier(0, 300)
    forget = {k: v[data["train"]["label"] == 3] for k, v in data["train"].items()}
    held_out = {k: v[data["test"]["label"] != 3] for k, v in data["test"].items()}
    kwargs = dict(state=state, seed=0, held_out=held_out,
                  stop_rule=StopRule(removal="class", eval_every=2, max_epochs=4))
    config = UnlearnConfig(learning_rate=1e-3, batch_size=8)  # slow: runs to the cap
    _, report = unlearn(model, params, forget, config, **kwargs)
    return model, params, forget, config, kwargs, report.stopping


@pytest.mark.parametrize("stop_at,resumed_from", [(7, 6), (5, 3)])  # on a check step, and off
def test_resumed_run_has_the_uninterrupted_curve(stop_at, resumed_from, setting, tmp_path):
    model, params, forget, config, kwargs, whole = setting
    assert whole["stop_reason"] == "cap" and [p["step"] for p in whole["curve"]] == [
        0, 2, 4, 6, 8, 10, 12]

    def interrupt(step, params, state):
        if step == stop_at:
            raise KeyboardInterrupt

    with RunCheckpointer(tmp_path, save_every=3) as ckpt:
        with pytest.raises(KeyboardInterrupt):
            unlearn(model, params, forget, config, checkpointer=ckpt, on_step=interrupt, **kwargs)
    with RunCheckpointer(tmp_path, save_every=3) as ckpt:
        assert ckpt.latest_step == resumed_from
        meta = ckpt.restore_selection()[1]  # the newest checkpoint's
        assert [p["step"] for p in meta["progress"]["curve"]] == list(range(0, resumed_from, 2))
        _, report = unlearn(model, params, forget, config, checkpointer=ckpt, resume=True,
                            **kwargs)
    assert report.stopping["curve"] == whole["curve"]
    assert report.stopping["utility_floor"] == whole["utility_floor"]


def test_progress_round_trips_through_json():
    import json

    monitor = Monitor.fixed()
    monitor.curve = [{"step": 0, "forget_acc": 1.0}]
    monitor.utility_floor = -np.inf  # no guard: stored as "set, none"
    again = Monitor.fixed()
    again.resume(json.loads(json.dumps(monitor.progress())))
    assert again.curve == monitor.curve and again.utility_floor == -np.inf
    fresh = Monitor.fixed()
    fresh.resume(None)  # an older checkpoint without progress: nothing changes
    assert fresh.curve == [] and fresh.utility_floor is None
