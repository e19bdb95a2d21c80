//! Bytes and pixels: which format a body is, what its `Content-Type` claims, decoding it
//! within limits, obscuring it and writing it back. Knows formats; knows nothing of the
//! policy, the model or HTTP.

pub mod content_encoding;
pub mod content_type;
pub mod decode;
pub mod encode;
pub mod format;
pub mod frames;
pub mod gif;
pub mod icon;
pub mod jpeg;
pub mod mixed_replace;
pub mod obscure;
pub mod pdq;
pub mod svg;

pub use format::ImageFormat;
