"""The small real experiment most search and CLI tests start from: LeNet on digits, channel
pruning, a short fine-tune; each test adds its name, training, search and export settings."""

LENET_DIGITS = {
    "seed": 0,
    "model": {"name": "lenet"},
    "data": {"name": "digits"},
    "finetune": {"epochs": 0.5, "lr": 0.02},
    "compress": {"pruning": {"max_ratio": 0.6, "step": 0.05}},
    "objectives": ["accuracy", "macs"],
}
