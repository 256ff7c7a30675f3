"""Helpers shared by the chapters of the book: the map of this package.

===========  =============================================================  ========  ================================================
module       its one concern                                                chapters  may import (helpers modules)
===========  =============================================================  ========  ================================================
env          where the book runs: device, seeds, provenance, glue, network  1-10      -
checkpoint   checkpoint files: atomic save, weights-only load, refusals     -         -
labels       label vocabularies and multi-hot targets                       1-6, 8    -
metrics      scores and reports: mAP, AP, F1, thresholds                    2, 4-10   labels
losses       multi-label losses beyond plain BCE                            6         -
gradcam      Grad-CAM: where a model looks                                  8         -
speed        measuring the input pipeline and the training speed            8         -
splits       stratified splits of multi-label data                          3         labels
data         the data set of chapters 1-7: multi-digit canvases             1-10      env, labels
folder       a data set of your own images and a label table                3         env, labels
models       the networks: SmallCNN, ResNets with a multi-label head        2, 4-10   env
distributed  several processes under torchrun (DDP); no-ops in one          9         env
train        the training loop: train_one_epoch, evaluate, fit              4-10      checkpoint, distributed, env, metrics
predict      the one-file classifier: save, load, predict on images         10        checkpoint, env, folder, labels, metrics, models
voc          the PASCAL VOC 2007 data set: download, parse, load, train     8         env, folder, labels, metrics, splits, train
plots        figures (draw only)                                            1-6       labels, metrics
widgets      interactive widgets (draw only)                                5, 10     metrics, plots, predict
===========  =============================================================  ========  ================================================

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
