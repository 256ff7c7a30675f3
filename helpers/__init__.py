"""Helpers shared by the chapters of the book: the map of this package.

=================  =====================================================================  ==============  ================================================
module             its one concern                                                        chapters        may import (helpers modules)
=================  =====================================================================  ==============  ================================================
pins               the environment stored runs and CI execute under (no imports)          7               -
env                where the book runs: device, seeds, provenance, glue, network          1-13            pins
checkpoint         checkpoint files: atomic save, weights-only load, CRC-32 check         2, 4, 10        -
labels             vocabularies, multi-hot targets; owns score/target checks, thresholds  1-6, 8, 10, 13  -
experiments        comparing methods: seeds (t-interval), test images (paired bootstrap)  5, 11, 13       labels
metrics            scores and reports: mAP, AP, precision/recall/F1 (counted here only)   2, 4-11, 13     labels
calibration        calibration (ECE, temperature, isotonic), precision promises           12 only         labels, metrics
inference          running a model over a loader: eval mode, no grad, outputs on the CPU  2, 4-8, 10, 13  -
losses             multi-label losses beyond plain BCE, partial-label losses              6, 11           labels
gradcam            Grad-CAM: where a model looks                                          8 only          -
speed              measuring the input pipeline and the training speed                    4, 8            -
splits             stratified splits of multi-label data                                  3, 10           labels
data               the data set of chapters 1-13: multi-digit canvases                    1-13            pins
noisy_labels       the corrupted labels of chapter 11: hidden, unknown, flipped           11 only         labels
correlated_digits  the paired-digit data set of chapter 13                                13 only         data
folder             a data set of your own images and a label table                        3, 10           labels
models             the networks: SmallCNN, ResNets with a multi-label head                2, 4-12         env, pins
heads              multi-label heads on a spatial backbone: GMP, CSRA, queries            13 only         models
distributed        several processes under torchrun (DDP); no-ops in one                  9 only          env
train              the training loop: train_one_epoch, evaluate, fit                      2, 4-13         checkpoint, distributed, env, inference, metrics
predict            the one-file classifier: save, load, predict on images                 10 only         checkpoint, folder, inference, labels, models
voc                the PASCAL VOC 2007 data set: find, parse, load                        8 only          folder
voc_download       downloading VOC 2007: address, checksums, offline failure              8 only          env, voc
voc_layout         writing data in VOC layout (tests, chapter 8's pipeline check)         8 only          -
voc_training       training and evaluating on VOC: presets, loaders, difficult-aware AP   8 only          labels, metrics, splits, train, voc
plots              figures (draw only)                                                    1-6, 13         labels, metrics
widgets            interactive widgets (draw only)                                        5, 10, 12       calibration, labels, metrics, predict
=================  =====================================================================  ==============  ================================================

"chapters" lists the chapters whose code imports the module; "N only" marks a module made
for one chapter: no other chapter may import it (scripts and other modules may). "may
import" lists exactly the helpers modules it imports; each is on a row above it, so imports
go one way, down this table, and never in a circle. ``tests/test_map.py`` checks all of it.

The rule, for a contributor adding code:

- Each rule has one owner. Checks of scores and targets and the ``>=`` that turns
  probabilities into decisions live in ``labels``; precision, recall and F1 are counted in
  ``metrics``; a model is run over a loader in ``inference``. Everything else calls them.
- Code lives in a chapter until it is worth a module: a second chapter needs it, or it is
  long or tested on its own, or it would bury the chapter's story (a data set, a widget).
  A module made for one chapter says "N only" in its row; when a second chapter needs
  it, the code moves to the module of its concern (and the row changes).
- A data set gets its own module (``data``, ``folder``, ``voc``): reading files, labels and
  splits for that set, nothing else.
- ``plots`` and ``widgets`` only draw: they compute nothing a chapter would report as a
  number. A widget may call what computes (``metrics``, ``calibration``) while a slider
  moves; a chapter reports and glues numbers from those modules, never from a drawing one.
- Private names (``_name``) stay private: no other module, script or chapter imports them.
  A public name is used by a chapter, a script or another module, or it is a building
  block (composed inside its module and tested on its own) or a setting (an UPPER_CASE
  constant its module reads); otherwise it is private. Tests are not users.
- No section of a module is named after a chapter: a module holds one concern.
- A new module gets a row here, with its concern, its chapters and what it may import,
  and an ``__all__`` listing exactly what it defines.
"""
