// What the scanner readers hand to the bridge and to `convert`.

/** One 3-D volume in NIfTI memory order (x fastest) with its voxel → RAS+ mm affine (row-major, as nibabel/dcm2niix). */
export interface ScannerVolume {
  dims: [number, number, number];
  affine: number[];
  /** mm, [x, y, z]. */
  voxelSize: number[];
  /** Repetition time in seconds, when the file says. */
  tr?: number;
  /** Seconds since midnight of the acquisition (DICOM AcquisitionTime / FrameAcquisitionDateTime). */
  acquisitionTime?: number;
  seriesNumber?: number;
  /** The trailing number of the file name (001_000007_000042.dcm → 42), else the DICOM acquisition/temporal index. */
  volumeIndex?: number;
  /** Slice acquisition times in ms relative to the volume start, in z order (Siemens MosaicRefAcqTimes). */
  sliceTimes?: number[];
  /** True when the file says the sequence is EPI (DICOM ScanningSequence EP, PAR technique *EPI*), false when it says
   * otherwise (a localizer), absent when it does not say. The bridge uses it to tell EPI series from the rest. */
  epi?: boolean;
  /** Where it came from: 'nifti', 'dicom-mosaic', 'dicom-enhanced', 'dicom-slices', 'parrec', 'mrd', 'afni'. */
  source: ScannerSource;
  data: Float32Array;
}

export type ScannerSource = 'nifti' | 'dicom-mosaic' | 'dicom-enhanced' | 'dicom-slices' | 'parrec' | 'mrd' | 'afni';

/** One 2-D DICOM image (GE style: one file per slice), before assembly into a volume. */
export interface ScannerSlice {
  rows: number;
  cols: number;
  /** LPS position of the first transmitted pixel (row 0, column 0). */
  position: number[];
  /** Direction cosines (LPS) of increasing column index, then of increasing row index (DICOM ImageOrientationPatient). */
  orientation: number[];
  /** [between rows, between columns] in mm (DICOM PixelSpacing order). */
  pixelSpacing: [number, number];
  sliceThickness?: number;
  spacingBetweenSlices?: number;
  seriesNumber?: number;
  seriesUid?: string;
  instanceNumber?: number;
  acquisitionNumber?: number;
  temporalPosition?: number;
  inStackPosition?: number;
  /** Slices per volume when the file says (ImagesInAcquisition, GE LocationsInAcquisition). */
  slicesPerVolume?: number;
  acquisitionTime?: number;
  tr?: number;
  /** The trailing number of the file name, when read from a path. */
  nameIndex?: number;
  /** As ScannerVolume.epi. */
  epi?: boolean;
  /** Pixels in DICOM order (column fastest, then row), rescale applied. */
  data: Float32Array;
}

export type ReadResult =
  | {
      status: 'complete';
      format: ScannerSource;
      volumes: ScannerVolume[];
      slices?: ScannerSlice[];
      warnings?: string[];
    }
  | { status: 'incomplete'; reason: string }
  | { status: 'invalid'; reason: string };
