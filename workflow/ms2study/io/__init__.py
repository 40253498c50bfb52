"""Readers and writers of the formats users bring: mzML through pyOpenMS, sample sheets. Depends only on core."""
