"""Humanitec resource definitions of the Container Driver: the model, `definition validate`, `definition render`
(from templates/, shipped as package data) and `driver emulate`."""
