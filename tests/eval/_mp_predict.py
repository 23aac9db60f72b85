"""Run by test_evaluate.py under `torchrun --nproc_per_node 2` (ACCELERATE_USE_CPU=1)."""
import json
import sys

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset

from kcl_models.eval.evaluate import extract_features, predict

N = 37  # not a multiple of 2 processes x batch 4: the last global batch is padded by Accelerate


class Indexed(Dataset):
    def __len__(self):
        return N

    def __getitem__(self, i):
        return torch.full((3, 8, 8), float(i)), i


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 4)

    def forward_features(self, x):
        return x.mean(dim=(2, 3))[:, :1]  # [B, 1] = the sample index

    def forward_head(self, x, pre_logits=False):
        return x if pre_logits else self.lin(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def main():
    acc = Accelerator()
    torch.manual_seed(0)
    model = Net()
    loader = DataLoader(Indexed(), batch_size=4, shuffle=False)
    logits, targets = predict(model, loader, accelerator=acc, progress=False)
    feats, labels = extract_features(acc.prepare(model), acc.prepare(loader), accelerator=acc, progress=False)
    out = {
        "rank": acc.process_index,
        "num_processes": acc.num_processes,
        "targets": targets.tolist(),
        "logits_match": bool(torch.allclose(logits, model.lin(targets.float().view(-1, 1)), atol=1e-6)),
        "feat_labels": labels.tolist(),
        "feats": feats.flatten().tolist(),
    }
    with open(f"{sys.argv[1]}/rank{acc.process_index}.json", "w") as f:
        json.dump(out, f)
    # tear the gloo group down on every rank: exiting with it alive can abort a rank at shutdown
    acc.wait_for_everyone()
    acc.end_training()


if __name__ == "__main__":
    main()
