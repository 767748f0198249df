"""Measurements on masks: lesion components and WHO diameters, volumes, HU, organ findings."""
