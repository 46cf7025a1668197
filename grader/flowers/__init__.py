"""The Oxford 102 flowers, and one transfer-learning experiment run on them.

- `data`: the images with their classes, from the original archive, an image folder or
  TensorFlow Datasets, and packed to cross to the sandbox;
- `synthetic`: a tiny generated image folder (the quick tier and the tests);
- `split`: is a split a stratified 50/25/25 one;
- `pipeline`: the tf.data input pipelines through a `preprocess` function;
- `backbones`: keras.applications backbones (recognised, found, calibrated, described);
- `recording`: per-epoch records and scores of a training run;
- `experiment`: one run of the four functions, and what it measured;
- `report`, `figures`: the experiment's HTML and Markdown report (`grader report`).
"""
