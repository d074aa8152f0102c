// Public API of the scanner readers (see docs/formats.md).
export * from './types.js';
export {
  readScannerFile,
  compareVolumes,
  nameIndex,
  nameSeries,
  type ReadOptions,
  type ScannerFormat,
} from './read.js';
export { SliceAssembler, stackSlices } from './slices.js';
export {
  NiftiError,
  decodeNifti,
  decodeNiftiVolume,
  inflateNifti,
  niftiCompleteness,
  readNiftiLayout,
  encodeNifti1Volume,
  encodeNifti1Series,
  encodeNiftiVolume,
  encodeNiftiSeries,
  niftiHeader,
  niftiHeader4D,
  setNiftiVolumeCount,
  NIFTI1_VOX_OFFSET,
  DEFAULT_MAX_NIFTI_BYTES,
  type NiftiImage,
  type NiftiCompleteness,
  type NiftiHeaderOptions,
  type Nifti1VolumeInput,
  type NiftiSeriesInput,
  type NiftiLayout,
} from './nifti.js';
export {
  NIFTI1_FIELDS,
  NIFTI2_FIELDS,
  NIFTI_LAYOUTS,
  NIFTI_MAX_HEADER_BYTES,
  readNiftiHeader,
  writeNiftiHeader,
  updateNiftiHeader,
  blankNiftiHeader,
  niftiVersionOf,
  niftiVoxOffset,
  peekNiftiMagic,
  type NiftiHeader,
  type NiftiVersion,
  type Nifti1Fields,
  type Nifti2Fields,
  type FieldSpec,
  type FieldType,
} from './niftiHeader.js';
export { DicomError } from './dicom.js';
export { parseCsaHeader, CsaError, type CsaTag } from './csa.js';
export {
  ParRecError,
  parsePar,
  readParRec,
  parAffine,
  looksLikePar,
  type ParRecScaling,
  type ParRecOptions,
  type ParRecRead,
} from './parrec.js';
export { recBeside } from './read.js';
