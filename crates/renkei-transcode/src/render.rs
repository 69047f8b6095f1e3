//! Rendering a frame to an 8-bit image (Modality LUT, VOI LUT, photometric conversion).
