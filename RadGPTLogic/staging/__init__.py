"""Pancreatic staging: vessel contact, AJCC T, NCCN.

Circumferential tumour-vessel contact is measured in degrees on cross-sections
perpendicular to each vessel's own centreline (:mod:`.contact`); a combined
AbdomenAtlas celiac mask is first split into trunk, common hepatic and splenic
artery by world (RAS) side (:mod:`.celiac`).  From the contact angles and the
lesion's size, :mod:`.ajcc` assigns the AJCC 8th edition T category and
:mod:`.nccn` the NCCN resectability category, each with the rule it applied;
:mod:`.organ_contact` gives the organ contacts that PNET T staging needs.
"""
