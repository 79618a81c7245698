"""Run inside RecBole's own venv: time RecBole 1.2.1 training batches on an atomic dataset.

Usage: python _recbole_epoch.py DATA_DIR DATASET MODEL MAX_LEN BATCHES OUT_JSON
Writes seconds per batch, batches per epoch and the extrapolated epoch time.
"""

import json
import sys
import time

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_seed

data_dir, dataset_name, model_name, max_len, n_batches, out = sys.argv[1:7]
config = Config(
    model=model_name,
    dataset=dataset_name,
    config_dict={
        "data_path": data_dir,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": int(max_len),
        "train_batch_size": 128,
        "eval_batch_size": 4096,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "hidden_size": 64,
        "embedding_size": 64,
        "inner_size": 64 if model_name != "GRU4Rec" else 256,
        "n_layers": 2 if model_name != "GRU4Rec" else 1,
        "n_heads": 1 if model_name == "SASRec" else 2,
        "hidden_dropout_prob": 0.2,
        "attn_dropout_prob": 0.2,
        "dropout_prob": 0.2,
        "mask_ratio": 0.2,
        "epochs": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        "show_progress": False,
        "seed": 42,
        "device": "cpu",
        "use_gpu": False,
        "worker": 0,
    },
)
init_seed(42, True)
dataset = create_dataset(config)
train_data, _, _ = data_preparation(config, dataset)
model = get_model(config["model"])(config, train_data.dataset)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
model.train()
limit = int(n_batches)
seen = 0
start = None
for index, interaction in enumerate(train_data):
    if index == 3:  # warm-up batches excluded
        start = time.perf_counter()
    if index >= 3 + limit:
        break
    optimizer.zero_grad()
    loss = model.calculate_loss(interaction)
    loss.backward()
    optimizer.step()
    seen = index + 1
elapsed = time.perf_counter() - start
timed = seen - 3
per_batch = elapsed / timed
total = len(train_data)
json.dump(
    {
        "seconds_per_batch": per_batch,
        "batches_timed": timed,
        "batches_per_epoch": total,
        "samples_per_epoch": len(train_data.dataset),
        "epoch_seconds": per_batch * total,
        "torch_threads": torch.get_num_threads(),
    },
    open(out, "w"),
)
