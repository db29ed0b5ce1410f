"""Humanitec resource definitions of the Container Driver: the model, `definition validate`, `definition render`
(from templates/, shipped as package data), `driver emulate`, and references to other resources' outputs resolved
from the definitions at hand (references.py)."""
