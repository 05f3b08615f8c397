"""The loading pipeline, as stages: shard lists -> streaming -> sample parsing -> dataset -> loader -> augmentation.

Workers parse samples on the CPU; the loader decodes each batch on the device in the main process.
"""
