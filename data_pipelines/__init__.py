"""Input data: dataset sources, tf.data clip pipelines, the built-in synthetic dataset, checks."""
