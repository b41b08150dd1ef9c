"""Stage 4, training (paper Sec. III-B, IV-B; the loop is PATN's, Zhu et al. CVPR 2019).

One step [PATN]: generate, update G with L_G = 5 L_GAN + 10 L_per + 10 L_pixel (Eq. 7,
model.losses.generator_loss; the discriminators are frozen for this step), then update both
discriminators with 0.5 (real + fake) each (model.losses.discriminator_losses, fake detached).
Adam lr 2e-4, betas (0.5, 0.999), batch 16 [paper / PATN]; the learning rate is constant,
then decays linearly to 0 from `lr_decay_start` of the run [PATN]. All from Config.train.

Devices: CUDA when present (bf16 autocast, channels_last, optional torch.compile), else
CPU in fp32. Several GPUs: `torchrun --nproc_per_node N -m lmexpr_nb train ...`
(DistributedDataParallel; each rank draws its own slice of every global batch of the
seeded pair stream, data.pairs.PairStream; gradients are averaged; only rank 0 writes).
The gloo backend runs the same code on CPU processes (tests/test_ddp.py).

Files under out_dir:
    checkpoints/last.pt        common/checkpoint.py's format, every checkpoint_every steps and at the end
    losses.csv                 step, loss terms (means over the log_every steps up to `step`), lr, seconds
    samples/step_NNNNNN.png    source | target | generated for a few fixed (validation) pairs
    train_summary.json         what ran, on what, with which weights, how fast

Exactness: the pair stream, every RNG, the optimisers and the loss-log window are in the
checkpoint, so `resume` continues the run exactly; on CPU with `deterministic` an
interrupted-and-resumed run ends with bit-identical weights to an uninterrupted one.

NaN guard: the loss terms are checked (all ranks together) before every log row, sample
and checkpoint; a non-finite term stops the run with NonFiniteLossError naming the first
bad step and term, and nothing is saved after the last good checkpoint. Before every sample
grid and checkpoint the weights themselves are checked too (core.TrainCore.unsound: finite and
not blown up, optimiser state finite, finite outputs on the sample pairs), since finite losses
say nothing of what the last update left; unsound weights stop the run the same way.

One run at a time writes into out_dir (trainer.train holds `<out_dir>/.train.lock`): a second
one is refused at once, naming the holder's pid.

Modules: core.py (TrainCore: one training step, lr schedule, the GAN switch), device.py (devices,
AMP, the torchrun process group), trainer.py (Trainer: data, checkpoints, samples, the loop),
log.py (losses.csv and the sample grids), cli.py (`python -m lmexpr_nb train`).
"""
