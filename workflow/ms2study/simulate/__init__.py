"""Simulated studies with known truth: in-silico fragmentation, mzML runs, sample sheets, realistic profiles. Depends on core and io."""
