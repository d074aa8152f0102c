"""Independent reference readers (nibabel, dcm2niix) that the TypeScript tests compare against."""
