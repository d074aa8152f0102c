// Public API of the scanner readers (see docs/formats.md).
export * from './types.js';
export { readScannerFile, compareVolumes, nameIndex, nameSeries, type ReadOptions, type ScannerFormat } from './read.js';
export { SliceAssembler, stackSlices } from './slices.js';
export {
  NiftiError, decodeNifti, inflateNifti, niftiCompleteness, encodeNifti1Volume, encodeNifti1Series, niftiHeader, niftiHeader4D,
  setNifti1VolumeCount, NIFTI1_DIM4_OFFSET, NIFTI1_VOX_OFFSET, DEFAULT_MAX_NIFTI_BYTES,
  type NiftiImage, type NiftiCompleteness, type NiftiHeaderOptions, type Nifti1VolumeInput,
} from './nifti.js';
export { DicomError } from './dicom.js';
export { parseCsaHeader, CsaError, type CsaTag } from './csa.js';
export { ParRecError, parsePar, readParRec, parAffine, looksLikePar, type ParRecScaling, type ParRecOptions, type ParRecRead } from './parrec.js';
export { recBeside } from './read.js';
