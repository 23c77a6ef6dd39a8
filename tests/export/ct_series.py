"""A small CT series written with pydicom (CT Image Storage, every tag a DICOM-SEG needs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

__all__ = ["write_ct_series"]


def write_ct_series(folder: Path, volume: np.ndarray, spacing: tuple[float, float, float]) -> list[str]:
    """Write ``volume`` ``(z, y, x)`` int16 as one file per slice (shuffled names); the SOP instance UIDs by z."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    dz, dy, dx = spacing
    uids = []
    for k, plane in enumerate(volume.astype(np.int16)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "CT", "Test^P", "P1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = (
            "20260101",
            "",
            "",
            "",
            "1",
        )
        ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 3, k + 1, "test"
        ds.ImagePositionPatient = [-20.0, -10.0, 5.0 + k * dz]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [dy, dx], dz
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(plane).tobytes()
        ds.save_as(folder / f"{(k * 7919) % 10007:05d}.dcm", enforce_file_format=True)
        uids.append(ds.SOPInstanceUID)
    return uids
