"""Helpers every room shares: frames and boxes, image metrics, devices and ranks, seeds, progress bars."""
