"""A tiny regression stage for testing the training engine (not a product stage)."""

import json
import os
import sys

import torch


class ToyStage:
    name = 'toy'

    def __init__(self, n=64, seed=0, poison_step=None):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.1),
                                         torch.nn.ReLU(), torch.nn.Linear(16, 1))
        self.num_samples = n
        self.poison_step = poison_step
        self.calls = 0

    def param_groups(self, model):
        return [{'params': list(model.parameters())}]

    def batch(self, indices):
        return self.x[indices], self.y[indices]

    def loss(self, model, batch):
        self.calls += 1
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(x), y)
        if self.poison_step is not None and self.calls >= self.poison_step:
            loss = loss * float('nan')
        return loss, {'mse': float(loss.detach())}

    def evaluate(self, model):
        return {'mse': float(torch.nn.functional.mse_loss(model(self.x), self.y))}


def main():
    """Run the toy stage under torchrun (or alone) and write the final weights per rank."""
    from training.engine.distributed import cleanup, init_distributed
    from training.engine.trainer import LoopConfig, Trainer
    out = sys.argv[1]
    dist = init_distributed('cpu')
    stage = ToyStage()
    trainer = Trainer(stage, LoopConfig(steps=6, batch_size=4, warmup_steps=2, ckpt_every=3),
                      out, dist, progress=False)
    trainer.train()
    flat = torch.cat([p.detach().reshape(-1) for p in stage.model.parameters()])
    with open(os.path.join(out, f'rank{dist.rank}.json'), 'w') as f:
        json.dump(flat.tolist(), f)
    cleanup()


if __name__ == '__main__':
    main()
