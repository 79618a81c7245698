"""Protocol presets as in ../shared/design/benchmarks.md, and the protocol line every figure carries."""

import pytest

from llmseqrec.training.config import RunConfig, build_run_config, protocol_line


def test_p_lru_trains_as_lrurecs_trainer_validates_and_stops():
    # LRURec validates every 500 (ML-1M) / 1000 iterations and stops after 10 validations
    # without a better Recall@10: about every 8 / 6 of our epochs, not after 10 epochs.
    for dataset, max_len, every in (("ml-1m", 200, 8), ("beauty", 50, 6)):
        config = build_run_config(dataset, "sasrec", protocol="p-lru")
        train = config.train
        assert config.backbone["max_len"] == max_len and config.backbone["dropout"] == 0.2
        assert (train.loss, train.optimizer, train.lr, train.weight_decay) == (
            "ce",
            "adamw",
            1e-3,
            0.01,
        )
        assert (train.batch_size, train.select_metric, train.windows) == (128, "recall@10", "all")
        assert (train.eval_every, train.patience, train.epochs, train.grad_clip) == (
            every,
            10,
            500,
            5.0,
        )
        assert config.eval.ranking == "full" and config.eval.mask_history


@pytest.mark.parametrize(
    ("protocol", "ranking", "masked", "loss"),
    [("p-cl", "full", False, "ce"), ("p-s100", "sampled", None, "bce")],
)
def test_other_presets(protocol, ranking, masked, loss):
    config = build_run_config("beauty", "sasrec", protocol=protocol)
    assert config.eval.ranking == ranking and config.train.loss == loss
    if masked is not None:
        assert config.eval.mask_history is masked
    if protocol == "p-cl":
        assert config.backbone["dropout"] == 0.5 and config.train.batch_size == 256
        assert config.train.optimizer == "adam" and config.train.patience == 10


def test_protocol_line_states_validation_cadence_and_patience():
    line = protocol_line(build_run_config("ml-1m", "sasrec", protocol="p-lru"))
    assert "select recall@10 on validation every 8 epochs (patience 10, max 500 epochs)" in line
    line = protocol_line(build_run_config("beauty", "sasrec", protocol="p-cl"))
    assert "select ndcg@10 on validation (patience 10, max 200 epochs)" in line


def test_config_round_trips_through_yaml_with_the_same_run_name():
    config = build_run_config("ml-1m", "lrurec", protocol="p-lru", overrides={"train": {"seed": 7}})
    again = RunConfig.from_yaml(config.to_yaml())
    assert again == config and again.run_hash() == config.run_hash()


def test_p_lru_gives_lrurec_the_ring_of_its_published_runs_and_only_lrurec():
    lrurec = build_run_config("ml-1m", "lrurec", protocol="p-lru")
    assert (lrurec.backbone["r_min"], lrurec.backbone["r_max"]) == (0.8, 0.99)
    assert lrurec.backbone["item_bias"] is True
    # Other backbones have no eigenvalues: the preset must not hand them the option.
    sasrec = build_run_config("ml-1m", "sasrec", protocol="p-lru")
    assert "r_min" not in sasrec.backbone and "item_bias" not in sasrec.backbone
    # The model's own default ring stays outside p-lru.
    assert "r_min" not in build_run_config("beauty", "lrurec", protocol="p-cl").backbone
