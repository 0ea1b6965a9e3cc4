"""Vision data: volumes (NIfTI, DICOM) and image sets."""
