"""Experiments around training: compare (side-by-side runs), lr_find (the learning-rate range test),
gradcheck (backpropagation against finite differences)."""
