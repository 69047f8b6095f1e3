//! Encoders to the lossless transfer syntaxes (RLE, JPEG-LS, JPEG 2000) and baseline JPEG.
