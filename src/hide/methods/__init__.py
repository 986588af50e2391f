"""Continual-learning methods: one file each, hooks over the one task loop in `hide.loop`."""
