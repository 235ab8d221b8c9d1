"""DICOM output: one-frame images, a volume as a folder of per-slice images with the
geometry of its NIfTI twin (:func:`write_dicom_series`), and a mask as a DICOM SEG that
refers to the image of the same sample (:func:`write_dicom_seg`, with highdicom). Every
file says it is synthetic: in its description, comments, conversion type and a private
``SYNTHMED`` block. The encoder of format "dicom" is :func:`write_dicom`."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Mapping

import numpy as np

from synthmed.registry import vocabulary
from synthmed.registry.errors import ConfigError
from synthmed.registry.outputs import OutputSpec, canonical, record_specs, to_bits
from synthmed.registry.records import Record
from synthmed.registry.stamps import synthmed_version

from .write_context import SYNTHETIC_NOTE, WriteContext, chosen_window, orientation_of, volume_affine
from .write_context import record_output as _record_output


def _dicom_modality(record: Record) -> str:
    """The DICOM Modality of a record's files: the first code its modality words mean in
    the controlled vocabulary (:mod:`synthmed.registry.vocabulary`), else OT (other)."""
    codes = vocabulary.modality_codes(record.get("modality") or [])
    return codes[0] if codes else "OT"


def dicom_uids(run: dict[str, Any], spec: OutputSpec, series_number: int) -> dict[str, Any]:
    from pydicom.uid import generate_uid

    dic = run.setdefault("dicom", {})
    dic.setdefault("study_instance_uid", generate_uid())
    dic.setdefault("frame_of_reference_uid", generate_uid())
    series = dic.setdefault("series", {})
    entry = series.setdefault(spec.name, {"series_instance_uid": generate_uid(), "series_number": series_number})
    return {**dic, **entry}


def dicom_window(spec: OutputSpec, options: Mapping[str, Any]) -> tuple[float, float] | None:
    """The display window (centre, width) a DICOM image of an output carries, in its
    stored (rescaled) units: the window its PNG is written through (:func:`chosen_window`:
    ``--window``, else the record's, else CT's default from
    :func:`synthmed.registry.outputs.default_window`; a DICOM keeps its full range whatever
    ``bit_depth`` says), else the output's ``value_range``. None for masks and label maps."""
    if spec.is_mask:
        return None
    win = chosen_window(spec, options)
    if win is not None:
        return win
    lo, hi = spec.value_range
    return ((lo + hi) / 2, float(hi - lo)) if hi > lo else None


def _dicom_pixels(a: np.ndarray, spec: OutputSpec, ctx: WriteContext) -> tuple[np.ndarray, int, int, dict[str, Any] | None, bool]:
    """(pixels, bits, signed, scaling, colour) of a canonical sample for DICOM: int16 kept
    as signed 16 bit (e.g. HU); floats as 16 bit with a rescale; others as 8 or 16 bit."""
    if a.dtype == np.int16:
        pixels, bits, signed, scaling = a, 16, 1, None
    else:
        # floats keep 16 bits in DICOM, with a rescale back to the value range
        depth = ctx.options.get("bit_depth") or (16 if a.dtype.kind == "f" else None)
        pixels, bits, scaling = to_bits(a, spec, depth)
        signed = 0
    color = pixels.ndim == spec.dims + 1 and pixels.shape[-1] in (3, 4)
    if pixels.ndim == spec.dims + 1 and not color:
        pixels = pixels[..., 0]
    if color:
        if bits != 8:
            raise ConfigError(f"{ctx.record.ref}: output {spec.name!r}: colour DICOM needs 8-bit pixels",
                              hint="use --format npy or png")
        pixels = pixels[..., :3]
    return pixels, bits, signed, scaling, color


def _dicom_dataset(ctx: WriteContext, sop_class: str, modality: str) -> Any:
    """A dataset with the file meta, the SOP, the synthetic patient, study and series
    description, equipment and every synthetic marker (no UIDs of study or series)."""
    import pydicom.uid as puid
    from pydicom.dataset import Dataset, FileMetaDataset

    record, spec = ctx.record, ctx.spec
    sop_uid = puid.generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = puid.UID(sop_class)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = puid.ExplicitVRLittleEndian
    meta.ImplementationVersionName = f"SYNTHMED_{synthmed_version()}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    now = _dt.datetime.now(_dt.timezone.utc)
    date, time_ = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    note = f"{SYNTHETIC_NOTE} {record.ref} (seed {ctx.seed}, sample {ctx.index})"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Modality = modality
    ds.ConversionType = "SYN"  # Synthetic Image (SC Equipment module)
    ds.Manufacturer = "synthmed"
    ds.ManufacturerModelName = record.id[:64]
    ds.SoftwareVersions = [f"synthmed {synthmed_version()}", f"{record.ref}"[:64]]
    ds.SeriesDescription = f"SYNTHETIC {record.ref} {spec.name}"[:64]
    ds.StudyDescription = "SYNTHETIC DATA (synthmed)"
    ds.ImageComments = note
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.PatientName = "SYNTHETIC^SYNTHMED"
    ds.PatientID = "SYNTHMED-SYNTHETIC"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "SYNTHETIC: no patient; generated by synthmed"
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = ""
    ds.StudyID = "SYNTHMED"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time_
    _synthetic_block(ds, ctx, note)
    return ds


def _synthetic_block(ds: Any, ctx: WriteContext, note: str) -> None:
    block = ds.private_block(0x0071, "SYNTHMED", create=True)
    block.add_new(0x01, "LO", "SYNTHETIC")
    block.add_new(0x02, "LT", note)
    block.add_new(0x03, "LO", ctx.record.ref[:64])
    block.add_new(0x04, "LO", (ctx.record.sha256 or "")[:64])
    block.add_new(0x05, "IS", str(ctx.seed))


def _set_pixels(ds: Any, pixels: np.ndarray, bits: int, signed: int, color: bool,
                scaling: dict[str, Any] | None, ctx: WriteContext, hu: bool = False) -> None:
    from pydicom.valuerep import DSfloat

    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = signed
    if scaling:
        lo, hi = scaling["from"]
        top = scaling["to"][1]
        ds.RescaleIntercept = DSfloat(float(lo), auto_format=True)
        ds.RescaleSlope = DSfloat(float((hi - lo) / top if hi > lo else 1.0), auto_format=True)
        ds.RescaleType = "HU" if hu else "US"
        ctx.run.setdefault("scaling", {})[ctx.spec.name] = scaling
    elif hu:
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
    dtype = np.dtype("<i2") if signed else np.dtype("<u2") if bits == 16 else np.dtype("u1")
    ds.PixelData = np.ascontiguousarray(pixels, dtype=dtype).tobytes()


def _set_window(ds: Any, ctx: WriteContext) -> None:
    from pydicom.valuerep import DSfloat

    win = dicom_window(ctx.spec, ctx.options)
    if win is not None and win[1] > 0:
        ds.WindowCenter = DSfloat(win[0], auto_format=True)
        ds.WindowWidth = DSfloat(win[1], auto_format=True)


def _mask_source(ctx: WriteContext) -> tuple[str | None, str]:
    """(the output a mask segments, or None and why not): the record output's ``segments``
    when given, else the first image or volume output of the same dims and shape."""
    spec = ctx.spec
    out = _record_output(ctx)
    specs = {o.name: o for o in record_specs(ctx.record)}
    same = [o for o in specs.values() if o.name != spec.name and o.dims == spec.dims
            and o.shape[:o.dims] == spec.shape[:spec.dims]]
    if out.get("segments"):
        name = str(out["segments"])
        if name not in {o.name for o in same}:
            return None, f"the output it segments, {name!r}, has another shape"
        return name, ""
    for o in same:
        if o.kind in ("image", "volume"):
            return o.name, ""
    return None, "the record names no image output of the same shape that it segments"


def dicom_is_series(spec: OutputSpec) -> bool:
    """True when DICOM writes a sample of this output as a folder of per-slice files: a
    3D output other than a mask (masks of a volume are one DICOM SEG file)."""
    return spec.dims == 3 and spec.kind != "mask"


def write_dicom(path: str, arr: np.ndarray, ctx: WriteContext) -> None:
    """DICOM: a volume is a folder of per-slice images (one series per sample, with its
    geometry); a mask of an image or volume written beside it is a DICOM SEG referencing
    that image; other 2D outputs are Secondary Capture images."""
    spec = ctx.spec
    if spec.kind == "mask":
        source, why = _mask_source(ctx)
        src_path = ctx.sources.get(source) if source else None
        if src_path and os.path.exists(src_path):
            write_dicom_seg(path, arr, ctx, src_path)
            return
        if source:
            why = f"output {source!r} (the image it segments) was not written as DICOM in this run"
        ctx.run.setdefault("dicom", {}).setdefault("notes", {})[spec.name] = (
            f"written as a plain DICOM image, not a DICOM SEG: {why}")
    if dicom_is_series(spec):
        write_dicom_series(path, arr, ctx)
        return
    _write_dicom_image(path, arr, ctx)


def _write_dicom_image(path: str, arr: np.ndarray, ctx: WriteContext) -> None:
    import pydicom.uid as puid

    spec, record = ctx.spec, ctx.record
    a = canonical(arr, spec)
    pixels, bits, signed, scaling, color = _dicom_pixels(a, spec, ctx)
    uids = dicom_uids(ctx.run, spec, ctx.options.get("series_number", 1))
    multi = spec.dims == 3
    if multi:
        sop_class = (puid.MultiFrameTrueColorSecondaryCaptureImageStorage if color
                     else puid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage if bits == 8
                     else puid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage)
    else:
        sop_class = puid.SecondaryCaptureImageStorage
    ds = _dicom_dataset(ctx, sop_class, _dicom_modality(record))
    ds.StudyInstanceUID = uids["study_instance_uid"]
    ds.SeriesInstanceUID = uids["series_instance_uid"]
    ds.SeriesNumber = int(uids["series_number"])
    ds.InstanceNumber = ctx.index + 1
    spacing = list(spec.spacing_mm or [])
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
        ds.FrameOfReferenceUID = uids["frame_of_reference_uid"]
        ds.FrameIncrementPointer = 0x00182005  # SliceLocationVector
        slice_mm = spacing[0] if len(spacing) == 3 else 1.0
        ds.SliceLocationVector = [round(k * slice_mm, 6) for k in range(pixels.shape[0])]
        ds.SliceThickness = slice_mm
        ds.SpacingBetweenSlices = slice_mm
        rows, cols = pixels.shape[1], pixels.shape[2]
        if len(spacing) == 3:
            ds.PixelSpacing = [spacing[1], spacing[2]]
    else:
        rows, cols = pixels.shape[0], pixels.shape[1]
        if len(spacing) == 2:
            ds.PixelSpacing = [spacing[0], spacing[1]]
    ds.Rows, ds.Columns = rows, cols
    ds.Laterality = ""  # type 2C: dciodvfy wants it present; empty as the body part is unknown
    if not multi:
        # the patient directions of the rows and columns (General Image module)
        ds.PatientOrientation = list(orientation_of(_record_output(ctx))[:2])
    if not color:
        _set_window(ds, ctx)
    _set_pixels(ds, pixels, bits, signed, color, scaling, ctx)
    ds.save_as(path, enforce_file_format=True)


def _lps_geometry(spec: OutputSpec, orientation: str, shape: tuple[int, ...]) -> tuple[list[float], list[list[float]]]:
    """(ImageOrientationPatient, ImagePositionPatient of each slice) in DICOM's LPS
    patient coordinates, the same grid as :func:`volume_affine` (RAS): voxel (i, j, k) of
    the NIfTI file is column i, row j of slice k."""
    aff = volume_affine(spec, orientation, shape)
    flip = np.diag([-1.0, -1.0, 1.0])  # RAS -> LPS
    m = flip @ aff[:3, :3]
    origin = flip @ aff[:3, 3]
    zooms = np.linalg.norm(m, axis=0)
    along_row, along_col = m[:, 0] / zooms[0], m[:, 1] / zooms[1]
    iop = [float(round(x, 6)) + 0.0 for x in [*along_row, *along_col]]
    positions = [[float(round(x, 4)) + 0.0 for x in origin + k * m[:, 2]] for k in range(shape[0])]
    return iop, positions


def write_dicom_series(path: str, arr: np.ndarray, ctx: WriteContext) -> None:
    """A volume as a folder ``path`` of per-slice images ``0001.dcm``..., one series (and
    study and frame of reference) per sample: CT Image for CT, MR Image for MR, else
    Secondary Capture; ImagePositionPatient steps by the slice spacing along the slices'
    direction, ImageOrientationPatient, PixelSpacing (row, col) and SliceThickness from
    ``spacing_mm`` and the output's ``orientation``; window from :func:`dicom_window`."""
    import pydicom.uid as puid
    from pydicom.valuerep import DSfloat

    spec, record = ctx.spec, ctx.record
    a = canonical(arr, spec)
    pixels, bits, signed, scaling, color = _dicom_pixels(a, spec, ctx)
    modality = _dicom_modality(record)
    sop_class = {"CT": puid.CTImageStorage, "MR": puid.MRImageStorage}.get(modality, puid.SecondaryCaptureImageStorage)
    if color or spec.kind != "volume":  # labels and other values are no CT numbers or MR signal
        sop_class = puid.SecondaryCaptureImageStorage
    orientation = orientation_of(_record_output(ctx))
    iop, positions = _lps_geometry(spec, orientation, a.shape)
    spacing = list(spec.spacing_mm or [1.0, 1.0, 1.0])
    study, series, frame = puid.generate_uid(), puid.generate_uid(), puid.generate_uid()
    axial = orientation[2] in "IS"
    os.mkdir(path)
    for k in range(pixels.shape[0]):
        ds = _dicom_dataset(ctx, sop_class, modality)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PositionReferenceIndicator = ""
        ds.SeriesNumber = int(ctx.options.get("series_number", 1))
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.Laterality = ""
        if sop_class != puid.SecondaryCaptureImageStorage:
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if axial and modality == "CT" else "OTHER"][:3]
        ds.ImageOrientationPatient = [DSfloat(x, auto_format=True) for x in iop]
        ds.ImagePositionPatient = [DSfloat(x, auto_format=True) for x in positions[k]]
        ds.SliceLocation = DSfloat(positions[k][2] if axial else k * spacing[0], auto_format=True)
        ds.PixelSpacing = [DSfloat(spacing[1], auto_format=True), DSfloat(spacing[2], auto_format=True)]
        ds.SliceThickness = DSfloat(spacing[0], auto_format=True)
        ds.SpacingBetweenSlices = DSfloat(spacing[0], auto_format=True)
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
        if modality == "CT" and sop_class == puid.CTImageStorage:
            ds.KVP = ""
        if sop_class == puid.MRImageStorage:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
            ds.MRAcquisitionType = "3D"
            ds.RepetitionTime = ds.EchoTime = ds.EchoTrainLength = ds.MagneticFieldStrength = ""
        if not color:
            _set_window(ds, ctx)
        _set_pixels(ds, pixels[k], bits, signed, color, scaling, ctx,
                    hu=modality == "CT" and sop_class == puid.CTImageStorage)
        ds.save_as(os.path.join(path, f"{k + 1:04d}.dcm"), enforce_file_format=True)


#: the slice thickness a 2D sample's SEG declares (mm): a 2D image has none, and its NIfTI
#: twin uses the same 1 mm for its third axis (write_context.volume_affine)
PLANE_THICKNESS_MM = 1.0


def _plane_measures(image: Any) -> Any:
    """The Pixel Measures of a SEG over one 2D image: its PixelSpacing with a slice
    thickness of :data:`PLANE_THICKNESS_MM` (a SEG's Pixel Measures need both, or readers
    such as ``highdicom.seg.segread`` refuse the file); None when the image declares no
    spacing (the SEG then declares none either)."""
    import highdicom as hd

    spacing = getattr(image, "PixelSpacing", None)
    if not spacing:
        return None
    return hd.PixelMeasuresSequence(pixel_spacing=[float(x) for x in spacing],
                                    slice_thickness=PLANE_THICKNESS_MM)


def write_dicom_seg(path: str, arr: np.ndarray, ctx: WriteContext, source: str) -> None:
    """A mask as a binary DICOM SEG (highdicom) referencing the DICOM image(s) of the same
    sample at ``source`` (a file, or a folder of per-slice files), in their study and
    frame of reference, with synthmed's synthetic markers."""
    import highdicom as hd
    import pydicom
    import pydicom.uid as puid
    from pydicom.sr.codedict import codes

    spec, record = ctx.spec, ctx.record
    a = canonical(arr, spec)
    if a.ndim > spec.dims:
        a = a[..., 0]
    mask = np.asarray(a) != 0
    if os.path.isdir(source):
        files = sorted(os.path.join(source, f) for f in os.listdir(source) if f.endswith(".dcm"))
        images = [pydicom.dcmread(f) for f in files]
        images.sort(key=lambda d: int(d.InstanceNumber))
    else:
        images = [pydicom.dcmread(source)]
    pixel_measures = None
    if spec.dims == 2:
        mask = mask[None]
        pixel_measures = _plane_measures(images[0])
    note = f"{SYNTHETIC_NOTE} {record.ref} (seed {ctx.seed}, sample {ctx.index})"
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"synthmed {record.id}"[:64], version=record.version[:64],
        family=codes.cid7162.ArtificialIntelligence)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=spec.name[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion if "lesion" in (str(_record_output(ctx).get("description", ""))
                                                              + spec.name).lower() else codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=images, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=puid.generate_uid(),
        series_number=int(ctx.options.get("series_number", 1)), sop_instance_uid=puid.generate_uid(),
        instance_number=ctx.index + 1, manufacturer="synthmed", manufacturer_model_name=record.id[:64],
        software_versions=f"synthmed {synthmed_version()}", device_serial_number="SYNTHMED",
        series_description=f"SYNTHETIC {record.ref} {spec.name}"[:64],
        content_description="SYNTHETIC synthmed mask"[:64], omit_empty_frames=False,
        pixel_measures=pixel_measures)
    seg.ImageComments = note
    if spec.dims == 2:
        seg.PatientOrientation = list(orientation_of(_record_output(ctx))[:2])
    _synthetic_block(seg, ctx, note)
    seg.save_as(path, enforce_file_format=True)
