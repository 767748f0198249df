"""Anatomical landmarks and organ sub-regions derived from masks.

Every module here works on :class:`~RadGPTLogic.case.Crop` masks in the canonical
RAS frame and measures positions in world millimetres through the case's affine,
so results do not depend on how the files were stored.

* :mod:`.veins`: the SMV/portal-vein trunk from whatever vein masks a case has,
  and the SMV/PV split of a combined ``veins`` mask.
* :mod:`.pancreas`: pancreas head / neck / body / tail (AJCC 8th) and the part
  that holds a lesion.
* :mod:`.liver`: Couinaud location of liver lesions.
* :mod:`.kidney`: kidney pole and exophytic fraction.
"""
