"""Reading and writing medical images (NIfTI, NRRD, MetaImage, DICOM, 2D formats) with their geometry."""
