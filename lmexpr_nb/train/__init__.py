"""Training (paper Sec. III-B, IV-B; the loop is PATN's, Zhu et al. CVPR 2019).

One step [PATN]: generate, update G with L_G = 5 L_GAN + 10 L_per + 10 L_pixel (Eq. 7,
losses.generator_loss; the discriminators are frozen for this step), then update both
discriminators with 0.5 (real + fake) each (losses.discriminator_losses, fake detached).
Adam lr 2e-4, betas (0.5, 0.999), batch 16 [paper / PATN]; the learning rate is constant,
then decays linearly to 0 from `lr_decay_start` of the run [PATN]. All from Config.train.

Devices: CUDA when present (bf16 autocast, channels_last, optional torch.compile), else
CPU in fp32. Several GPUs: `torchrun --nproc_per_node N -m lmexpr_nb train ...`
(DistributedDataParallel; each rank draws its own slice of every global batch of the
seeded pair stream, data.pairs.PairStream; gradients are averaged; only rank 0 writes).
The gloo backend runs the same code on CPU processes (tests/test_ddp.py).

Files under out_dir:
    checkpoints/last.pt        checkpoint.py's format, every checkpoint_every steps and at the end
    losses.csv                 step, loss terms (means over the log_every steps up to `step`), lr, seconds
    samples/step_NNNNNN.png    source | target | generated for a few fixed (validation) pairs
    train_summary.json         what ran, on what, with which weights, how fast

Exactness: the pair stream, every RNG, the optimisers and the loss-log window are in the
checkpoint, so `resume` continues the run exactly; on CPU with `deterministic` an
interrupted-and-resumed run ends with bit-identical weights to an uninterrupted one.

NaN guard: the loss terms are checked (all ranks together) before every log row, sample
and checkpoint; a non-finite term stops the run with NonFiniteLossError naming the first
bad step and term, and nothing is saved after the last good checkpoint.
"""
from __future__ import annotations
from .cli import train_main
from .core import (G_TERMS, TERMS, NonFiniteLossError, TrainCore, gan_on, lr_at, seed_all, set_requires_grad,
                   training_pairs)
from .device import DistInfo, amp_dtype, device_problem, resolve_device, setup_distributed
from .trainer import CSV_FIELDS, SAMPLE_ROWS, Trainer, train

__all__ = ["CSV_FIELDS", "G_TERMS", "SAMPLE_ROWS", "TERMS", "DistInfo", "NonFiniteLossError", "TrainCore", "Trainer",
           "amp_dtype", "device_problem", "gan_on", "lr_at", "resolve_device", "seed_all", "set_requires_grad",
           "setup_distributed", "train", "train_main", "training_pairs"]
