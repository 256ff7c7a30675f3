"""Helpers shared by the chapters of the book: the map of this package.

=================  =============================================================  =================  ================================================
module             its one concern                                                chapters           may import (helpers modules)
=================  =============================================================  =================  ================================================
pins               the environment stored runs and CI execute under (no imports)  7                  -
env                where the book runs: device, seeds, provenance, glue, network  1-13               pins
checkpoint         checkpoint files: atomic save, weights-only load, refusals     2, 4, 10           -
labels             label vocabularies, multi-hot targets, checks, thresholding    1-6, 8, 10, 13     -
experiments        comparing methods over seeds: t-intervals, paired differences  11, 13             -
calibration        calibration (ECE, temperature, isotonic), precision promises   12                 -
metrics            scores and reports: mAP, AP, F1, thresholds                    2, 4-11, 13        labels
losses             multi-label losses beyond plain BCE, partial-label losses      6, 11              labels
gradcam            Grad-CAM: where a model looks                                  8                  -
speed              measuring the input pipeline and the training speed            4, 8               -
splits             stratified splits of multi-label data                          3, 10              labels
data               the data set of chapters 1-13: multi-digit canvases            1-13               pins
noisy_labels       the corrupted labels of chapter 11: hidden, unknown, flipped   11                 -
correlated_digits  the paired-digit data set of chapter 13                        13                 data
folder             a data set of your own images and a label table                3, 10              labels
models             the networks: SmallCNN, ResNets with a multi-label head        2, 4-12            env, pins
heads              multi-label heads on a spatial backbone: GMP, CSRA, queries    13                 models
distributed        several processes under torchrun (DDP); no-ops in one          9                  env
train              the training loop: train_one_epoch, evaluate, fit              2, 4-13            checkpoint, distributed, env, metrics
predict            the one-file classifier: save, load, predict on images         10                 checkpoint, folder, labels, models
voc                the PASCAL VOC 2007 data set: download, parse, load, train     8                  env, folder, labels, metrics, splits, train
plots              figures (draw only)                                            1-6, 13            metrics
widgets            interactive widgets (draw only)                                5, 10, 12          calibration, labels, metrics, predict
=================  =============================================================  =================  ================================================

"chapters" lists the chapters whose code imports the module; "may import" lists the only
helpers modules it may import, so imports go one way, down this table, and never in a
circle. ``tests/test_map.py`` checks all of it.

The rule, for a contributor adding code:

- Code that two or more chapters use lives in the module of its concern, found above; a
  helper used by one chapter only may stay in that chapter until a second one needs it.
- A data set gets its own module (``data``, ``folder``, ``voc``): reading files, labels and
  splits for that set, nothing else.
- ``plots`` and ``widgets`` only draw: they compute nothing a chapter would report as a
  number (they call ``metrics`` for that).
- Private names (``_name``) stay private: no other module, script or chapter imports them.
  A public name is used by a chapter, a script or another module, or it is not public.
- A new module gets a row here, with its concern, its chapters and what it may import.
"""
